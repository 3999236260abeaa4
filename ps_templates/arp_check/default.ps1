# dsrprep-step: arp_check
# Run on a peer on the VIP's segment: which MAC answers ARP for the address. After DSR it must be
# the load balancer's, never a real server's NIC.
param(
    [string]$Address
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native

$parsed = $null
if (-not [System.Net.IPAddress]::TryParse([string]$Address, [ref]$parsed) -or $parsed.AddressFamily -ne [System.Net.Sockets.AddressFamily]::InterNetwork) {
    throw ("'{0}' is not an IPv4 address (ARP is IPv4 only)" -f $Address)
}
$target = $parsed.ToString()

# arp -d needs an elevated token on 2008 and later, and it exits 1 both for that and for "no such
# entry": without elevation the cached entry would stay and the answer below would be stale.
$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'arp -d needs an elevated session (member of the local Administrators group)'
}

# Exit 1 is "no entry to delete / to show": nothing cached is an answer here, not a failure.
$deleted = Invoke-NativeCommand 'arp.exe' @('-d', $target) @(0, 1)

# One echo request makes this host resolve the address afresh.
$pingOk = $false
$ping = New-Object System.Net.NetworkInformation.Ping
try {
    $pingOk = ([string]$ping.Send($parsed, 1000).Status -eq 'Success')
} catch {
    $pingOk = $false
}

$shown = Invoke-NativeCommand 'arp.exe' @('-a', $target) @(0, 1)

@{
    changed = $false
    arp_text = $shown.output
    ping_ok = $pingOk
    delete_output = $deleted.output
}
