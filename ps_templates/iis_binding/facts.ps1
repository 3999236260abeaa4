# dsrprep-facts: iis_binding
# IIS: its version from the registry, its sites from appcmd (IIS 7+) or the metabase (IIS 6).
$iisVersion = $null
try {
    $inetStp = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\InetStp' -ErrorAction SilentlyContinue
    $major = Get-PropertyOrNull $inetStp 'MajorVersion'
    $minor = Get-PropertyOrNull $inetStp 'MinorVersion'
    if ($null -ne $major) {
        if ($null -eq $minor) { $minor = 0 }
        $iisVersion = ('{0}.{1}' -f [int]$major, [int]$minor)
    }
} catch {
    $iisVersion = $null
}

$appcmdText = $null
$metabaseSites = $null
if ($null -ne $iisVersion -and [int]($iisVersion.Split('.')[0]) -ge 7) {
    # appcmd exists on every IIS 7+, unlike the WebAdministration module (not on IIS 7.0).
    $appcmd = Join-Path $env:windir 'system32\inetsrv\appcmd.exe'
    if (Test-Path -LiteralPath $appcmd) { $appcmdText = Get-NativeText $appcmd @('list', 'site') }
} elseif ($null -ne $iisVersion) {
    # IIS 6: the metabase through WMI. The provider may not be installed; then the list is
    # unknown (null), which is not the same as "no sites".
    try {
        $siteList = New-Object System.Collections.ArrayList
        $settings = @(Get-WmiObject -Namespace 'root\MicrosoftIISv2' -Class IIsWebServerSetting -Authentication 6)
        foreach ($setting in $settings) {
            $bindingList = New-Object System.Collections.ArrayList
            foreach ($binding in @(Get-PropertyOrNull $setting 'ServerBindings')) {
                if ($null -eq $binding) { continue }
                [void]$bindingList.Add(('{0}:{1}:{2}' -f $binding.IP, $binding.Port, $binding.Hostname))
            }
            [void]$siteList.Add(@{
                id = [string]$setting.Name
                name = [string]$setting.ServerComment
                bindings = [object[]]$bindingList.ToArray()
            })
        }
        $metabaseSites = [object[]]$siteList.ToArray()
    } catch {
        $metabaseSites = $null
    }
}
$facts['iis'] = @{
    version = $iisVersion
    appcmd_sites_text = $appcmdText
    metabase_sites = $metabaseSites
}
