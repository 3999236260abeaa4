# dsrprep-lib: lists
# Bound array parameters, cleaned of empty entries.
function Get-CleanList($Items) {
    # A bound [string[]] may be $null, or hold $null or "" entries: keep the real ones, trimmed.
    $list = New-Object System.Collections.ArrayList
    foreach ($item in @($Items)) {
        if (-not [string]::IsNullOrEmpty([string]$item)) { [void]$list.Add(([string]$item).Trim()) }
    }
    return ,([object[]]$list.ToArray())
}
