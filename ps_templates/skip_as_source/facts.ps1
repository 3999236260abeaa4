# dsrprep-facts: skip_as_source
# SkipAsSource is shown by netsh only (WMI has no such property before the 2012 NetTCPIP classes):
# one verbose listing per IP version covers every interface; the parser keys it by address.
$netshV4Addresses = $null
$netshV6Addresses = $null
if (-not $isLegacy) {
    $netshV4Addresses = Get-NativeText 'netsh.exe' @('interface', 'ipv4', 'show', 'ipaddresses', 'level=verbose')
    $netshV6Addresses = Get-NativeText 'netsh.exe' @('interface', 'ipv6', 'show', 'addresses', 'level=verbose')
}
$facts['netsh_ipv4_addresses'] = $netshV4Addresses
$facts['netsh_ipv6_addresses'] = $netshV6Addresses
