# dsrprep-step: firewall_state
# Windows Firewall with Advanced Security (2008+): turns the listed profiles on or off
# (`dsr_firewall: disable` and its rollback).
param(
    [bool]$Enabled,
    [string[]]$Profiles
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native

# NET_FW_PROFILE2_DOMAIN / PRIVATE / PUBLIC. The current state is read from the firewall policy
# object, which does not depend on the display language; netsh makes the change.
$profileTypes = @{ domain = 1; private = 2; public = 4 }
$state = 'off'
if ($Enabled) { $state = 'on' }

$wanted = New-Object System.Collections.ArrayList
foreach ($profileName in @($Profiles)) {
    if ([string]::IsNullOrEmpty($profileName)) { continue }
    $key = $profileName.Trim().ToLower()
    if (-not $profileTypes.ContainsKey($key)) { throw ("Unknown firewall profile '{0}'; expected domain, private or public" -f $profileName) }
    if (-not $wanted.Contains($key)) { [void]$wanted.Add($key) }
}

$policy = New-Object -ComObject HNetCfg.FwPolicy2
$changed = $false
$outputs = New-Object System.Collections.ArrayList
$after = @{}
foreach ($key in $wanted) {
    $current = [bool]$policy.FirewallEnabled($profileTypes[$key])
    if ($current -ne $Enabled) {
        $result = Invoke-NativeCommand 'netsh.exe' @('advfirewall', 'set', ($key + 'profile'), 'state', $state)
        [void]$outputs.Add($result.output)
        $changed = $true
    }
    $after[$key] = $Enabled
}

$output = $null
if ($outputs.Count -gt 0) { $output = ($outputs -join '') }
@{
    changed = $changed
    profiles = $after
    output = $output
}
