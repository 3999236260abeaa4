# dsrprep-lib: native
# Native tools (netsh, appcmd, httpcfg, arp, ...) run with their exit code checked.
function Invoke-NativeCommand([string]$FilePath, [string[]]$Arguments, [int[]]$SuccessCodes = @(0)) {
    # Native tools report failure only through their exit code and print the reason on stdout or
    # stderr: stderr must not turn into a terminating error before the code has been read.
    if ($null -eq (Get-Command $FilePath -CommandType Application -ErrorAction SilentlyContinue)) {
        throw ('{0} was not found' -f $FilePath)
    }
    $ErrorActionPreference = 'Continue'
    $output = [string](& $FilePath $Arguments 2>&1 | ForEach-Object { [string]$_ } | Out-String)
    $code = $LASTEXITCODE
    $ErrorActionPreference = 'Stop'
    $shown = @($Arguments | ForEach-Object { if ($_ -match '\s') { '"' + $_ + '"' } else { $_ } })
    $commandLine = ('{0} {1}' -f [IO.Path]::GetFileName($FilePath), ($shown -join ' '))
    if ($SuccessCodes -notcontains $code) {
        throw ('{0} failed (exit {1}): {2}' -f $commandLine, $code, $output.Trim())
    }
    return @{ code = $code; output = $output; command = $commandLine }
}
