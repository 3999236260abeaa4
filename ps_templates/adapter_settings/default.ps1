# dsrprep-step: adapter_settings
# The adapter's interface metric, dynamic DNS registration and NetBIOS over TCP/IP, through WMI
# (every version from 2003 on), each changed only when it differs.
param(
    [string]$PnpDeviceId,
    [int]$Metric,
    [bool]$DnsRegistration,
    [int]$NetBios
)
$ErrorActionPreference = 'Stop'

function Get-MarkerValue([string]$Name) {
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SOFTWARE\dsrprep\DSR')
    if ($null -eq $key) { return $null }
    try {
        $value = $key.GetValue($Name)
        if ($null -eq $value) { return $null }
        return [string]$value
    } finally {
        $key.Close()
    }
}

function Resolve-Adapter([string]$PnpDeviceId) {
    # '' names the loopback recorded by the loopback step, which may not have existed when the plan
    # was made. Adapters are found by PNP device id: names are localized and renamed, and interface
    # indexes change when an adapter is disabled and enabled again.
    $id = $PnpDeviceId
    if ([string]::IsNullOrEmpty($id)) {
        $id = Get-MarkerValue 'LoopbackPnpId'
        if ([string]::IsNullOrEmpty($id)) {
            throw 'PnpDeviceId is empty and HKLM\SOFTWARE\dsrprep\DSR has no LoopbackPnpId'
        }
    }
    $found = $null
    foreach ($candidate in @(Get-WmiObject -Class Win32_NetworkAdapter)) {
        if ([string]$candidate.PNPDeviceID -eq $id) { $found = $candidate; break }
    }
    if ($null -eq $found) { throw ("No network adapter has PNPDeviceID '{0}'" -f $id) }
    $config = Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter ('Index={0}' -f [int]$found.Index)
    if ($null -eq $config) { throw ("Adapter '{0}' has no Win32_NetworkAdapterConfiguration" -f $id) }
    return @{ adapter = $found; config = $config; pnp_device_id = [string]$found.PNPDeviceID }
}

function Assert-WmiResult([string]$Method, $Result) {
    # 0 done, 1 done once the machine restarts; anything else is a failure code.
    $code = [int]$Result.ReturnValue
    if ($code -ne 0 -and $code -ne 1) { throw ('{0} returned {1}' -f $Method, $code) }
    return ($code -eq 1)
}

function Test-AutomaticMetric([string]$SettingId) {
    # With the automatic metric WMI still reports a number (the computed one), and Windows may
    # change it later: only a fixed InterfaceMetric in the TCP/IP parameters is a set metric.
    $path = 'SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces\' + $SettingId
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path)
    if ($null -eq $key) { return $true }
    try {
        $value = $key.GetValue('InterfaceMetric')
        return ($null -eq $value -or [int]$value -eq 0)
    } finally {
        $key.Close()
    }
}

if ($NetBios -lt 0 -or $NetBios -gt 2) { throw ('NetBios must be 0 (from DHCP), 1 (on) or 2 (off), not {0}' -f $NetBios) }
if ($Metric -lt 0 -or $Metric -gt 9999) { throw ('Metric {0} is out of range (1-9999; 0 leaves the metric alone)' -f $Metric) }

$resolved = Resolve-Adapter $PnpDeviceId
$config = $resolved.config
$changed = $false
$rebootRequired = $false
$calls = New-Object System.Collections.ArrayList

if ($Metric -gt 0) {
    $current = $config.IPConnectionMetric
    if ($null -eq $current -or [int]$current -ne $Metric -or (Test-AutomaticMetric ([string]$config.SettingID))) {
        $rebootRequired = (Assert-WmiResult 'SetIPConnectionMetric' $config.SetIPConnectionMetric([uint32]$Metric)) -or $rebootRequired
        [void]$calls.Add(('SetIPConnectionMetric({0})' -f $Metric))
        $changed = $true
    }
}

# Registration of the connection's addresses (the VIPs would resolve as this host's name) and of
# them under the connection-specific suffix, which dsrprep always turns off.
if ([bool]$config.FullDNSRegistrationEnabled -ne $DnsRegistration -or [bool]$config.DomainDNSRegistrationEnabled) {
    $rebootRequired = (Assert-WmiResult 'SetDynamicDNSRegistration' $config.SetDynamicDNSRegistration($DnsRegistration, $false)) -or $rebootRequired
    [void]$calls.Add(('SetDynamicDNSRegistration({0}, False)' -f $DnsRegistration))
    $changed = $true
}

$currentNetBios = $config.TcpipNetbiosOptions
if ($null -eq $currentNetBios -or [int]$currentNetBios -ne $NetBios) {
    $rebootRequired = (Assert-WmiResult 'SetTcpipNetbios' $config.SetTcpipNetbios([uint32]$NetBios)) -or $rebootRequired
    [void]$calls.Add(('SetTcpipNetbios({0})' -f $NetBios))
    $changed = $true
}

@{
    changed = $changed
    pnp_device_id = $resolved.pnp_device_id
    reboot_required = $rebootRequired
    commands = [object[]]$calls.ToArray()
}
