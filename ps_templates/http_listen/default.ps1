# dsrprep-step: http_listen
# 2008+: adds or removes addresses in the http.sys IP listen list (`netsh http`), then has the
# HTTP service restarted once, since http.sys reads the list only when it starts.
param(
    [string]$Ensure,
    [string[]]$Addresses
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
# dsrprep-include: marker
# dsrprep-include: http_restart

function Get-ListenList([string]$Text) {
    # A title, a dashed rule, then one address per line; nothing under the rule when empty.
    $list = New-Object System.Collections.ArrayList
    foreach ($line in @($Text -split "`r?`n")) {
        $address = ConvertTo-CanonicalIp $line
        if ($null -ne $address) { [void]$list.Add($address) }
    }
    return ,([object[]]$list.ToArray())
}

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
if ($null -eq $Addresses -or $Addresses.Count -eq 0) { throw 'Addresses is empty' }
$wanted = New-Object System.Collections.ArrayList
foreach ($address in $Addresses) {
    $canonical = ConvertTo-CanonicalIp $address
    if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $address) }
    [void]$wanted.Add($canonical)
}

$shown = Invoke-NativeCommand 'netsh.exe' @('http', 'show', 'iplisten')
$current = Get-ListenList $shown.output

$changed = $false
$outputs = New-Object System.Collections.ArrayList
$restart = $null
foreach ($canonical in $wanted) {
    $listed = $current -contains $canonical
    if ($Ensure -eq 'Present' -and -not $listed) {
        [void]$outputs.Add((Invoke-NativeCommand 'netsh.exe' @('http', 'add', 'iplisten', "ipaddress=$canonical")).output)
        $changed = $true
    } elseif ($Ensure -eq 'Absent' -and $listed) {
        [void]$outputs.Add((Invoke-NativeCommand 'netsh.exe' @('http', 'delete', 'iplisten', "ipaddress=$canonical")).output)
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
