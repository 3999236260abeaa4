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

# dsrprep-include: marker
# dsrprep-include: adapter
# dsrprep-include: wmi

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
