# dsrprep-lib: adapter
# An adapter by PNP device id, or the loopback the marker names (needs the marker lib).
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
