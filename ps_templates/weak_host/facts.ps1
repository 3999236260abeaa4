# dsrprep-facts: weak_host
# Weak host flags have no WMI property on 2008/2008 R2: netsh is the only reader. Called by
# index, never by name (names are localized and renamed); the text goes back raw, one entry per
# adapter with an interface index (none on 2003).
$netshV4 = @{}
$netshV6 = @{}
foreach ($item in $facts.adapters) {
    if ($null -eq $item.interface_index) { continue }
    $key = [string]$item.interface_index
    $netshV4[$key] = Get-NativeText 'netsh.exe' @('interface', 'ipv4', 'show', 'interface', $key)
    $netshV6[$key] = Get-NativeText 'netsh.exe' @('interface', 'ipv6', 'show', 'interface', $key)
}
$facts['netsh_ipv4'] = $netshV4
$facts['netsh_ipv6'] = $netshV6
