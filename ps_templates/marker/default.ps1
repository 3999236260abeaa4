# dsrprep-step: marker
# dsrprep's own record on the host, HKLM\SOFTWARE\dsrprep\DSR: what rollback needs to know (which
# loopback it created, what it changed). Present writes the given values; Absent deletes the key.
param(
    [string]$Ensure,
    [hashtable]$Values
)
$ErrorActionPreference = 'Stop'

$KeyPath = 'SOFTWARE\dsrprep\DSR'
$ParentPath = 'SOFTWARE\dsrprep'

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }

# Through .NET rather than the registry provider: CreateSubKey makes the missing parents, and the
# values are always REG_SZ, which is what the facts script reads back.
$machine = [Microsoft.Win32.Registry]::LocalMachine
$changed = $false
$written = New-Object System.Collections.ArrayList

if ($Ensure -eq 'Present') {
    $key = $machine.CreateSubKey($KeyPath)
    try {
        if ($null -ne $Values) {
            foreach ($name in @($Values.Keys)) {
                $valueName = [string]$name
                if ($valueName -eq '') { throw 'A marker value name is empty' }
                $value = $Values[$name]
                $current = $key.GetValue($valueName)
                if ($null -eq $value) {
                    # $null removes that one value.
                    if ($null -ne $current) {
                        $key.DeleteValue($valueName, $false)
                        $changed = $true
                    }
                    continue
                }
                $text = [string]$value
                if ($null -eq $current -or [string]$current -cne $text -or $key.GetValueKind($valueName) -ne [Microsoft.Win32.RegistryValueKind]::String) {
                    $key.SetValue($valueName, $text, [Microsoft.Win32.RegistryValueKind]::String)
                    $changed = $true
                }
                [void]$written.Add($valueName)
            }
        }
    } finally {
        $key.Close()
    }
} else {
    $existing = $machine.OpenSubKey($KeyPath)
    if ($null -ne $existing) {
        $existing.Close()
        $machine.DeleteSubKeyTree($KeyPath)
        $changed = $true
    }
    # The parent key is dsrprep's too; it goes once nothing else is left in it.
    $parent = $machine.OpenSubKey($ParentPath)
    if ($null -ne $parent) {
        $empty = ($parent.SubKeyCount -eq 0 -and $parent.ValueCount -eq 0)
        $parent.Close()
        if ($empty) {
            $machine.DeleteSubKey($ParentPath, $false)
            $changed = $true
        }
    }
}

@{
    changed = $changed
    values = [object[]]$written.ToArray()
}
