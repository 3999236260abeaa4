# dsrprep-step: skip_as_source
# 2008+ (2008 SP2 with KB975808): whether Windows may choose one loopback address as the source of
# outgoing traffic. netsh sets the flag only when it adds an address: delete, then add again.
param(
    [string]$PnpDeviceId,
    [string]$Address,
    [string]$Mask,
    [bool]$Enabled
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
# dsrprep-include: marker
# dsrprep-include: adapter

function Get-AddressBlocks([string]$Text, [string]$Wanted) {
    # `show ipaddresses level=verbose` (IPv4) and `show addresses level=verbose` (IPv6) print one
    # block per address: a title line holding the address ("Address 10.0.0.50 Parameters"),
    # a dashed rule, then "label : value" lines up to a blank line, the first naming the interface.
    # Labels are translated on other languages; the address, true/false and the layout are not.
    $lines = @($Text -split "`r?`n")
    $blocks = New-Object System.Collections.ArrayList
    for ($i = 0; $i -lt $lines.Count - 1; $i++) {
        if ($lines[$i + 1] -notmatch '^\s*-{10,}\s*$' -or $lines[$i].Trim() -eq '') { continue }
        $address = $null
        foreach ($token in ($lines[$i].Trim() -split '\s+')) {
            $address = ConvertTo-CanonicalIp $token
            if ($null -ne $address) { break }
        }
        if ($address -ne $Wanted) { continue }
        $fields = New-Object System.Collections.ArrayList
        for ($j = $i + 2; $j -lt $lines.Count; $j++) {
            if ($lines[$j].Trim() -eq '') { break }
            if ($lines[$j] -match '^\s*([^:]*[^:\s])\s*:\s?(.*?)\s*$') {
                [void]$fields.Add(@{ label = $matches[1]; value = $matches[2] })
            }
        }
        [void]$blocks.Add($fields)
    }
    return ,([object[]]$blocks.ToArray())
}

function Get-SkipFlag($Fields) {
    # English label first; otherwise the one field after the interface line whose value is
    # true or false. $null: this netsh does not report the flag (no KB975808).
    foreach ($field in $Fields) {
        if ($field.label -eq 'Skip as Source') {
            if ($field.value -eq 'true') { return $true }
            if ($field.value -eq 'false') { return $false }
            throw ("'Skip as Source' has value '{0}'; expected true or false" -f $field.value)
        }
    }
    $flags = @($Fields | Select-Object -Skip 1 | Where-Object { $_.value -eq 'true' -or $_.value -eq 'false' })
    if ($flags.Count -eq 1) { return ($flags[0].value -eq 'true') }
    if ($flags.Count -gt 1) { throw 'Cannot tell which true/false line of the netsh address block is Skip as Source' }
    return $null
}

function Add-Address([int]$Index, [string]$Context, [string]$Value, [string]$Flag) {
    $arguments = @('interface', $Context, 'add', 'address', [string]$Index) + $Value
    if ($Context -eq 'ipv4') { $arguments += $Mask }
    if ($Flag -ne '') { $arguments += ('skipassource=' + $Flag) }
    return (Invoke-NativeCommand 'netsh.exe' $arguments)
}

$canonical = ConvertTo-CanonicalIp $Address
if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $Address) }
$isV6 = $canonical.Contains(':')
$context = 'ipv4'
$listCommand = 'ipaddresses'
$value = $canonical
if ($isV6) {
    $context = 'ipv6'
    $listCommand = 'addresses'
    $value = ('{0}/128' -f $canonical)
} else {
    $canonicalMask = ConvertTo-CanonicalIp $Mask
    if ($null -eq $canonicalMask -or $canonicalMask.Contains(':')) { throw ("Mask '{0}' is not an IPv4 mask" -f $Mask) }
}

$resolved = Resolve-Adapter $PnpDeviceId
$adapter = $resolved.adapter
if ($null -eq $adapter.InterfaceIndex) { throw 'The adapter has no InterfaceIndex: skipassource needs Windows Server 2008 or later' }
$ifIndex = [int]$adapter.InterfaceIndex

$listing = Invoke-NativeCommand 'netsh.exe' @('interface', $context, 'show', $listCommand, 'level=verbose')
$blocks = Get-AddressBlocks $listing.output $canonical
$block = $null
if ($blocks.Count -eq 1) {
    $block = $blocks[0]
} elseif ($blocks.Count -gt 1) {
    # The same address on several interfaces: take the loopback's, named on the first line.
    $connection = [string]$adapter.NetConnectionID
    $named = @($blocks | Where-Object { @($_).Count -gt 0 -and @($_)[0].value -eq $connection })
    if ($named.Count -ne 1) { throw ('{0} is on several interfaces; cannot tell which is the loopback' -f $canonical) }
    $block = $named[0]
}
# Adding a missing VIP is loopback_config's job, with the rest of the address list.
if ($null -eq $block) { throw ('{0} is not on the loopback (interface {1})' -f $canonical, $ifIndex) }

$current = Get-SkipFlag $block
if ($null -eq $current) {
    throw ('netsh does not report Skip as Source for {0}: this Windows lacks the skipassource option (KB975808 on 2008 SP2)' -f $canonical)
}

$changed = $false
$outputs = New-Object System.Collections.ArrayList
if ($current -ne $Enabled) {
    $wantedFlag = 'false'
    if ($Enabled) { $wantedFlag = 'true' }
    $oldFlag = 'false'
    if ($current) { $oldFlag = 'true' }
    # Between the two commands the VIP is briefly absent from the loopback.
    $deleted = Invoke-NativeCommand 'netsh.exe' @('interface', $context, 'delete', 'address', [string]$ifIndex, $canonical)
    [void]$outputs.Add($deleted.output)
    try {
        $added = Add-Address $ifIndex $context $value $wantedFlag
        [void]$outputs.Add($added.output)
    } catch {
        # Put the address back as it was before passing the failure on.
        $failure = $_
        try { [void](Add-Address $ifIndex $context $value $oldFlag) } catch { ; }
        throw $failure
    }
    $changed = $true
}

$output = $null
if ($outputs.Count -gt 0) { $output = ($outputs -join '') }
@{
    changed = $changed
    address = $canonical
    skip_as_source = $Enabled
    output = $output
}
