# dsrprep-facts: http_listen
# The http.sys IP listen list as its tool prints it; null where the tool is missing (2003 without
# the Support Tools).
$httpListenText = $null
if ($isLegacy) {
    # httpcfg.exe comes with the 2003 Support Tools, which many servers lack.
    $httpcfg = $null
    $command = Get-Command 'httpcfg.exe' -ErrorAction SilentlyContinue
    if ($null -ne $command) { $httpcfg = @($command)[0].Definition }
    # 64-bit 2003 installs the 32-bit Support Tools under Program Files (x86).
    foreach ($root in @($env:ProgramFiles, ${env:ProgramFiles(x86)})) {
        if ($null -ne $httpcfg -or $null -eq $root) { continue }
        $candidate = Join-Path $root 'Support Tools\httpcfg.exe'
        if (Test-Path -LiteralPath $candidate) { $httpcfg = $candidate }
    }
    if ($null -ne $httpcfg) { $httpListenText = Get-NativeText $httpcfg @('query', 'iplisten') }
} else {
    $httpListenText = Get-NativeText 'netsh.exe' @('http', 'show', 'iplisten')
}
$facts['http_listen_text'] = $httpListenText
