# dsrprep-lib: ip
# IP addresses compared in their canonical form.
function ConvertTo-CanonicalIp([string]$Text) {
    # WMI and netsh print IPv6 addresses with or without a zone and in any case: compare the
    # parsed form. IPAddress.TryParse also accepts "10" (0.0.0.10), hence the shape test first.
    if ([string]::IsNullOrEmpty($Text)) { return $null }
    $candidate = $Text.Trim().Split('%')[0]
    if ($candidate -notmatch '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' -and $candidate -notmatch ':') { return $null }
    $parsed = $null
    if (-not [System.Net.IPAddress]::TryParse($candidate, [ref]$parsed)) { return $null }
    return $parsed.ToString()
}
