# dsrprep-facts: arp_retry
# ArpRetryCount under Tcpip\Parameters; null when the value is absent (Windows then sends 3).
$arpKey = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Services\Tcpip\Parameters')
$arpRetry = $null
if ($null -ne $arpKey) {
    $value = $arpKey.GetValue('ArpRetryCount')
    if ($null -ne $value) { $arpRetry = [int]$value }
    $arpKey.Close()
}
$facts['arp_retry_count'] = $arpRetry
