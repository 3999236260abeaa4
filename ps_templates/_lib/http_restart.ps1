# dsrprep-lib: http_restart
# Restarting the HTTP service (http.sys) from outside the WinRM session, until one restart is known
# to have happened (needs the marker lib).
function Get-HttpRestartPending {
    # HKLM\SOFTWARE\dsrprep\DSR\HttpRestartPending: how many restarts were scheduled since the last
    # one that completed (0: none pending). The restart process deletes it once HTTP is up again.
    $text = Get-MarkerValue 'HttpRestartPending'
    if ([string]::IsNullOrEmpty($text)) { return 0 }
    $count = 0
    if ([int]::TryParse($text, [ref]$count) -and $count -gt 0) { return $count }
    return 1
}

function Start-HttpRestart([int]$Attempt) {
    # http.sys reads the IP listen list when it starts. WinRM listens through http.sys, so
    # `net stop http /y` also stops WinRM and would end this very session before anything could be
    # started again. The restart therefore runs in a process created through WMI, outside the
    # WinRM session, after a pause that lets this result reach the caller; it starts again every
    # service that depended on HTTP and was running (W3SVC, WinRM, ...). Its output goes to a log.
    #
    # It is fire-and-forget, so it is recorded first: HttpRestartPending in the marker, which the
    # restart process deletes only once `net stop http` and `net start http` both succeeded (http.sys
    # has read the list again). A later run that still finds it schedules the restart again. The
    # services that depended on HTTP are started whatever happened to HTTP (a stop that timed out
    # leaves them stopped), and tried again every 10 seconds for a minute while one does not start.
    [void][Reflection.Assembly]::LoadWithPartialName('System.ServiceProcess')
    $http = New-Object System.ServiceProcess.ServiceController('HTTP')
    $services = New-Object System.Collections.ArrayList
    foreach ($service in $http.DependentServices) {
        if ($service.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Running) {
            [void]$services.Add($service.ServiceName)
        }
    }
    # WinRM first: management comes back before slower services such as W3SVC.
    $ordered = @($services | Where-Object { $_ -eq 'WinRM' }) + @($services | Where-Object { $_ -ne 'WinRM' })
    $starts = New-Object System.Collections.ArrayList
    foreach ($name in $ordered) {
        $quoted = $name
        if ($name -match '\s') { $quoted = '"{0}"' -f $name }
        [void]$starts.Add(('(net start {0} || set DSRPREP_RETRY=1)' -f $quoted))
    }
    $startAll = $starts -join ' & '
    if ($starts.Count -eq 0) { $startAll = 'rem' }
    $steps = New-Object System.Collections.ArrayList
    [void]$steps.Add('ping -n 6 127.0.0.1 >nul')
    [void]$steps.Add('(net stop http /y && net start http && (reg delete "HKLM\SOFTWARE\dsrprep\DSR" /v HttpRestartPending /f >nul 2>&1 & echo dsrprep: HTTP restarted, restart no longer pending) || echo dsrprep: HTTP was not restarted, the restart stays pending in HKLM\SOFTWARE\dsrprep\DSR)')
    [void]$steps.Add($startAll)
    # `if defined` is decided when it runs, each time round the loop (no delayed expansion needed).
    [void]$steps.Add(('for /l %i in (1,1,6) do @if defined DSRPREP_RETRY (set "DSRPREP_RETRY=" & echo dsrprep: a service did not start, trying again in 10 seconds & ping -n 11 127.0.0.1 >nul & {0})' -f $startAll))

    $key = [Microsoft.Win32.Registry]::LocalMachine.CreateSubKey('SOFTWARE\dsrprep\DSR')
    try {
        $key.SetValue('HttpRestartPending', [string]$Attempt, [Microsoft.Win32.RegistryValueKind]::String)
    } finally {
        $key.Close()
    }

    $log = Join-Path $env:windir 'Temp\dsrprep-http-restart.log'
    # The group starts with "(", not a quote, so cmd keeps any quotes inside it as they are.
    $commandLine = ('cmd.exe /c ({0}) > {1} 2>&1' -f ($steps -join ' & '), $log)
    $created = ([wmiclass]'root\cimv2:Win32_Process').Create($commandLine)
    if ([int]$created.ReturnValue -ne 0) {
        throw ('Win32_Process.Create returned {0} for: {1}' -f $created.ReturnValue, $commandLine)
    }
    return @{
        services = [object[]]$services.ToArray()
        log = $log
        process_id = [int]$created.ProcessId
        # `ping -n 6` waits about five seconds before `net stop http`.
        delay_seconds = 5
        attempt = $Attempt
    }
}
