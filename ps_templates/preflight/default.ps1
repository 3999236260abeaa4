# dsrprep-step: preflight
# Refuses, before anything is changed, a host the DSR steps cannot run on safely: no administrator
# token, a 32-bit session on 64-bit Windows, PowerShell older than 2.0, a VIP already on a real NIC.
param(
    [string[]]$Vips
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: ip

$problems = New-Object System.Collections.ArrayList

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
$elevated = [bool]$principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $elevated) {
    [void]$problems.Add('the session is not elevated (not a member of the local Administrators group, or UAC filtered the token of a local account)')
}

# A 32-bit process on 64-bit Windows sees PROCESSOR_ARCHITEW6432. SetupAPI refuses to install
# devices from it (ERROR_IN_WOW64), and system32 and HKLM\SOFTWARE are redirected.
$process64 = ([IntPtr]::Size -eq 8)
$os64 = $process64 -or (-not [string]::IsNullOrEmpty($env:PROCESSOR_ARCHITEW6432))
if ($os64 -and -not $process64) {
    [void]$problems.Add('this is a 32-bit PowerShell on 64-bit Windows; connect to the 64-bit endpoint (Microsoft.PowerShell, not Microsoft.PowerShell32)')
}

$psVersion = '1.0'
if ($null -ne $PSVersionTable) { $psVersion = $PSVersionTable.PSVersion.ToString() }
if ([int]($psVersion.Split('.')[0]) -lt 2) {
    [void]$problems.Add(('PowerShell {0} is older than 2.0' -f $psVersion))
}

$wanted = @{}
foreach ($vip in @($Vips)) {
    if ([string]::IsNullOrEmpty($vip)) { continue }
    $canonical = ConvertTo-CanonicalIp $vip
    if ($null -eq $canonical) {
        [void]$problems.Add(("'{0}' is not an IP address" -f $vip))
        continue
    }
    $wanted[$canonical] = $vip
}

# A VIP on any adapter that is not a Microsoft loopback (ServiceName msloop) makes this host
# answer ARP for it: the load balancer's traffic would be stolen, and the plan must not go on.
$adaptersByIndex = @{}
foreach ($adapter in @(Get-WmiObject -Class Win32_NetworkAdapter)) {
    $adaptersByIndex[[int]$adapter.Index] = $adapter
}
$holderList = New-Object System.Collections.ArrayList
if ($wanted.Count -gt 0) {
    foreach ($config in @(Get-WmiObject -Class Win32_NetworkAdapterConfiguration)) {
        foreach ($address in @($config.IPAddress)) {
            $canonical = ConvertTo-CanonicalIp ([string]$address)
            if ($null -eq $canonical -or -not $wanted.ContainsKey($canonical)) { continue }
            $adapter = $adaptersByIndex[[int]$config.Index]
            $serviceName = ''
            $adapterName = [string]$config.Description
            if ($null -ne $adapter) {
                $serviceName = [string]$adapter.ServiceName
                if (-not [string]::IsNullOrEmpty([string]$adapter.NetConnectionID)) { $adapterName = [string]$adapter.NetConnectionID }
            }
            [void]$holderList.Add(@{
                address = $wanted[$canonical]
                adapter = $adapterName
                service_name = $serviceName
            })
            if ($serviceName -ne 'msloop') {
                [void]$problems.Add(("VIP {0} is bound to '{1}' (service {2}), an adapter that is not a loopback; it answers ARP for the VIP on the segment" -f $wanted[$canonical], $adapterName, $serviceName))
            }
        }
    }
}

if ($problems.Count -gt 0) {
    throw ('Preflight refused: ' + ($problems -join '; '))
}

@{
    changed = $false
    checks = @{
        elevated = $elevated
        process_64bit = $process64
        os_64bit = $os64
        powershell_version = $psVersion
        vip_holders = [object[]]$holderList.ToArray()
    }
}
