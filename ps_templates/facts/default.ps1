# dsrprep-step: facts
# Gathers in one object what the DSR plan needs: here what many steps read (OS, session, adapters
# and their IP configuration, firewall state, marker) and the machine's identity; the facts of
# single steps come from their fragments (ps_templates/<step>/facts.ps1), expanded at the line
# `# dsrprep-facts-fragments` when the template is loaded.
param()
$ErrorActionPreference = 'Stop'

# The result is one hashtable in the shape of docs/facts.md. PowerShell 2.0 only: WMI, netsh,
# the registry provider, COM and .NET 2.0; no CIM, no Net* cmdlets, no ConvertTo-Json.

function Get-PropertyOrNull($Object, [string]$Name) {
    # WMI classes gained properties over the years (InterfaceIndex, OSArchitecture are not on
    # 2003); asking the property table avoids depending on strict-mode behaviour.
    if ($null -eq $Object) { return $null }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    return $property.Value
}

function ConvertTo-StringArray($Value) {
    # WMI gives $null for an empty list and a bare string for a one-element one, and PowerShell
    # unrolls arrays that leave a function: build the array here and return it wrapped so that
    # the caller always receives an object[] (possibly empty, never $null).
    $list = New-Object System.Collections.ArrayList
    if ($null -ne $Value) {
        foreach ($item in @($Value)) {
            if ($null -ne $item) { [void]$list.Add([string]$item) }
        }
    }
    return ,([object[]]$list.ToArray())
}

function ConvertTo-NullableInt($Value) {
    if ($null -eq $Value) { return $null }
    return [int]$Value
}

function Get-NativeText([string]$FilePath, [string[]]$Arguments) {
    # netsh, appcmd and httpcfg report their own failures as text, which the parsers recognise.
    # Their stderr must not become a terminating error under $ErrorActionPreference = 'Stop'.
    $ErrorActionPreference = 'Continue'
    $text = (& $FilePath $Arguments 2>$null | Out-String)
    return [string]$text
}

# --- OS and session ---------------------------------------------------------------------------

$os = Get-WmiObject -Class Win32_OperatingSystem
$osVersion = [string]$os.Version
# 5.2 is Windows Server 2003 / 2003 R2: no InterfaceIndex, no advfirewall, IIS 6, httpcfg.
$isLegacy = $osVersion.StartsWith('5.')

$architecture = Get-PropertyOrNull $os 'OSArchitecture'
if ($null -eq $architecture) {
    # 2003 has no OSArchitecture. A 32-bit process on 64-bit Windows sees PROCESSOR_ARCHITEW6432.
    $architecture = '32-bit'
    if ($env:PROCESSOR_ARCHITEW6432 -eq 'AMD64' -or $env:PROCESSOR_ARCHITECTURE -eq 'AMD64') {
        $architecture = '64-bit'
    }
}

$hotfixList = New-Object System.Collections.ArrayList
try {
    foreach ($qfe in @(Get-WmiObject -Class Win32_QuickFixEngineering)) {
        $id = Get-PropertyOrNull $qfe 'HotFixID'
        if ($null -ne $id -and ([string]$id).Length -gt 0) { [void]$hotfixList.Add(([string]$id).ToUpper()) }
    }
} catch {
    # An unreadable update list only hides optional hotfix checks (KB975808); keep going.
}
$hotfixes = [object[]]$hotfixList.ToArray()

$psVersion = '1.0'
if ($null -ne $PSVersionTable) { $psVersion = $PSVersionTable.PSVersion.ToString() }

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
$elevated = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)

# --- Machine identity -------------------------------------------------------------------------

# What tells this machine from another at the same address: the SMBIOS UUID and the OS
# installation's product id. Both are WMI classes of Windows Server 2003 and later; a rollback
# compares them with the ones recorded before the rollout before it changes anything.
$product = $null
foreach ($item in @(Get-WmiObject -Class Win32_ComputerSystemProduct)) { $product = $item; break }
$machineUuid = Get-PropertyOrNull $product 'UUID'
if ($null -ne $machineUuid) { $machineUuid = [string]$machineUuid }
$osSerial = Get-PropertyOrNull $os 'SerialNumber'
if ($null -ne $osSerial) { $osSerial = [string]$osSerial }

# --- Adapters -----------------------------------------------------------------------------------

$configsByIndex = @{}
foreach ($config in @(Get-WmiObject -Class Win32_NetworkAdapterConfiguration)) {
    $configsByIndex[[int]$config.Index] = $config
}

