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

function Test-FirewallRule([string]$RuleName) {
    # Through the firewall API, not `netsh advfirewall firewall show rule`: netsh exits 1 both for
    # "No rules match the specified criteria." (a localized text) and for real errors, such as the
    # Windows Firewall service being stopped, where HNetCfg.FwPolicy2 throws instead. The name
    # carries the VIP, protocol and port, so a rule of that name is the rule asked for.
    $policy = New-Object -ComObject HNetCfg.FwPolicy2
    foreach ($rule in $policy.Rules) {
        if ([string]$rule.Name -eq $RuleName) { return $true }
    }
    return $false
}

try {
    $exists = Test-FirewallRule $Name
} catch {
    throw ('The Windows Firewall rules could not be read through HNetCfg.FwPolicy2: {0}' -f $_.Exception.Message)
}

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
