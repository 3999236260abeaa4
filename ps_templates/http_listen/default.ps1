# dsrprep-step: http_listen
# 2008+: adds or removes one address in the http.sys IP listen list (`netsh http`), then has the
# HTTP service restarted, since http.sys reads the list only when it starts.
param(
    [string]$Ensure,
    [string]$Address
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
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
$canonical = ConvertTo-CanonicalIp $Address
if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $Address) }

$shown = Invoke-NativeCommand 'netsh.exe' @('http', 'show', 'iplisten')
$listed = (Get-ListenList $shown.output) -contains $canonical

$changed = $false
$output = $null
$restart = $null
if ($Ensure -eq 'Present' -and -not $listed) {
    $output = (Invoke-NativeCommand 'netsh.exe' @('http', 'add', 'iplisten', "ipaddress=$Address")).output
    $changed = $true
} elseif ($Ensure -eq 'Absent' -and $listed) {
    $output = (Invoke-NativeCommand 'netsh.exe' @('http', 'delete', 'iplisten', "ipaddress=$Address")).output
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
