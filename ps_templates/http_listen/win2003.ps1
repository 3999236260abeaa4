# dsrprep-step: http_listen
# Windows Server 2003: adds or removes one address in the http.sys IP listen list with httpcfg
# (Support Tools), then has the HTTP service restarted, since http.sys reads the list at start.
param(
    [string]$Ensure,
    [string]$Address
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
# dsrprep-include: http_restart

function Find-Httpcfg {
    # httpcfg.exe comes with the Windows Server 2003 Support Tools, which many servers lack.
    $command = Get-Command 'httpcfg.exe' -CommandType Application -ErrorAction SilentlyContinue
    if ($null -ne $command) { return @($command)[0].Definition }
    # 64-bit 2003 installs the 32-bit Support Tools under Program Files (x86).
    foreach ($root in @($env:ProgramFiles, ${env:ProgramFiles(x86)})) {
        if ($null -eq $root) { continue }
        $candidate = Join-Path $root 'Support Tools\httpcfg.exe'
        if (Test-Path -LiteralPath $candidate -PathType Leaf) { return $candidate }
    }
    throw 'httpcfg.exe was not found (Windows Server 2003 Support Tools)'
}

function Invoke-Httpcfg([string]$Path, [string[]]$Arguments, [int[]]$Accepted) {
    # httpcfg reports the HTTP API's status as "... completed with N." rather than (reliably)
    # through its exit code: 0 is success, 1168 (ERROR_NOT_FOUND) an empty list when querying.
    $result = Invoke-NativeCommand $Path $Arguments @(0, 1, 87, 183, 1168)
    $status = $result.code
    if ($result.output -match 'completed with (\d+)') { $status = [int]$matches[1] }
    if ($Accepted -notcontains $status) {
        throw ('{0} failed (status {1}): {2}' -f $result.command, $status, $result.output.Trim())
    }
    return $result
}

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
$canonical = ConvertTo-CanonicalIp $Address
if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $Address) }

$httpcfg = Find-Httpcfg
# Records "IP : <address>" each followed by a dashed line.
$query = Invoke-Httpcfg $httpcfg @('query', 'iplisten') @(0, 1168)
$listed = $false
foreach ($line in @($query.output -split "`r?`n")) {
    if ($line -match '^\s*[^:]+:\s*(\S+)\s*$' -and (ConvertTo-CanonicalIp $matches[1]) -eq $canonical) { $listed = $true }
}

$changed = $false
$output = $null
$restart = $null
if ($Ensure -eq 'Present' -and -not $listed) {
    $output = (Invoke-Httpcfg $httpcfg @('set', 'iplisten', '-i', $Address) @(0)).output
    $changed = $true
} elseif ($Ensure -eq 'Absent' -and $listed) {
    $output = (Invoke-Httpcfg $httpcfg @('delete', 'iplisten', '-i', $Address) @(0)).output
    $changed = $true
}
if ($changed) { $restart = Start-HttpRestart }

@{
    changed = $changed
    address = $canonical
    restart_scheduled = $changed
    restart = $restart
    output = $output
}
