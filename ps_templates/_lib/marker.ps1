# dsrprep-lib: marker
# Reading dsrprep's marker on the host, HKLM\SOFTWARE\dsrprep\DSR.
function Get-MarkerValue([string]$Name) {
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SOFTWARE\dsrprep\DSR')
    if ($null -eq $key) { return $null }
    try {
        $value = $key.GetValue($Name)
        if ($null -eq $value) { return $null }
        return [string]$value
    } finally {
        $key.Close()
    }
}
