# dsrprep-step: firewall_rule
# Windows Server 2003 (Windows Firewall, `netsh firewall`): a port opening for the VIP's protocol
# and port in both profiles. 2003 port openings cannot be limited to a local address.
param(
    [string]$Ensure,
    [string]$Name,
    [string]$Vip,
    [string]$Protocol,
    [int]$Port
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native

function Get-PortOpening($FirewallProfile, [int]$Number, [int]$ProtocolNumber) {
    foreach ($opening in $FirewallProfile.GloballyOpenPorts) {
        if ([int]$opening.Port -eq $Number -and [int]$opening.Protocol -eq $ProtocolNumber) { return $opening }
    }
    return $null
}

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
if ([string]::IsNullOrEmpty($Name)) { throw 'Name is empty' }
$proto = ([string]$Protocol).ToUpper()
$protocolNumbers = @{ TCP = 6; UDP = 17 }
if (-not $protocolNumbers.ContainsKey($proto)) { throw ("Protocol must be TCP or UDP, not '{0}'" -f $Protocol) }
if ($Port -lt 1 -or $Port -gt 65535) { throw ('Port {0} is out of range' -f $Port) }

# Port openings are keyed by port and protocol, not by name: the Windows Firewall API (the same
# store netsh writes) tells, language-independently, whether one exists and whose it is. An opening
# somebody else made for this port is neither replaced nor removed.
$manager = New-Object -ComObject HNetCfg.FwMgr
$profileNames = @{ 0 = 'DOMAIN'; 1 = 'STANDARD' }
$openings = @{}
foreach ($type in @(0, 1)) {
    $openings[$type] = Get-PortOpening ($manager.LocalPolicy.GetProfileByType($type)) $Port $protocolNumbers[$proto]
}

$changed = $false
$outputs = New-Object System.Collections.ArrayList
if ($Ensure -eq 'Present') {
    $missing = $false
    foreach ($type in @(0, 1)) {
        $opening = $openings[$type]
        if ($null -eq $opening) { $missing = $true; continue }
        if ([string]$opening.Name -ne $Name -and -not [bool]$opening.Enabled) {
            throw ("{0}/{1} has a disabled port opening '{2}' in the {3} profile that dsrprep did not make; enable or remove it first" -f $Port, $proto, $opening.Name, $profileNames[$type])
        }
        if (-not [bool]$opening.Enabled) { $missing = $true }
    }
    $foreign = @(@(0, 1) | Where-Object { $null -ne $openings[$_] -and [string]$openings[$_].Name -ne $Name })
    if ($missing -and $foreign.Count -gt 0) {
        throw ("{0}/{1} is opened by '{2}' in only one profile; dsrprep will not overwrite another port opening" -f $Port, $proto, $openings[$foreign[0]].Name)
    }
    if ($missing) {
        $added = Invoke-NativeCommand 'netsh.exe' @(
            'firewall', 'add', 'portopening', "protocol=$proto", "port=$Port", "name=$Name",
            'mode=ENABLE', 'scope=ALL', 'profile=ALL'
        )
        [void]$outputs.Add($added.output)
        $changed = $true
    }
} else {
    # Removed per profile, and only where the opening carries this name.
    $ours = @(@(0, 1) | Where-Object { $null -ne $openings[$_] -and [string]$openings[$_].Name -eq $Name })
    foreach ($type in $ours) {
        $deleted = Invoke-NativeCommand 'netsh.exe' @(
            'firewall', 'delete', 'portopening', "protocol=$proto", "port=$Port", ('profile=' + $profileNames[$type])
        )
        [void]$outputs.Add($deleted.output)
        $changed = $true
    }
}

$output = $null
if ($outputs.Count -gt 0) { $output = ($outputs -join '') }
@{
    changed = $changed
    name = $Name
    output = $output
}
