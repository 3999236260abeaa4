# dsrprep-lib: wmi
# Return codes of WMI methods.
function Assert-WmiResult([string]$Method, $Result) {
    # 0 done, 1 done once the machine restarts; anything else is a failure code.
    $code = [int]$Result.ReturnValue
    if ($code -ne 0 -and $code -ne 1) { throw ('{0} returned {1}' -f $Method, $code) }
    return ($code -eq 1)
}
