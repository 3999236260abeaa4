# dsrprep-step: loopback_config
# 2008+: makes the loopback's name and addresses exactly as asked, through netsh by interface index
# (static VIPs, with skipassource when asked), with no gateway and no DNS servers.
param(
    [string]$PnpDeviceId,
    [string]$Name,
    [string[]]$Addresses,
    [string[]]$Masks,
    [string[]]$Addresses6,
    [bool]$SkipAsSource,
    [string]$FallbackMask,
    [bool]$Dhcp
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
# dsrprep-include: marker
# dsrprep-include: adapter
# dsrprep-include: lists
# dsrprep-include: wmi

# FallbackMask is for Windows Server 2003 (win2003.ps1), whose EnableStatic may refuse a /32;
# netsh on 2008 and later accepts 255.255.255.255.

$commands = New-Object System.Collections.ArrayList

function Invoke-Netsh([string[]]$Arguments) {
    $result = Invoke-NativeCommand 'netsh.exe' $Arguments
    [void]$commands.Add($result.command)
    return $result
}

function Find-Entry($List, [string]$Address) {
    foreach ($entry in $List) {
        if ($entry.address -eq $Address) { return $entry }
    }
    return $null
}

function Add-Ipv4Address([int]$Index, [string]$Address, [string]$Mask, [bool]$Skip) {
    $arguments = @('interface', 'ipv4', 'add', 'address', [string]$Index, $Address, $Mask)
    # The keyword only when asked: netsh without KB975808 (2008 SP2) rejects it outright.
    if ($Skip) { $arguments += 'skipassource=true' }
    [void](Invoke-Netsh $arguments)
}

function Reset-Ipv4Address([int]$Index, [string]$Address, [string]$Mask, [bool]$Skip, [string]$OldMask) {
    # netsh applies a mask or skipassource only when it adds an address: delete it and add it
    # again. Should the add be refused, the address is put back as it was before failing.
    [void](Invoke-Netsh @('interface', 'ipv4', 'delete', 'address', [string]$Index, $Address))
    try {
        Add-Ipv4Address $Index $Address $Mask $Skip
    } catch {
        $failure = $_
        try { Add-Ipv4Address $Index $Address $OldMask $false } catch { ; }
        throw $failure
    }
}

function Get-Ipv4Addresses($Config) {
    $list = New-Object System.Collections.ArrayList
    $ips = @($Config.IPAddress)
    $subnets = @($Config.IPSubnet)
    for ($i = 0; $i -lt $ips.Count; $i++) {
        $address = ConvertTo-CanonicalIp ([string]$ips[$i])
        if ($null -eq $address -or $address.Contains(':')) { continue }
        $mask = $null
        if ($i -lt $subnets.Count) { $mask = ConvertTo-CanonicalIp ([string]$subnets[$i]) }
        [void]$list.Add(@{ address = $address; mask = $mask })
    }
    return ,([object[]]$list.ToArray())
}

function Get-Ipv6Addresses($Config) {
    # Link-local (fe80::/10) addresses are the stack's own and are left alone.
    $list = New-Object System.Collections.ArrayList
    $ips = @($Config.IPAddress)
    $subnets = @($Config.IPSubnet)
    for ($i = 0; $i -lt $ips.Count; $i++) {
        $address = ConvertTo-CanonicalIp ([string]$ips[$i])
        if ($null -eq $address -or -not $address.Contains(':')) { continue }
        if ($address -match '^fe[89ab][0-9a-f]:') { continue }
        $prefix = ''
        if ($i -lt $subnets.Count) { $prefix = [string]$subnets[$i] }
        [void]$list.Add(@{ address = $address; prefix = $prefix })
    }
    return ,([object[]]$list.ToArray())
}

# --- what was asked ------------------------------------------------------------------------------

$addressList = Get-CleanList $Addresses
$maskList = Get-CleanList $Masks
if ($addressList.Count -ne $maskList.Count) {
    throw ('Addresses has {0} entries but Masks has {1}' -f $addressList.Count, $maskList.Count)
}
$wanted4 = New-Object System.Collections.ArrayList
for ($i = 0; $i -lt $addressList.Count; $i++) {
    $address = ConvertTo-CanonicalIp $addressList[$i]
    $mask = ConvertTo-CanonicalIp $maskList[$i]
    if ($null -eq $address -or $address.Contains(':')) { throw ("'{0}' is not an IPv4 address" -f $addressList[$i]) }
    if ($null -eq $mask -or $mask.Contains(':')) { throw ("'{0}' is not an IPv4 mask" -f $maskList[$i]) }
    [void]$wanted4.Add(@{ address = $address; mask = $mask })
}
$wanted6 = New-Object System.Collections.ArrayList
foreach ($item in (Get-CleanList $Addresses6)) {
    $address = ConvertTo-CanonicalIp $item
    if ($null -eq $address -or -not $address.Contains(':')) { throw ("'{0}' is not an IPv6 address" -f $item) }
    [void]$wanted6.Add($address)
}
if (-not $Dhcp -and $wanted4.Count -eq 0) {
    throw 'Addresses is empty: IPv4 cannot be made static without an address (Dhcp=$true leaves IPv4 on DHCP)'
}

$loopback = Resolve-Adapter $PnpDeviceId
$adapter = $loopback.adapter
$config = $loopback.config
$adapterIndex = [int]$adapter.Index
if ($null -eq $adapter.InterfaceIndex) { throw 'The adapter has no InterfaceIndex (Windows Server 2003 takes win2003.ps1)' }
$ifIndex = [int]$adapter.InterfaceIndex
$changed = $false
$rebootRequired = $false

# --- name ------------------------------------------------------------------------------------------

$oldName = [string]$adapter.NetConnectionID
if (-not [string]::IsNullOrEmpty($Name) -and $oldName -cne $Name) {
    if ([string]::IsNullOrEmpty($oldName)) {
        # No connection name yet: netsh has nothing to address it by.
        $adapter.NetConnectionID = $Name
        [void]$adapter.Put()
        [void]$commands.Add(('Win32_NetworkAdapter.NetConnectionID = {0}' -f $Name))
    } else {
        [void](Invoke-Netsh @('interface', 'set', 'interface', "name=$oldName", "newname=$Name"))
    }
    $changed = $true
}

# --- IPv4 ------------------------------------------------------------------------------------------

if ($Dhcp) {
    if ([bool]$config.DHCPEnabled -eq $false) {
        $rebootRequired = (Assert-WmiResult 'EnableDHCP' $config.EnableDHCP()) -or $rebootRequired
        [void]$commands.Add('Win32_NetworkAdapterConfiguration.EnableDHCP()')
        $changed = $true
    }
} else {
    $current4 = New-Object System.Collections.ArrayList
    foreach ($entry in (Get-Ipv4Addresses $config)) { [void]$current4.Add($entry) }
    $flagFirst = $null
    if ([bool]$config.DHCPEnabled) {
        # `set address ... static` is the netsh command that turns DHCP off. It replaces every IPv4
        # address, the APIPA one included, with the first VIP; it has no skipassource keyword, so
        # with SkipAsSource that address is added again with the flag once the others are in place
        # (the loopback is then never left without an address when it has several VIPs).
        $first = $wanted4[0]
        [void](Invoke-Netsh @('interface', 'ipv4', 'set', 'address', [string]$ifIndex, 'static', $first.address, $first.mask))
        $current4.Clear()
        [void]$current4.Add(@{ address = $first.address; mask = $first.mask })
        if ($SkipAsSource) { $flagFirst = $first }
        $changed = $true
    }
    foreach ($entry in $wanted4) {
        $have = Find-Entry $current4 $entry.address
        if ($null -eq $have) {
            Add-Ipv4Address $ifIndex $entry.address $entry.mask $SkipAsSource
            $changed = $true
        } elseif ($have.mask -ne $entry.mask) {
            Reset-Ipv4Address $ifIndex $entry.address $entry.mask $SkipAsSource $have.mask
            $changed = $true
        }
    }
    foreach ($entry in $current4) {
        if ($null -eq (Find-Entry $wanted4 $entry.address)) {
            [void](Invoke-Netsh @('interface', 'ipv4', 'delete', 'address', [string]$ifIndex, $entry.address))
            $changed = $true
        }
    }
    if ($null -ne $flagFirst) {
        Reset-Ipv4Address $ifIndex $flagFirst.address $flagFirst.mask $true $flagFirst.mask
    }
}

# --- IPv6 (independent of IPv4 DHCP: the VIPs go when the plan asks for none) -----------------------

$current6 = Get-Ipv6Addresses $config
foreach ($address in $wanted6) {
    $have = Find-Entry $current6 $address
    if ($null -ne $have -and $have.prefix -eq '128') { continue }
    if ($null -ne $have) {
        [void](Invoke-Netsh @('interface', 'ipv6', 'delete', 'address', [string]$ifIndex, $address))
    }
    $arguments = @('interface', 'ipv6', 'add', 'address', [string]$ifIndex, ('{0}/128' -f $address))
    if ($SkipAsSource) { $arguments += 'skipassource=true' }
    [void](Invoke-Netsh $arguments)
    $changed = $true
}
foreach ($entry in $current6) {
    if ($wanted6 -notcontains $entry.address) {
        [void](Invoke-Netsh @('interface', 'ipv6', 'delete', 'address', [string]$ifIndex, $entry.address))
        $changed = $true
    }
}

# --- gateways and DNS servers (read again: the address changes may have dropped some) --------------

if (-not $Dhcp) {
    $config = Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter ('Index={0}' -f $adapterIndex)
    $gateways = @(@($config.DefaultIPGateway) | Where-Object { -not [string]::IsNullOrEmpty([string]$_) })
    if (@($gateways | Where-Object { -not ([string]$_).Contains(':') }).Count -gt 0) {
        [void](Invoke-Netsh @('interface', 'ipv4', 'delete', 'address', [string]$ifIndex, 'gateway=all'))
        $changed = $true
    }
    foreach ($gateway in @($gateways | Where-Object { ([string]$_).Contains(':') })) {
        [void](Invoke-Netsh @('interface', 'ipv6', 'delete', 'route', '::/0', [string]$ifIndex, [string]$gateway))
        $changed = $true
    }
    $dnsServers = @(@($config.DNSServerSearchOrder) | Where-Object { -not [string]::IsNullOrEmpty([string]$_) })
    if ($dnsServers.Count -gt 0) {
        # Called without a list, the method empties it.
        $rebootRequired = (Assert-WmiResult 'SetDNSServerSearchOrder' $config.SetDNSServerSearchOrder()) -or $rebootRequired
        [void]$commands.Add('Win32_NetworkAdapterConfiguration.SetDNSServerSearchOrder()')
        $changed = $true
    }
}

$config = Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter ('Index={0}' -f $adapterIndex)
$final = New-Object System.Collections.ArrayList
foreach ($address in @($config.IPAddress)) {
    if (-not [string]::IsNullOrEmpty([string]$address)) { [void]$final.Add([string]$address) }
}

@{
    changed = $changed
    degraded = $false
    addresses = [object[]]$final.ToArray()
    pnp_device_id = $loopback.pnp_device_id
    reboot_required = $rebootRequired
    commands = [object[]]$commands.ToArray()
}
