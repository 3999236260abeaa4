# dsrprep-step: firewall_state
# Windows Firewall with Advanced Security (2008+): turns the listed profiles on or off
# (`dsr_firewall: disable` and its rollback).
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
