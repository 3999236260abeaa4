# dsrprep-step: firewall_rule
# Windows Firewall with Advanced Security (2008+): an inbound allow rule for one VIP, protocol and
# port, scoped to the VIP and to every profile so the loopback's unidentified network cannot block it.
param(
    [string]$Ensure,
    [string]$Name,
    [string]$Vip,
    [string]$Protocol,
    [int]$Port
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
if ([string]::IsNullOrEmpty($Name)) { throw 'Name is empty' }

# `show rule` exits 1 ("No rules match the specified criteria.") when no rule has that name. The
# name carries the VIP, protocol and port, so a rule of that name is the rule asked for.
$shown = Invoke-NativeCommand 'netsh.exe' @('advfirewall', 'firewall', 'show', 'rule', "name=$Name") @(0, 1)
$exists = ($shown.code -eq 0)

$changed = $false
$output = $null
if ($Ensure -eq 'Present' -and -not $exists) {
    $proto = ([string]$Protocol).ToUpper()
    if ($proto -ne 'TCP' -and $proto -ne 'UDP') { throw ("Protocol must be TCP or UDP, not '{0}'" -f $Protocol) }
    if ($Port -lt 1 -or $Port -gt 65535) { throw ('Port {0} is out of range' -f $Port) }
    $parsed = $null
    if (-not [System.Net.IPAddress]::TryParse([string]$Vip, [ref]$parsed)) { throw ("Vip '{0}' is not an IP address" -f $Vip) }
    $added = Invoke-NativeCommand 'netsh.exe' @(
        'advfirewall', 'firewall', 'add', 'rule', "name=$Name", 'dir=in', 'action=allow',
        "protocol=$proto", "localip=$Vip", "localport=$Port", 'profile=any'
    )
    $changed = $true
    $output = $added.output
} elseif ($Ensure -eq 'Absent' -and $exists) {
    $deleted = Invoke-NativeCommand 'netsh.exe' @('advfirewall', 'firewall', 'delete', 'rule', "name=$Name")
    $changed = $true
    $output = $deleted.output
}

@{
    changed = $changed
    name = $Name
    output = $output
}
