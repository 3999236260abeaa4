# dsrprep-step: iis_binding
# IIS 7 and later (appcmd): adds or removes one binding of one site, then restarts that site
# when asked and when it was running.
param(
    [string]$Ensure,
    [string]$Site,
    [string]$Protocol,
    [string]$Ip,
    [int]$Port,
    [string]$HostHeader,
    [bool]$Restart
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
if ([string]::IsNullOrEmpty($Site)) { throw 'Site is empty' }
if ([string]::IsNullOrEmpty($Protocol)) { throw 'Protocol is empty' }
if ($Port -lt 1 -or $Port -gt 65535) { throw ('Port {0} is out of range' -f $Port) }

# bindingInformation is "IP:port:host"; "*" is All Unassigned and an IPv6 address is bracketed.
$ipPart = '*'
if (-not [string]::IsNullOrEmpty($Ip) -and $Ip -ne '*') {
    $parsed = $null
    if (-not [System.Net.IPAddress]::TryParse($Ip.Trim('[', ']'), [ref]$parsed)) { throw ("Ip '{0}' is not an IP address" -f $Ip) }
    $ipPart = $parsed.ToString()
    if ($ipPart.Contains(':')) { $ipPart = '[' + $ipPart + ']' }
}
$hostPart = ''
if ($null -ne $HostHeader) { $hostPart = $HostHeader.Trim() }
$protocolName = $Protocol.Trim().ToLower()
$information = ('{0}:{1}:{2}' -f $ipPart, $Port, $hostPart)

$appcmd = Join-Path $env:windir 'system32\inetsrv\appcmd.exe'
if (-not (Test-Path -LiteralPath $appcmd -PathType Leaf)) { throw ('{0} is missing: IIS 7 or later is not installed' -f $appcmd) }

# The configuration as XML: attribute names and values are not translated, and a host header
# may hold characters that the one-line listing does not quote. An unknown site makes appcmd fail.
$listing = Invoke-NativeCommand $appcmd @('list', 'site', "/site.name:$Site", '/config', '/xml')
# Nothing may precede the XML declaration.
$document = [xml]($listing.output.Trim())
$siteNodes = @($document.SelectNodes('/appcmd/SITE'))
if ($siteNodes.Count -ne 1) { throw ("appcmd lists {0} sites named '{1}'" -f $siteNodes.Count, $Site) }
$siteNode = $siteNodes[0]
$state = $siteNode.GetAttribute('state')
$bound = $false
foreach ($binding in @($siteNode.SelectNodes('site/bindings/binding'))) {
    if ($binding.GetAttribute('protocol') -eq $protocolName -and $binding.GetAttribute('bindingInformation') -eq $information) {
        $bound = $true
    }
}

$changed = $false
$outputs = New-Object System.Collections.ArrayList
$entry = ("[protocol='{0}',bindingInformation='{1}']" -f $protocolName, $information)
if ($Ensure -eq 'Present' -and -not $bound) {
    [void]$outputs.Add((Invoke-NativeCommand $appcmd @('set', 'site', "/site.name:$Site", ('/+bindings.' + $entry))).output)
    $changed = $true
} elseif ($Ensure -eq 'Absent' -and $bound) {
    [void]$outputs.Add((Invoke-NativeCommand $appcmd @('set', 'site', "/site.name:$Site", ('/-bindings.' + $entry))).output)
    $changed = $true
}

# A stopped site stays stopped: restarting is for picking up the new binding, not for starting.
$restarted = $false
if ($changed -and $Restart -and $state -eq 'Started') {
    [void]$outputs.Add((Invoke-NativeCommand $appcmd @('stop', 'site', "/site.name:$Site")).output)
    try {
        [void]$outputs.Add((Invoke-NativeCommand $appcmd @('start', 'site', "/site.name:$Site")).output)
    } catch {
        # The site served traffic a moment ago: take the binding change back and start it as it was
        # (a binding already used by another site makes the start fail), then report the failure.
        $failure = $_
        $undo = '/-bindings.'
        if ($Ensure -eq 'Absent') { $undo = '/+bindings.' }
        try { [void](Invoke-NativeCommand $appcmd @('set', 'site', "/site.name:$Site", ($undo + $entry))) } catch { ; }
        try { [void](Invoke-NativeCommand $appcmd @('start', 'site', "/site.name:$Site")) } catch { ; }
        throw $failure
    }
    $restarted = $true
}

$output = $null
if ($outputs.Count -gt 0) { $output = ($outputs -join '') }
@{
    changed = $changed
    site = $Site
    binding = ('{0}/{1}' -f $protocolName, $information)
    restarted = $restarted
    output = $output
}
