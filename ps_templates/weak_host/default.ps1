# dsrprep-step: weak_host
# 2008+: weak host receive/send on one interface and IP version (Windows Server 2003 is weak host
# by design and has no such setting). InterfaceIndex 0 means the loopback recorded in the marker.
param(
    [int]$InterfaceIndex,
    [int]$IpVersion,
    [bool]$Receive,
    [bool]$Send
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: marker
# dsrprep-include: adapter

function Get-WeakHost([string]$Text) {
    # `show interface <idx>` prints "label : value" lines. English labels first; on other
    # languages (labels translated, values not) the run of on/off values that starts at
    # "Forwarding" holds the weak host lines 8th (sends) and 9th (receives). $null: not recognised.
    $fields = New-Object System.Collections.ArrayList
    foreach ($line in @($Text -split "`r?`n")) {
        if ($line -match '^\s*([^:]*[^:\s])\s*:\s?(.*?)\s*$') {
            [void]$fields.Add(@{ label = $matches[1]; value = $matches[2].ToLower() })
        }
    }
    $send = @($fields | Where-Object { $_.label -eq 'Weak Host Sends' })
    $receive = @($fields | Where-Object { $_.label -eq 'Weak Host Receives' })
    if ($send.Count -eq 1 -and $receive.Count -eq 1) {
        return @{ send = $send[0].value; receive = $receive[0].value }
    }
    for ($i = 0; $i -lt $fields.Count; $i++) {
        if ($fields[$i].value -ne 'enabled' -and $fields[$i].value -ne 'disabled') { continue }
        if ($i + 8 -ge $fields.Count) { return $null }
        return @{ send = $fields[$i + 7].value; receive = $fields[$i + 8].value }
    }
    return $null
}

if ($IpVersion -ne 4 -and $IpVersion -ne 6) { throw ('IpVersion must be 4 or 6, not {0}' -f $IpVersion) }
$context = 'ipv' + $IpVersion

$index = $InterfaceIndex
if ($index -eq 0) {
    $resolved = Resolve-Adapter ''
    if ($null -eq $resolved.adapter.InterfaceIndex) { throw 'The loopback has no InterfaceIndex: weak host settings need Windows Server 2008 or later' }
    $index = [int]$resolved.adapter.InterfaceIndex
}

$wantedReceive = 'disabled'
if ($Receive) { $wantedReceive = 'enabled' }
$wantedSend = 'disabled'
if ($Send) { $wantedSend = 'enabled' }

$shown = Invoke-NativeCommand 'netsh.exe' @('interface', $context, 'show', 'interface', [string]$index)
$current = Get-WeakHost $shown.output

$changed = $false
$output = $null
# Setting both is harmless when only one differs, and when the output could not be read the
# setting is simply applied (it is idempotent).
if ($null -eq $current -or $current.receive -ne $wantedReceive -or $current.send -ne $wantedSend) {
    $result = Invoke-NativeCommand 'netsh.exe' @(
        'interface', $context, 'set', 'interface', [string]$index,
        "weakhostreceive=$wantedReceive", "weakhostsend=$wantedSend"
    )
    $output = $result.output
    $changed = $true
}

@{
    changed = $changed
    interface_index = $index
    receive = $Receive
    send = $Send
    output = $output
}
