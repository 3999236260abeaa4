# dsrprep-step: loopback_config
# Windows Server 2003: makes the loopback's name and IPv4 addresses exactly as asked through WMI
# EnableStatic, with no gateway and no DNS servers. 2003 is weak host and has no skipassource.
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

# IPConnectionMetric's highest value: with the fallback mask the loopback holds a route to the
# whole subnet, and the NIC's route to it must always win.
$FallbackMetric = 9999
$HostMask = '255.255.255.255'

$commands = New-Object System.Collections.ArrayList

function Test-SameList([object[]]$Left, [object[]]$Right) {
    if ($Left.Count -ne $Right.Count) { return $false }
    for ($i = 0; $i -lt $Left.Count; $i++) {
        if ([string]$Left[$i] -ne [string]$Right[$i]) { return $false }
    }
    return $true
}

function Get-Ipv4State([int]$Index) {
    # The adapter's IPv4 addresses and masks in WMI's order, canonical, and whether DHCP is off.
    $current = Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter ('Index={0}' -f $Index)
    $addresses = New-Object System.Collections.ArrayList
    $masks = New-Object System.Collections.ArrayList
    $ips = @($current.IPAddress)
    $subnets = @($current.IPSubnet)
    for ($i = 0; $i -lt $ips.Count; $i++) {
        $address = ConvertTo-CanonicalIp ([string]$ips[$i])
        if ($null -eq $address -or $address.Contains(':')) { continue }
        $mask = ''
        if ($i -lt $subnets.Count) { $mask = ConvertTo-CanonicalIp ([string]$subnets[$i]) }
        [void]$addresses.Add($address)
        [void]$masks.Add($mask)
    }
    return @{ addresses = [object[]]$addresses.ToArray(); masks = [object[]]$masks.ToArray(); static = -not [bool]$current.DHCPEnabled }
}

function Format-Pairs([object[]]$Addresses, [object[]]$Masks) {
    $pairs = @()
    for ($i = 0; $i -lt $Addresses.Count; $i++) { $pairs += ('{0}/{1}' -f $Addresses[$i], $Masks[$i]) }
    if ($pairs.Count -eq 0) { return '(none)' }
    return ($pairs -join ', ')
}

function Assert-EnableStatic($Result, [bool]$WasStatic, [object[]]$Addresses, [object[]]$Masks) {
    # Microsoft's EnableStatic page, Remarks: on an adapter that already has a static address it
    # returns 81 ("Unable to configure DHCP service") although the new addresses are set. So 81 on
    # a static adapter is success once WMI shows exactly the addresses and masks asked for; any
    # other code than 0 or 1, or 81 from an adapter on DHCP, is a failure. True: reboot required.
    if ([int]$Result.ReturnValue -ne 81 -or -not $WasStatic) { return (Assert-WmiResult 'EnableStatic' $Result) }
    $held = $null
    for ($try = 0; $try -lt 5; $try++) {
        if ($try -gt 0) { Start-Sleep -Seconds 1 }
        $held = Get-Ipv4State $adapterIndex
        if ($held.static -and (Test-SameList $held.addresses $Addresses) -and (Test-SameList $held.masks $Masks)) { return $false }
    }
    $holds = Format-Pairs $held.addresses $held.masks
    $asked = Format-Pairs $Addresses $Masks
    throw ('EnableStatic returned 81 (Unable to configure DHCP service) and the adapter holds {0}, not {1}' -f $holds, $asked)
}

# --- what was asked ------------------------------------------------------------------------------

if ((Get-CleanList $Addresses6).Count -gt 0) {
    throw 'Addresses6: IPv6 VIPs are not supported on Windows Server 2003 (its IPv6 stack is separate and has no weak host setting)'
}
if ($SkipAsSource) {
    throw 'SkipAsSource: Windows Server 2003 has no skipassource option'
}
$addressList = Get-CleanList $Addresses
$maskList = Get-CleanList $Masks
if ($addressList.Count -ne $maskList.Count) {
    throw ('Addresses has {0} entries but Masks has {1}' -f $addressList.Count, $maskList.Count)
}
$wantedAddresses = New-Object System.Collections.ArrayList
$wantedMasks = New-Object System.Collections.ArrayList
for ($i = 0; $i -lt $addressList.Count; $i++) {
    $address = ConvertTo-CanonicalIp $addressList[$i]
    $mask = ConvertTo-CanonicalIp $maskList[$i]
    if ($null -eq $address -or $address.Contains(':')) { throw ("'{0}' is not an IPv4 address" -f $addressList[$i]) }
    if ($null -eq $mask -or $mask.Contains(':')) { throw ("'{0}' is not an IPv4 mask" -f $maskList[$i]) }
    [void]$wantedAddresses.Add($address)
    [void]$wantedMasks.Add($mask)
}
$fallback = $null
if (-not [string]::IsNullOrEmpty($FallbackMask)) {
    $fallback = ConvertTo-CanonicalIp $FallbackMask
    if ($null -eq $fallback -or $fallback.Contains(':')) { throw ("FallbackMask '{0}' is not an IPv4 mask" -f $FallbackMask) }
}
if (-not $Dhcp -and $wantedAddresses.Count -eq 0) {
    throw 'Addresses is empty: EnableStatic needs at least one address (Dhcp=$true leaves the loopback on DHCP)'
}

