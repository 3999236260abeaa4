# dsrprep-step: arp_retry
# Sets the TCP/IP ArpRetryCount value to $Count, or deletes it when $Count is -1 (Windows then uses
# its built-in 3). Through .NET's registry classes, which PowerShell 2.0 on 2003 has.
param(
    [Parameter(Mandatory = $true)][int]$Count
)
$ErrorActionPreference = 'Stop'

if ($Count -lt -1 -or $Count -gt 3) { throw "ArpRetryCount must be 0 to 3 (or -1 to delete it), not $Count" }
$key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Services\Tcpip\Parameters', $true)
if ($null -eq $key) { throw 'HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters is missing' }
try {
    $previous = $key.GetValue('ArpRetryCount')
    if ($null -ne $previous) { $previous = [int]$previous }
    $changed = $false
    if ($Count -eq -1 -and $null -ne $previous) {
        $key.DeleteValue('ArpRetryCount', $false)
        $changed = $true
    } elseif ($Count -ge 0 -and $previous -ne $Count) {
        $key.SetValue('ArpRetryCount', $Count, [Microsoft.Win32.RegistryValueKind]::DWord)
        $changed = $true
    }
} finally {
    $key.Close()
}

@{
    changed = $changed
    previous = $previous
}
