# dsrprep-lib: http_restart
# Restarting the HTTP service (http.sys) from outside the WinRM session.
function Start-HttpRestart {
    # http.sys reads the IP listen list when it starts. WinRM listens through http.sys, so
    # `net stop http /y` also stops WinRM and would end this very session before anything could be
    # started again. The restart therefore runs in a process created through WMI, outside the
    # WinRM session, after a pause that lets this result reach the caller; it starts again every
    # service that depended on HTTP and was running (W3SVC, WinRM, ...). Its output goes to a log.
    [void][Reflection.Assembly]::LoadWithPartialName('System.ServiceProcess')
    $http = New-Object System.ServiceProcess.ServiceController('HTTP')
    $services = New-Object System.Collections.ArrayList
    foreach ($service in $http.DependentServices) {
        if ($service.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Running) {
            [void]$services.Add($service.ServiceName)
        }
    }
    $steps = New-Object System.Collections.ArrayList
    [void]$steps.Add('ping -n 6 127.0.0.1 >nul')
    [void]$steps.Add('net stop http /y')
    # WinRM first: management comes back before slower services such as W3SVC.
    $ordered = @($services | Where-Object { $_ -eq 'WinRM' }) + @($services | Where-Object { $_ -ne 'WinRM' })
    foreach ($name in $ordered) {
        if ($name -match '\s') { [void]$steps.Add(('net start "{0}"' -f $name)) } else { [void]$steps.Add(('net start {0}' -f $name)) }
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
    }
}
