# dsrprep-step: firewall_state
# Windows Server 2003 (Windows Firewall, `netsh firewall`): the operational mode of the current
# profile. 2003 has no per-profile switch in this sense; Profiles is ignored.
param(
    [bool]$Enabled,
    [string[]]$Profiles
)
$ErrorActionPreference = 'Stop'

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
