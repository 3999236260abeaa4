# dsrprep-step: verify
# Checks on the host, changing nothing: TCP connects to the RIP and every VIP on every port, a ping
# to every VIP, and the IPv4 routes whose destination is a VIP.
param(
    [string[]]$Vips,
    [int[]]$Ports,
    [string]$Rip,
    [int]$TimeoutMs
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: ip

function Test-TcpPort([string]$Address, [int]$Port, [int]$Timeout) {
    # BeginConnect + WaitOne bounds the wait (a plain Connect can hang for ~20 s on a dropped
    # SYN). The socket family follows the address: the default TcpClient is IPv4 only.
    $ip = [System.Net.IPAddress]::Parse($Address)
    $client = New-Object System.Net.Sockets.TcpClient($ip.AddressFamily)
    try {
        $pending = $client.BeginConnect($ip, $Port, $null, $null)
        if (-not $pending.AsyncWaitHandle.WaitOne($Timeout, $false)) { return $false }
        $client.EndConnect($pending)
        return $true
    } catch {
        return $false
    } finally {
        $client.Close()
    }
}

function Test-Ping([string]$Address, [int]$Timeout) {
    $ping = New-Object System.Net.NetworkInformation.Ping
    try {
        return ([string]$ping.Send([System.Net.IPAddress]::Parse($Address), $Timeout).Status -eq 'Success')
    } catch {
        return $false
    }
}

$timeout = $TimeoutMs
if ($timeout -le 0) { $timeout = 3000 }

$vipList = New-Object System.Collections.ArrayList
foreach ($vip in @($Vips)) {
    if ([string]::IsNullOrEmpty($vip)) { continue }
    $canonical = ConvertTo-CanonicalIp $vip
    if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $vip) }
    [void]$vipList.Add($canonical)
}
$targets = New-Object System.Collections.ArrayList
if (-not [string]::IsNullOrEmpty($Rip)) {
    $canonicalRip = ConvertTo-CanonicalIp $Rip
    if ($null -eq $canonicalRip) { throw ("Rip '{0}' is not an IP address" -f $Rip) }
    [void]$targets.Add($canonicalRip)
}
foreach ($vip in $vipList) { [void]$targets.Add($vip) }

$tcp = New-Object System.Collections.ArrayList
foreach ($address in $targets) {
    foreach ($port in @($Ports)) {
        if ($null -eq $port) { continue }
        [void]$tcp.Add(@{ address = $address; port = [int]$port; ok = (Test-TcpPort $address ([int]$port) $timeout) })
    }
}

$pings = New-Object System.Collections.ArrayList
foreach ($vip in $vipList) {
    [void]$pings.Add(@{ address = $vip; ok = (Test-Ping $vip $timeout) })
}

# Win32_IP4RouteTable is there from Windows XP / 2003 on; IPv6 VIPs have no row in it.
$routes = New-Object System.Collections.ArrayList
foreach ($route in @(Get-WmiObject -Class Win32_IP4RouteTable)) {
    $destination = ConvertTo-CanonicalIp ([string]$route.Destination)
    if ($null -eq $destination -or -not $vipList.Contains($destination)) { continue }
    [void]$routes.Add(@{
        destination = [string]$route.Destination
        mask = [string]$route.Mask
        next_hop = [string]$route.NextHop
        interface_index = [int]$route.InterfaceIndex
        metric = [int]$route.Metric1
    })
}

@{
    changed = $false
    tcp = [object[]]$tcp.ToArray()
    ping = [object[]]$pings.ToArray()
    routes = [object[]]$routes.ToArray()
}