# Only adapters that are network connections (NetConnectionID) or loopbacks: WMI also lists
# miniports, tunnels and RAS devices that the plan must never touch.
$adapterList = New-Object System.Collections.ArrayList
foreach ($adapter in @(Get-WmiObject -Class Win32_NetworkAdapter)) {
    $connectionId = Get-PropertyOrNull $adapter 'NetConnectionID'
    $serviceName = [string](Get-PropertyOrNull $adapter 'ServiceName')
    if ($null -eq $connectionId -and $serviceName -ne 'msloop') { continue }

    $index = [int]$adapter.Index
    $config = $configsByIndex[$index]
    $interfaceIndex = $null
    if (-not $isLegacy) { $interfaceIndex = ConvertTo-NullableInt (Get-PropertyOrNull $adapter 'InterfaceIndex') }

    $ipAddresses = ConvertTo-StringArray (Get-PropertyOrNull $config 'IPAddress')
    $ipSubnets = ConvertTo-StringArray (Get-PropertyOrNull $config 'IPSubnet')
    $gateways = ConvertTo-StringArray (Get-PropertyOrNull $config 'DefaultIPGateway')
    $dnsServers = ConvertTo-StringArray (Get-PropertyOrNull $config 'DNSServerSearchOrder')

    $mac = Get-PropertyOrNull $adapter 'MACAddress'
    if ($null -ne $mac) { $mac = [string]$mac }

    [void]$adapterList.Add(@{
        index = $index
        interface_index = $interfaceIndex
        connection_id = $connectionId
        description = [string](Get-PropertyOrNull $adapter 'Description')
        service_name = $serviceName
        pnp_device_id = [string](Get-PropertyOrNull $adapter 'PNPDeviceID')
        mac = $mac
        ip_enabled = [bool](Get-PropertyOrNull $config 'IPEnabled')
        ip_addresses = $ipAddresses
        ip_subnets = $ipSubnets
        dhcp_enabled = [bool](Get-PropertyOrNull $config 'DHCPEnabled')
        gateways = $gateways
        dns_servers = $dnsServers
        metric = ConvertTo-NullableInt (Get-PropertyOrNull $config 'IPConnectionMetric')
        dns_registration = [bool](Get-PropertyOrNull $config 'FullDNSRegistrationEnabled')
        domain_dns_registration = [bool](Get-PropertyOrNull $config 'DomainDNSRegistrationEnabled')
        netbios = ConvertTo-NullableInt (Get-PropertyOrNull $config 'TcpipNetbiosOptions')
    })

}
$adapters = [object[]]$adapterList.ToArray()

# --- Firewall -----------------------------------------------------------------------------------

$ruleList = New-Object System.Collections.ArrayList
if ($isLegacy) {
    # 2003 SP1+ has only the netsh firewall context (per-profile and per-connection modes).
    $firewall = @{
        api = 'netsh-firewall'
        opmode_text = Get-NativeText 'netsh.exe' @('firewall', 'show', 'opmode')
        portopening_text = Get-NativeText 'netsh.exe' @('firewall', 'show', 'portopening')
        profiles = $null
        current_profiles = $null
        rules = [object[]]$ruleList.ToArray()
        winrm_public = $null
    }
} else {
  try {
    $policy = New-Object -ComObject HNetCfg.FwPolicy2
    # Is WinRM let in on the Public profile? On 2008 a new loopback's unidentified network moves
    # the whole machine to Public, and without such a rule the management session is shut out.
    $winrmPublic = $false
    # Only our own rules: the full rule table is hundreds of entries the plan does not need.
    foreach ($rule in $policy.Rules) {
        if ($rule.Enabled -and [int]$rule.Direction -eq 1 -and [int]$rule.Action -eq 1 -and ([int]$rule.Profiles -band 4)) {
            $rulePorts = @(([string]$rule.LocalPorts) -split ',')
            if ($rulePorts -contains '5985' -or $rulePorts -contains '5986' -or $rulePorts -contains '*') { $winrmPublic = $true }
        }
        if (-not ([string]$rule.Name).StartsWith('dsrprep')) { continue }
        [void]$ruleList.Add(@{
            name = [string]$rule.Name
            enabled = [bool]$rule.Enabled
            direction = [int]$rule.Direction
            action = [int]$rule.Action
            protocol = [int]$rule.Protocol
            local_addresses = [string]$rule.LocalAddresses
            local_ports = [string]$rule.LocalPorts
            profiles = [int]$rule.Profiles
        })
    }
    $firewall = @{
        api = 'advfirewall'
        opmode_text = $null
        portopening_text = $null
        profiles = @{
            domain = [bool]$policy.FirewallEnabled(1)
            private = [bool]$policy.FirewallEnabled(2)
            public = [bool]$policy.FirewallEnabled(4)
        }
        current_profiles = [int]$policy.CurrentProfileTypes
        rules = [object[]]$ruleList.ToArray()
        winrm_public = $winrmPublic
    }
  } catch {
    # The firewall API answers nothing while the Windows Firewall service (MpsSvc) is stopped: the
    # state is unknown, which the plan reports, rather than the whole facts step failing.
    $firewall = @{
        api = 'advfirewall'
        opmode_text = $null
        portopening_text = $null
        profiles = $null
        current_profiles = $null
        rules = @()
        winrm_public = $null
    }
  }
}

# --- Marker -------------------------------------------------------------------------------------

$marker = @{}
$markerPath = 'HKLM:\SOFTWARE\dsrprep\DSR'
if (Test-Path -LiteralPath $markerPath) {
    $markerKey = Get-Item -LiteralPath $markerPath
    foreach ($valueName in $markerKey.GetValueNames()) {
        if ($valueName -eq '') { continue }
        $marker[$valueName] = [string]$markerKey.GetValue($valueName)
    }
}

# --- Result -------------------------------------------------------------------------------------

$facts = @{
    schema = 1
    computer_name = [string]$env:COMPUTERNAME
    os = @{
        version = $osVersion
        caption = [string]$os.Caption
        service_pack = [int]$os.ServicePackMajorVersion
        architecture = [string]$architecture
        hotfixes = $hotfixes
    }
    powershell_version = $psVersion
    elevated = [bool]$elevated
    process_64bit = ([IntPtr]::Size -eq 8)
    adapters = $adapters
    firewall = $firewall
    marker = $marker
    machine = @{
        uuid = $machineUuid
        os_serial = $osSerial
    }
}

# --- Facts of single steps: ps_templates/<step>/facts.ps1, each adding its keys to $facts -------

# dsrprep-facts-fragments

$facts
