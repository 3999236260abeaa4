# dsrprep-step: http_listen
# Windows Server 2003: adds or removes addresses in the http.sys IP listen list with httpcfg
# (Support Tools), then has the HTTP service restarted, since http.sys reads the list at start.
param(
    [string]$Ensure,
    [string[]]$Addresses
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
# dsrprep-include: marker
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
if ($null -eq $Addresses -or $Addresses.Count -eq 0) { throw 'Addresses is empty' }
$wanted = New-Object System.Collections.ArrayList
foreach ($address in $Addresses) {
    $canonical = ConvertTo-CanonicalIp $address
    if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $address) }
    [void]$wanted.Add($canonical)
}

$httpcfg = Find-Httpcfg
# Records "IP : <address>" each followed by a dashed line.
$query = Invoke-Httpcfg $httpcfg @('query', 'iplisten') @(0, 1168)
$current = New-Object System.Collections.ArrayList
foreach ($line in @($query.output -split "`r?`n")) {
    if ($line -match '^\s*[^:]+:\s*(\S+)\s*$') {
        $listedAddress = ConvertTo-CanonicalIp $matches[1]
        if ($null -ne $listedAddress) { [void]$current.Add($listedAddress) }
    }
}

$changed = $false
$outputs = New-Object System.Collections.ArrayList
$restart = $null
foreach ($canonical in $wanted) {
    $listed = $current -contains $canonical
    if ($Ensure -eq 'Present' -and -not $listed) {
        [void]$outputs.Add((Invoke-Httpcfg $httpcfg @('set', 'iplisten', '-i', $canonical) @(0)).output)
        $changed = $true
    } elseif ($Ensure -eq 'Absent' -and $listed) {
        [void]$outputs.Add((Invoke-Httpcfg $httpcfg @('delete', 'iplisten', '-i', $canonical) @(0)).output)
        $changed = $true
    }
}
# One restart for every address changed: each restart takes IIS and WinRM down for seconds. A
# restart scheduled by an earlier run that never completed (http.sys may still use the old list)
# is scheduled again, whether or not this run changed the list.
$pending = Get-HttpRestartPending
if ($changed -or $pending -gt 0) {
    $restart = Start-HttpRestart ($pending + 1)
    $changed = $true
}
$output = $null
if ($outputs.Count -gt 0) { $output = ($outputs -join '') }

@{
    changed = $changed
    addresses = [object[]]$wanted.ToArray()
    restart_scheduled = ($null -ne $restart)
    restart = $restart
    output = $output
}
