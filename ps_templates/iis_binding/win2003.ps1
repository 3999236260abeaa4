# dsrprep-step: iis_binding
# IIS 6 (Windows Server 2003): adds or removes one ServerBindings entry of one site in the metabase
# through WMI (root\MicrosoftIISv2), then restarts that site when asked and when it was running.
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

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
if ([string]::IsNullOrEmpty($Site)) { throw 'Site is empty' }
# ServerBindings are the http bindings; https ones live in SecureBindings, without a host header.
if ([string]$Protocol -ne 'http') { throw ("IIS 6 ServerBindings hold http bindings only, not '{0}'" -f $Protocol) }
if ($Port -lt 1 -or $Port -gt 65535) { throw ('Port {0} is out of range' -f $Port) }

# The metabase writes All Unassigned as an empty IP.
$ipText = ''
if (-not [string]::IsNullOrEmpty($Ip) -and $Ip -ne '*') {
    $parsed = $null
    if (-not [System.Net.IPAddress]::TryParse($Ip, [ref]$parsed)) { throw ("Ip '{0}' is not an IP address" -f $Ip) }
    $ipText = $parsed.ToString()
}
$hostText = ''
if ($null -ne $HostHeader) { $hostText = $HostHeader.Trim() }

# The IIS 6 provider wants an encrypted connection (PacketPrivacy).
$settings = @(Get-WmiObject -Namespace 'root\MicrosoftIISv2' -Class IIsWebServerSetting -Authentication 6 |
    Where-Object { [string]$_.ServerComment -eq $Site })
if ($settings.Count -ne 1) { throw ("{0} IIsWebServerSetting objects have ServerComment '{1}'" -f $settings.Count, $Site) }
$setting = $settings[0]

$kept = New-Object System.Collections.ArrayList
$bound = $false
foreach ($binding in @($setting.ServerBindings)) {
    if ($null -eq $binding) { continue }
    $same = ([string]$binding.IP -eq $ipText) -and ([string]$binding.Port -eq [string]$Port) -and ([string]$binding.Hostname -eq $hostText)
    if ($same) { $bound = $true } else { [void]$kept.Add($binding) }
}

$changed = $false
if ($Ensure -eq 'Present' -and -not $bound) {
    # Through the setting's own connection: the IIS 6 provider wants packet privacy, which a plain
    # [wmiclass] connection does not ask for.
    $bindingPath = New-Object System.Management.ManagementPath('ServerBinding')
    $new = (New-Object System.Management.ManagementClass($setting.psbase.Scope, $bindingPath, $null)).CreateInstance()
    $new.IP = $ipText
    $new.Port = [string]$Port
    $new.Hostname = $hostText
    [void]$kept.Add($new)
    $changed = $true
} elseif ($Ensure -eq 'Absent' -and $bound) {
    # A site without any binding cannot start.
    if ($kept.Count -eq 0) { throw ("Removing {0}:{1}:{2} would leave site '{3}' without bindings" -f $ipText, $Port, $hostText, $Site) }
    $changed = $true
}
if ($changed) {
    # The list is written whole: an embedded-object array must be typed as such for Put().
    $setting.ServerBindings = [System.Management.ManagementBaseObject[]]$kept.ToArray()
    [void]$setting.Put()
}

# ServerState 2 is "started": a stopped site stays stopped.
$restarted = $false
if ($changed -and $Restart) {
    $server = Get-WmiObject -Namespace 'root\MicrosoftIISv2' -Class IIsWebServer -Authentication 6 -Filter ("Name='{0}'" -f $setting.Name)
    if ($null -ne $server -and [int]$server.ServerState -eq 2) {
        [void]$server.Stop()
        [void]$server.Start()
        $restarted = $true
    }
}

@{
    changed = $changed
    site = $Site
    binding = ('{0}:{1}:{2}' -f $ipText, $Port, $hostText)
    restarted = $restarted
    output = $null
}
