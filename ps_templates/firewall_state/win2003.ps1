# dsrprep-step: firewall_state
# Windows Server 2003 (Windows Firewall, `netsh firewall`): the operational mode of the current
# profile. 2003 has no per-profile switch in this sense; Profiles is ignored.
param(
    [bool]$Enabled,
    [string[]]$Profiles
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native

# `set opmode` without profile= acts on the current profile (Domain or Standard), which is also
# the one the firewall API reports as CurrentProfile; reading it does not depend on the language.
$manager = New-Object -ComObject HNetCfg.FwMgr
$currentProfile = $manager.LocalPolicy.CurrentProfile
$current = [bool]$currentProfile.FirewallEnabled

$changed = $false
$output = $null
if ($current -ne $Enabled) {
    $mode = 'DISABLE'
    if ($Enabled) { $mode = 'ENABLE' }
    $result = Invoke-NativeCommand 'netsh.exe' @('firewall', 'set', 'opmode', "mode=$mode")
    $output = $result.output
    $changed = $true
}

@{
    changed = $changed
    enabled = $Enabled
    current_profile_type = [int]$manager.CurrentProfileType
    output = $output
}
