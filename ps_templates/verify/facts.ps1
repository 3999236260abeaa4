# dsrprep-facts: verify
# Tcpip (2008+) / TCP/IP (NT-era name) 4198 and 4199 report a duplicate address. EventID is the
# low 16 bits; InstanceId carries severity bits on classic sources and would not match.
$eventList = New-Object System.Collections.ArrayList
$since = (Get-Date).AddDays(-7)
# Newest first, stopping at the first entry older than the window: Get-EventLog -After would walk
# the whole System log. An entry overwritten while being read (the log wraps) is skipped, not fatal.
$systemLog = New-Object System.Diagnostics.EventLog('System')
try {
    $logEntries = $systemLog.Entries
    for ($i = $logEntries.Count - 1; $i -ge 0; $i--) {
        $entry = $null
        try { $entry = $logEntries[$i] } catch { continue }
        if ($entry.TimeGenerated -lt $since) { break }
        if (($entry.Source -eq 'Tcpip' -or $entry.Source -eq 'TCP/IP') -and ($entry.EventID -eq 4198 -or $entry.EventID -eq 4199)) {
            [void]$eventList.Add(@{
                event_id = [int]$entry.EventID
                source = [string]$entry.Source
                time = $entry.TimeGenerated.ToString('s')
                message = [string]$entry.Message
            })
        }
    }
} finally {
    $systemLog.Dispose()
}
$facts['events'] = [object[]]$eventList.ToArray()