$loopback = Resolve-Adapter $PnpDeviceId
$adapter = $loopback.adapter
$config = $loopback.config
$adapterIndex = [int]$adapter.Index
$changed = $false
$degraded = $false
$rebootRequired = $false

# --- name ------------------------------------------------------------------------------------------

$oldName = [string]$adapter.NetConnectionID
if (-not [string]::IsNullOrEmpty($Name) -and $oldName -cne $Name) {
    if ([string]::IsNullOrEmpty($oldName)) {
        $adapter.NetConnectionID = $Name
        [void]$adapter.Put()
        [void]$commands.Add(('Win32_NetworkAdapter.NetConnectionID = {0}' -f $Name))
    } else {
        $renamed = Invoke-NativeCommand 'netsh.exe' @('interface', 'set', 'interface', "name=$oldName", "newname=$Name")
        [void]$commands.Add($renamed.command)
    }
    $changed = $true
}
$connectionName = [string](Get-WmiObject -Class Win32_NetworkAdapter -Filter ('Index={0}' -f $adapterIndex)).NetConnectionID

# --- IPv4 ------------------------------------------------------------------------------------------

if ($Dhcp) {
    if ([bool]$config.DHCPEnabled -eq $false) {
        $rebootRequired = (Assert-WmiResult 'EnableDHCP' $config.EnableDHCP()) -or $rebootRequired
        [void]$commands.Add('Win32_NetworkAdapterConfiguration.EnableDHCP()')
        $changed = $true
    }
} else {
    $state = Get-Ipv4State $adapterIndex
    $static = $state.static
    $sameAddresses = Test-SameList $state.addresses $wantedAddresses.ToArray()
    $exact = $static -and $sameAddresses -and (Test-SameList $state.masks $wantedMasks.ToArray())

    # The fallback applied by an earlier run is what this host can do: leave it as it is.
    $fallbackMasks = @($wantedAddresses | ForEach-Object { $fallback })
    $fallbackInPlace = $static -and $sameAddresses -and $null -ne $fallback -and
        $wantedMasks.Contains($HostMask) -and
        (Test-SameList $state.masks $fallbackMasks) -and
        ([int]$config.IPConnectionMetric -eq $FallbackMetric)

    if ($fallbackInPlace) {
        $degraded = $true
    } elseif (-not $exact) {
        # EnableStatic replaces the whole list, so it always gets every address. It turns DHCP
        # off and drops the APIPA address with it.
        $result = $config.EnableStatic([string[]]$wantedAddresses.ToArray(), [string[]]$wantedMasks.ToArray())
        [void]$commands.Add('Win32_NetworkAdapterConfiguration.EnableStatic(Addresses, Masks)')
        $code = [int]$result.ReturnValue
        if ($code -eq 66 -and $null -ne $fallback -and $wantedMasks.Contains($HostMask)) {
            # 66: invalid subnet mask (nothing changed). Without a /32 the VIPs get the subnet's
            # mask, which adds a subnet route through the loopback: the highest metric keeps the
            # NIC's route first. The metric goes first, so that a refused metric never leaves the
            # loopback's route competing with the NIC's.
            if ([int]$config.IPConnectionMetric -ne $FallbackMetric) {
                $rebootRequired = (Assert-WmiResult 'SetIPConnectionMetric' $config.SetIPConnectionMetric($FallbackMetric)) -or $rebootRequired
                [void]$commands.Add(('Win32_NetworkAdapterConfiguration.SetIPConnectionMetric({0})' -f $FallbackMetric))
            }
            $result = $config.EnableStatic([string[]]$wantedAddresses.ToArray(), [string[]]$fallbackMasks)
            [void]$commands.Add('Win32_NetworkAdapterConfiguration.EnableStatic(Addresses, FallbackMask)')
            $rebootRequired = (Assert-EnableStatic $result $static $wantedAddresses.ToArray() $fallbackMasks) -or $rebootRequired
            $degraded = $true
        } else {
            $rebootRequired = (Assert-EnableStatic $result $static $wantedAddresses.ToArray() $wantedMasks.ToArray()) -or $rebootRequired
        }
        $changed = $true
    }

    # --- gateways and DNS servers (read again after EnableStatic) ---
    $config = Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter ('Index={0}' -f $adapterIndex)
    $gateways = @(@($config.DefaultIPGateway) | Where-Object { -not [string]::IsNullOrEmpty([string]$_) })
    if ($gateways.Count -gt 0) {
        # 2003's `interface ip` context knows interfaces by connection name only.
        $cleared = Invoke-NativeCommand 'netsh.exe' @('interface', 'ip', 'delete', 'address', "name=$connectionName", 'gateway=all')
        [void]$commands.Add($cleared.command)
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
    degraded = $degraded
    addresses = [object[]]$final.ToArray()
    pnp_device_id = $loopback.pnp_device_id
    reboot_required = $rebootRequired
    commands = [object[]]$commands.ToArray()
}
