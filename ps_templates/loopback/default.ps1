# dsrprep-step: loopback
# Finds or creates the Microsoft loopback adapter (*msloop, netloop.inf) that carries the VIPs, and
# removes it again on rollback, but only when dsrprep created it (recorded in the marker).
param(
    [string]$Ensure,
    [string]$PnpDeviceId,
    [string[]]$Vips,
    [string]$DevconPath
)
$ErrorActionPreference = 'Stop'

# dsrprep-include: native
# dsrprep-include: ip
# dsrprep-include: marker

$HardwareId = '*msloop'

# SetupAPI through P/Invoke, compiled only when a device has to be created or removed. Written in
# C# 2.0: WMF 2.0 needs only .NET 2.0 SP1, whose compiler knows no later language version (C# 3.0
# would need .NET 3.5). Every null stays inside C#: PowerShell 2.0 turns a $null string into "".
$SetupApiSource = @'
using System;
using Microsoft.Win32;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace Dsrprep
{
    public class DeviceResult
    {
        public string InstanceId;
        public bool RebootRequired;
    }

    public static class LoopbackDevice
    {
        const int DIF_INSTALLDEVICE = 0x02;
        const int DIF_REMOVE = 0x05;
        const int DIF_SELECTBESTCOMPATDRV = 0x17;
        const int DIF_REGISTERDEVICE = 0x19;
        const int DIF_INSTALLINTERFACES = 0x20;
        const int DIF_REGISTER_COINSTALLERS = 0x22;
        const int DICD_GENERATE_ID = 0x01;
        const int SPDRP_HARDWAREID = 0x01;
        const int SPDIT_COMPATDRIVER = 0x02;
        const int DI_NEEDRESTART = 0x00000080;
        const int DI_NEEDREBOOT = 0x00000100;
        const int DI_ENUMSINGLEINF = 0x00010000;
        const int DI_QUIETINSTALL = 0x00800000;
        const int DI_FLAGSEX_ALLOWEXCLUDEDDRVS = 0x00000800;
        const int MAX_PATH = 260;
        const int MAX_CLASS_NAME_LEN = 32;
        const int MAX_DEVICE_ID_LEN = 200;
        const int ERROR_NO_MORE_ITEMS = 259;
        static readonly IntPtr InvalidHandle = new IntPtr(-1);
        static readonly Guid NetClass = new Guid("4D36E972-E325-11CE-BFC1-08002BE10318");

        [StructLayout(LayoutKind.Sequential)]
        struct SP_DEVINFO_DATA
        {
            public int cbSize;
            public Guid ClassGuid;
            public int DevInst;
            public IntPtr Reserved;
        }

        // SP_DEVINSTALL_PARAMS_W: setupapi.h packs it to 1 byte on 32-bit Windows and to 8 on 64-bit,
        // which for these fields is the natural layout either way.
        [StructLayout(LayoutKind.Sequential, CharSet = CharSet.Unicode)]
        struct SP_DEVINSTALL_PARAMS
        {
            public int cbSize;
            public int Flags;
            public int FlagsEx;
            public IntPtr hwndParent;
            public IntPtr InstallMsgHandler;
            public IntPtr InstallMsgHandlerContext;
            public IntPtr FileQueue;
            public IntPtr ClassInstallReserved;
            public int Reserved;
            [MarshalAs(UnmanagedType.ByValTStr, SizeConst = MAX_PATH)]
            public string DriverPath;
        }

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiGetINFClassW(string InfName, out Guid ClassGuid, StringBuilder ClassName, int ClassNameSize, out int RequiredSize);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern IntPtr SetupDiCreateDeviceInfoList(ref Guid ClassGuid, IntPtr hwndParent);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiCreateDeviceInfoW(IntPtr DeviceInfoSet, string DeviceName, ref Guid ClassGuid, string DeviceDescription, IntPtr hwndParent, int CreationFlags, ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiSetDeviceRegistryPropertyW(IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData, int Property, byte[] PropertyBuffer, int PropertyBufferSize);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiCallClassInstaller(int InstallFunction, IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiGetDeviceInstanceIdW(IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData, StringBuilder DeviceInstanceId, int DeviceInstanceIdSize, out int RequiredSize);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
        static extern IntPtr SetupDiGetClassDevsW(ref Guid ClassGuid, string Enumerator, IntPtr hwndParent, int Flags);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiEnumDeviceInfo(IntPtr DeviceInfoSet, int MemberIndex, ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiDestroyDeviceInfoList(IntPtr DeviceInfoSet);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiGetDeviceInstallParamsW(IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData, ref SP_DEVINSTALL_PARAMS DeviceInstallParams);

        [DllImport("setupapi.dll", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiSetDeviceInstallParamsW(IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData, ref SP_DEVINSTALL_PARAMS DeviceInstallParams);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiSetSelectedDevice(IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData);

        [DllImport("setupapi.dll", SetLastError = true, ExactSpelling = true)]
        static extern bool SetupDiBuildDriverInfoList(IntPtr DeviceInfoSet, ref SP_DEVINFO_DATA DeviceInfoData, int DriverType);

        // Creates a root-enumerated device with this hardware id and installs the INF's driver on
        // that one device. Returns the new device instance id (ROOT\NET\nnnn).
        public static DeviceResult Create(string infPath, string hardwareId)
        {
            Guid classGuid;
            StringBuilder className = new StringBuilder(MAX_CLASS_NAME_LEN);
            int required;
            if (!SetupDiGetINFClassW(infPath, out classGuid, className, MAX_CLASS_NAME_LEN, out required))
                throw Failure("SetupDiGetINFClass(" + infPath + ")");
            IntPtr set = SetupDiCreateDeviceInfoList(ref classGuid, IntPtr.Zero);
            if (set == InvalidHandle)
                throw Failure("SetupDiCreateDeviceInfoList");
            try
            {
                SP_DEVINFO_DATA data = NewDeviceInfoData();
                if (!SetupDiCreateDeviceInfoW(set, className.ToString(), ref classGuid, null, IntPtr.Zero, DICD_GENERATE_ID, ref data))
                    throw Failure("SetupDiCreateDeviceInfo");
                // REG_MULTI_SZ: the id, its terminator, and the empty string that ends the list.
                byte[] hardwareIds = Encoding.Unicode.GetBytes(hardwareId + "\0\0");
                if (!SetupDiSetDeviceRegistryPropertyW(set, ref data, SPDRP_HARDWAREID, hardwareIds, hardwareIds.Length))
                    throw Failure("SetupDiSetDeviceRegistryProperty(SPDRP_HARDWAREID)");
                if (!SetupDiCallClassInstaller(DIF_REGISTERDEVICE, set, ref data))
                    throw Failure("SetupDiCallClassInstaller(DIF_REGISTERDEVICE)");
                string instanceId = null;
                try
                {
                    DeviceResult result = new DeviceResult();
                    result.InstanceId = InstanceId(set, ref data);
                    // Recorded before the driver install, which can block for minutes: should the
                    // session end meanwhile, the next run finds this device instead of adding another.
                    instanceId = result.InstanceId;
                    RecordMarker(instanceId, true);
                    result.RebootRequired = InstallDriver(set, ref data, infPath);
                    return result;
                }
                catch
                {
                    // A registered device without its driver would stay behind as an unknown device.
                    SetupDiCallClassInstaller(DIF_REMOVE, set, ref data);
                    if (instanceId != null)
                        RecordMarker(instanceId, false);
                    throw;
                }
            }
            finally
            {
                SetupDiDestroyDeviceInfoList(set);
            }
        }

        // Installs the INF's driver on this one device, through the class installer. Not
        // UpdateDriverForPlugAndPlayDevices: it (re)installs the driver of every device with the
        // hardware id, so every other *msloop adapter (another service's loopback) would go down
        // and up. Returns whether Windows asks for a restart.
        static bool InstallDriver(IntPtr set, ref SP_DEVINFO_DATA data, string infPath)
        {
            SP_DEVINSTALL_PARAMS parameters = InstallParams(set, ref data);
            // Only this INF (DriverPath names the file); quiet: a WinRM host has no desktop.
            parameters.Flags |= DI_ENUMSINGLEINF | DI_QUIETINSTALL;
            parameters.FlagsEx |= DI_FLAGSEX_ALLOWEXCLUDEDDRVS;
            parameters.DriverPath = infPath;
            if (!SetupDiSetDeviceInstallParamsW(set, ref data, ref parameters))
                throw Failure("SetupDiSetDeviceInstallParams");
            if (!SetupDiSetSelectedDevice(set, ref data))
                throw Failure("SetupDiSetSelectedDevice");
            if (!SetupDiBuildDriverInfoList(set, ref data, SPDIT_COMPATDRIVER))
                throw Failure("SetupDiBuildDriverInfoList(" + infPath + ")");
            if (!SetupDiCallClassInstaller(DIF_SELECTBESTCOMPATDRV, set, ref data))
                throw Failure("SetupDiCallClassInstaller(DIF_SELECTBESTCOMPATDRV)");
            // Co-installers and interfaces: the INF may have none, which is no failure.
            SetupDiCallClassInstaller(DIF_REGISTER_COINSTALLERS, set, ref data);
            SetupDiCallClassInstaller(DIF_INSTALLINTERFACES, set, ref data);
            if (!SetupDiCallClassInstaller(DIF_INSTALLDEVICE, set, ref data))
                throw Failure("SetupDiCallClassInstaller(DIF_INSTALLDEVICE)");
            return (InstallParams(set, ref data).Flags & (DI_NEEDREBOOT | DI_NEEDRESTART)) != 0;
        }

        static SP_DEVINSTALL_PARAMS InstallParams(IntPtr set, ref SP_DEVINFO_DATA data)
        {
            SP_DEVINSTALL_PARAMS parameters = new SP_DEVINSTALL_PARAMS();
            parameters.cbSize = Marshal.SizeOf(typeof(SP_DEVINSTALL_PARAMS));
            if (!SetupDiGetDeviceInstallParamsW(set, ref data, ref parameters))
                throw Failure("SetupDiGetDeviceInstallParams");
            return parameters;
        }

        // Removes the Net-class device with this instance id. False when there is none.
        public static bool Remove(string instanceId)
        {
            Guid netClass = NetClass;
            IntPtr set = SetupDiGetClassDevsW(ref netClass, null, IntPtr.Zero, 0);
            if (set == InvalidHandle)
                throw Failure("SetupDiGetClassDevs(Net)");
            try
            {
                for (int index = 0; ; index++)
                {
                    SP_DEVINFO_DATA data = NewDeviceInfoData();
                    if (!SetupDiEnumDeviceInfo(set, index, ref data))
                    {
                        int error = Marshal.GetLastWin32Error();
                        if (error == ERROR_NO_MORE_ITEMS)
                            return false;
                        throw Failure("SetupDiEnumDeviceInfo", error);
                    }
                    if (!string.Equals(InstanceId(set, ref data), instanceId, StringComparison.OrdinalIgnoreCase))
                        continue;
                    if (!SetupDiCallClassInstaller(DIF_REMOVE, set, ref data))
                        throw Failure("SetupDiCallClassInstaller(DIF_REMOVE) for " + instanceId);
                    return true;
                }
            }
            finally
            {
                SetupDiDestroyDeviceInfoList(set);
            }
        }

        static SP_DEVINFO_DATA NewDeviceInfoData()
        {
            SP_DEVINFO_DATA data = new SP_DEVINFO_DATA();
            data.cbSize = Marshal.SizeOf(typeof(SP_DEVINFO_DATA));
            return data;
        }

        // The same values the script writes under HKLM\SOFTWARE\dsrprep\DSR; cleared only if they
        // still name this device.
        static void RecordMarker(string instanceId, bool created)
        {
            RegistryKey key = Registry.LocalMachine.CreateSubKey(@"SOFTWARE\dsrprep\DSR");
            try
            {
                if (created)
                {
                    key.SetValue("LoopbackPnpId", instanceId, RegistryValueKind.String);
                    key.SetValue("LoopbackCreated", "1", RegistryValueKind.String);
                }
                else if (string.Equals(key.GetValue("LoopbackPnpId") as string, instanceId,
                                       StringComparison.OrdinalIgnoreCase))
                {
                    key.DeleteValue("LoopbackPnpId", false);
                    key.DeleteValue("LoopbackCreated", false);
                }
            }
            finally
            {
                key.Close();
            }
        }

        static string InstanceId(IntPtr set, ref SP_DEVINFO_DATA data)
        {
            StringBuilder id = new StringBuilder(MAX_DEVICE_ID_LEN);
            int required;
            if (!SetupDiGetDeviceInstanceIdW(set, ref data, id, id.Capacity, out required))
                throw Failure("SetupDiGetDeviceInstanceId");
            return id.ToString();
        }

        static Win32Exception Failure(string call)
        {
            return Failure(call, Marshal.GetLastWin32Error());
        }

        static Win32Exception Failure(string call, int error)
        {
            string text = new Win32Exception(error).Message;
            return new Win32Exception(error, string.Format("{0} failed: {1} (0x{2:X8})", call, text, error));
        }
    }
}
'@

function Set-MarkerValue([string]$Name, [string]$Value) {
    # CreateSubKey also creates the missing parent keys and opens the key for writing.
    $key = [Microsoft.Win32.Registry]::LocalMachine.CreateSubKey('SOFTWARE\dsrprep\DSR')
    try {
        $key.SetValue($Name, $Value, [Microsoft.Win32.RegistryValueKind]::String)
    } finally {
        $key.Close()
    }
}

function Remove-MarkerValue([string]$Name) {
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SOFTWARE\dsrprep\DSR', $true)
    if ($null -eq $key) { return }
    try {
        $key.DeleteValue($Name, $false)
    } finally {
        $key.Close()
    }
}

function Get-LoopbackAdapter {
    # ServiceName msloop (netloop.inf's driver) names the Microsoft loopback on every version,
    # whatever its description ("Microsoft Loopback Adapter", "... KM-TEST Loopback Adapter").
    return @(Get-WmiObject -Class Win32_NetworkAdapter -Filter "ServiceName='msloop'")
}

function Assert-NativeProcess {
    # SetupAPI refuses to install or remove devices from a WOW64 process (ERROR_IN_WOW64), and a
    # 32-bit devcon.exe is refused the same way.
    if ([IntPtr]::Size -eq 4 -and -not [string]::IsNullOrEmpty($env:PROCESSOR_ARCHITEW6432)) {
        throw 'ERROR_IN_WOW64: this is a 32-bit PowerShell on 64-bit Windows; devices can only be installed from the 64-bit endpoint'
    }
}

function Import-SetupApi {
    # The session may be reused: a second Add-Type of the same type would fail.
    if ($null -ne ('Dsrprep.LoopbackDevice' -as [type])) { return }
    Add-Type -TypeDefinition $SetupApiSource -Language CSharp
}

function Get-LoopbackDeviceId {
    # The msloop devices as Plug and Play lists them (Win32_PnPEntity): a new one is there as soon
    # as its driver is installed, before Win32_NetworkAdapter shows its adapter.
    return @(Get-WmiObject -Class Win32_PnPEntity -Filter "Service='msloop'" | ForEach-Object { [string]$_.DeviceID })
}

function Find-NewLoopbackDevice([string[]]$Before) {
    # devcon does not print the instance id it created: the new msloop device is the one Plug and
    # Play lists now and did not before. It goes into the marker at once, before the wait for WMI,
    # so that a run whose wait runs out leaves a device the next run finds (and rollback removes).
    $deadline = (Get-Date).AddSeconds(30)
    while ($true) {
        $fresh = @(Get-LoopbackDeviceId | Where-Object { $Before -notcontains $_ })
        if ($fresh.Count -gt 1) { throw ('Several new loopback devices appeared at once: {0}' -f ($fresh -join ', ')) }
        if ($fresh.Count -eq 1) {
            Set-MarkerValue 'LoopbackPnpId' $fresh[0]
            Set-MarkerValue 'LoopbackCreated' '1'
            return $fresh[0]
        }
        if ((Get-Date) -gt $deadline) { return $null }
        Start-Sleep -Seconds 1
    }
}

function Wait-LoopbackAdapter([string[]]$Before, [string]$InstanceId) {
    # The driver install returns before WMI lists the adapter: poll for up to 30 seconds for an
    # msloop adapter that was not there before (the one SetupAPI named, when it named one).
    $deadline = (Get-Date).AddSeconds(30)
    while ($true) {
        $fresh = @(Get-LoopbackAdapter | Where-Object { $Before -notcontains [string]$_.PNPDeviceID })
        if (-not [string]::IsNullOrEmpty($InstanceId)) {
            $named = @($fresh | Where-Object { [string]$_.PNPDeviceID -eq $InstanceId })
            if ($named.Count -gt 0) { return $named[0] }
        } elseif ($fresh.Count -eq 1) {
            return $fresh[0]
        } elseif ($fresh.Count -gt 1) {
            throw ('Several new loopback adapters appeared at once: {0}' -f ((@($fresh | ForEach-Object { [string]$_.PNPDeviceID })) -join ', '))
        }
        if ((Get-Date) -gt $deadline) { return $null }
        Start-Sleep -Seconds 1
    }
}

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
if (-not [string]::IsNullOrEmpty($DevconPath) -and -not (Test-Path -LiteralPath $DevconPath -PathType Leaf)) {
    throw ("DevconPath '{0}' does not exist" -f $DevconPath)
}

$markerId = Get-MarkerValue 'LoopbackPnpId'
$markerCreated = Get-MarkerValue 'LoopbackCreated'
$changed = $false
$created = $false
$rebootRequired = $false
$output = $null

if ($Ensure -eq 'Present') {
    $loopbacks = @(Get-LoopbackAdapter)
    $found = $null
    foreach ($wantedId in @($PnpDeviceId, $markerId)) {
        if ($null -ne $found -or [string]::IsNullOrEmpty($wantedId)) { continue }
        $found = @($loopbacks | Where-Object { [string]$_.PNPDeviceID -eq $wantedId })[0]
    }
    if ($null -eq $found) {
        # A loopback already carrying a VIP (set up by hand, or by an earlier tool) is adopted
        # rather than duplicated: two adapters holding the same address is a conflict.
        $wanted = @(@($Vips) | ForEach-Object { ConvertTo-CanonicalIp $_ } | Where-Object { $null -ne $_ })
        foreach ($loopback in ($loopbacks | Sort-Object -Property Index)) {
            if ($null -ne $found) { break }
            $config = Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter ('Index={0}' -f [int]$loopback.Index)
            foreach ($address in @($config.IPAddress)) {
                if ($wanted -contains (ConvertTo-CanonicalIp ([string]$address))) { $found = $loopback; break }
            }
        }
    }

    if ($null -eq $found -and $markerCreated -eq '1' -and -not [string]::IsNullOrEmpty($markerId) -and
        (@(Get-LoopbackDeviceId) -contains $markerId)) {
        # An earlier run created this device and its wait for WMI ran out: wait for its adapter
        # again rather than create another.
        $found = Wait-LoopbackAdapter @() $markerId
        if ($null -eq $found) {
            throw ('{0}, created by an earlier run, is still not listed by Win32_NetworkAdapter after 30 seconds' -f $markerId)
        }
    }

    if ($null -eq $found) {
        Assert-NativeProcess
        $inf = Join-Path $env:windir 'inf\netloop.inf'
        if (-not (Test-Path -LiteralPath $inf -PathType Leaf)) { throw ('{0} is missing' -f $inf) }
        $before = @($loopbacks | ForEach-Object { [string]$_.PNPDeviceID })
        $newId = $null
        if (-not [string]::IsNullOrEmpty($DevconPath)) {
            $devicesBefore = @(Get-LoopbackDeviceId)
            # devcon: 0 done, 1 done but a reboot is needed. Like UpdateDriverForPlugAndPlayDevices,
            # which it calls, it also reinstalls the driver of the other msloop devices.
            $installed = Invoke-NativeCommand $DevconPath @('install', $inf, $HardwareId) @(0, 1)
            $rebootRequired = ($installed.code -eq 1)
            $output = $installed.output
            $newId = Find-NewLoopbackDevice $devicesBefore
        } else {
            Import-SetupApi
            $device = [Dsrprep.LoopbackDevice]::Create($inf, $HardwareId)
            $newId = $device.InstanceId
            $rebootRequired = $device.RebootRequired
            # Create() recorded the device in the marker before installing its driver; again here
            # in the script's own way, so both paths leave the same values.
            Set-MarkerValue 'LoopbackPnpId' $newId
            Set-MarkerValue 'LoopbackCreated' '1'
        }
        $found = Wait-LoopbackAdapter $before $newId
        if ($null -eq $found) {
            throw ('A loopback device was installed ({0}) but no new msloop adapter appeared in WMI within 30 seconds' -f $newId)
        }
        $created = $true
    }

    $id = [string]$found.PNPDeviceID
    # A loopback this tool created stays marked as created when it is found again, so that
    # rollback still removes it; any other loopback is only borrowed.
    $createdValue = '0'
    if ($created -or ($markerId -eq $id -and $markerCreated -eq '1')) { $createdValue = '1' }
    if ($markerId -cne $id) { Set-MarkerValue 'LoopbackPnpId' $id; $changed = $true }
    if ($markerCreated -cne $createdValue) { Set-MarkerValue 'LoopbackCreated' $createdValue; $changed = $true }
    if ($created) { $changed = $true }

    @{
        changed = $changed
        pnp_device_id = $id
        created = $created
        reboot_required = $rebootRequired
        output = $output
    }
} else {
    $id = $PnpDeviceId
    if ([string]::IsNullOrEmpty($id)) { $id = $markerId }
    if ([string]::IsNullOrEmpty($id)) {
        # Nothing recorded and nothing named: there is no loopback of ours to remove.
        @{ changed = $false; pnp_device_id = ''; created = $false; reboot_required = $false; output = $null }
    } else {
        $ours = ($markerId -eq $id -and $markerCreated -eq '1')
        $present = @(Get-LoopbackAdapter | Where-Object { [string]$_.PNPDeviceID -eq $id }).Count -gt 0
        if ($present -and -not $ours) {
            throw ("Refusing to remove {0}: HKLM\SOFTWARE\dsrprep\DSR does not record that dsrprep created it (LoopbackCreated=1 for that device)" -f $id)
        }
        if ($present) {
            Assert-NativeProcess
            if (-not [string]::IsNullOrEmpty($DevconPath)) {
                $removed = Invoke-NativeCommand $DevconPath @('remove', ('@' + $id)) @(0, 1)
                $rebootRequired = ($removed.code -eq 1)
                $output = $removed.output
            } else {
                Import-SetupApi
                [void][Dsrprep.LoopbackDevice]::Remove($id)
            }
            $deadline = (Get-Date).AddSeconds(30)
            while (@(Get-LoopbackAdapter | Where-Object { [string]$_.PNPDeviceID -eq $id }).Count -gt 0) {
                if ((Get-Date) -gt $deadline) { throw ('{0} was removed but WMI still lists it after 30 seconds' -f $id) }
                Start-Sleep -Seconds 1
            }
            $changed = $true
        }
        if ($markerId -eq $id) {
            if ($null -ne $markerId -or $null -ne $markerCreated) { $changed = $true }
            Remove-MarkerValue 'LoopbackPnpId'
            Remove-MarkerValue 'LoopbackCreated'
        }
        @{
            changed = $changed
            pnp_device_id = $id
            created = $false
            reboot_required = $rebootRequired
            output = $output
        }
    }
}
