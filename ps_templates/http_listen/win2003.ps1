# dsrprep-step: http_listen
# Windows Server 2003: adds or removes one address in the http.sys IP listen list with httpcfg
# (Support Tools), then has the HTTP service restarted, since http.sys reads the list at start.
param(
    [string]$Ensure,
    [string]$Address
)
$ErrorActionPreference = 'Stop'

function Invoke-NativeCommand([string]$FilePath, [string[]]$Arguments, [int[]]$SuccessCodes = @(0)) {
    # Native tools report failure only through their exit code and print the reason on stdout or
    # stderr: stderr must not turn into a terminating error before the code has been read.
    if ($null -eq (Get-Command $FilePath -CommandType Application -ErrorAction SilentlyContinue)) {
        throw ('{0} was not found' -f $FilePath)
    }
    $ErrorActionPreference = 'Continue'
    $output = [string](& $FilePath $Arguments 2>&1 | ForEach-Object { [string]$_ } | Out-String)
    $code = $LASTEXITCODE
    $ErrorActionPreference = 'Stop'
    $shown = @($Arguments | ForEach-Object { if ($_ -match '\s') { '"' + $_ + '"' } else { $_ } })
    $commandLine = ('{0} {1}' -f [IO.Path]::GetFileName($FilePath), ($shown -join ' '))
    if ($SuccessCodes -notcontains $code) {
        throw ('{0} failed (exit {1}): {2}' -f $commandLine, $code, $output.Trim())
    }
    return @{ code = $code; output = $output; command = $commandLine }
}

function ConvertTo-CanonicalIp([string]$Text) {
    # WMI and netsh print IPv6 addresses with or without a zone and in any case: compare the
    # parsed form. IPAddress.TryParse also accepts "10" (0.0.0.10), hence the shape test first.
    if ([string]::IsNullOrEmpty($Text)) { return $null }
    $candidate = $Text.Trim().Split('%')[0]
    if ($candidate -notmatch '^[0-9]{1,3}(\.[0-9]{1,3}){3}$' -and $candidate -notmatch ':') { return $null }
    $parsed = $null
    if (-not [System.Net.IPAddress]::TryParse($candidate, [ref]$parsed)) { return $null }
    return $parsed.ToString()
}

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
    foreach ($name in $services) {
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
    }
}

function Find-Httpcfg {
    # httpcfg.exe comes with the Windows Server 2003 Support Tools, which many servers lack.
    $command = Get-Command 'httpcfg.exe' -CommandType Application -ErrorAction SilentlyContinue
    if ($null -ne $command) { return @($command)[0].Definition }
    if ($null -ne $env:ProgramFiles) {
        $candidate = Join-Path $env:ProgramFiles 'Support Tools\httpcfg.exe'
        if (Test-Path -LiteralPath $candidate -PathType Leaf) { return $candidate }
    }
    throw 'httpcfg.exe was not found (Windows Server 2003 Support Tools)'
}

function Invoke-Httpcfg([string]$Path, [string[]]$Arguments, [int[]]$Accepted) {
    # httpcfg reports the HTTP API's status as "... completed with N." rather than (reliably)
    # through its exit code: 0 is success, 1168 (ERROR_NOT_FOUND) an empty list when querying.
    $result = Invoke-NativeCommand $Path $Arguments @(0, 1, 87, 183, 1168)
    $status = $result.code
    if ($result.output -match 'completed with (\d+)') { $status = [int]$matches[1] }
    if ($Accepted -notcontains $status) {
        throw ('{0} failed (status {1}): {2}' -f $result.command, $status, $result.output.Trim())
    }
    return $result
}

if ($Ensure -ne 'Present' -and $Ensure -ne 'Absent') { throw ("Ensure must be 'Present' or 'Absent', not '{0}'" -f $Ensure) }
$canonical = ConvertTo-CanonicalIp $Address
if ($null -eq $canonical) { throw ("'{0}' is not an IP address" -f $Address) }

$httpcfg = Find-Httpcfg
# Records "IP : <address>" each followed by a dashed line.
$query = Invoke-Httpcfg $httpcfg @('query', 'iplisten') @(0, 1168)
$listed = $false
foreach ($line in @($query.output -split "`r?`n")) {
    if ($line -match '^\s*[^:]+:\s*(\S+)\s*$' -and (ConvertTo-CanonicalIp $matches[1]) -eq $canonical) { $listed = $true }
}

$changed = $false
$output = $null
$restart = $null
if ($Ensure -eq 'Present' -and -not $listed) {
    $output = (Invoke-Httpcfg $httpcfg @('set', 'iplisten', '-i', $Address) @(0)).output
    $changed = $true
} elseif ($Ensure -eq 'Absent' -and $listed) {
    $output = (Invoke-Httpcfg $httpcfg @('delete', 'iplisten', '-i', $Address) @(0)).output
    $changed = $true
}
if ($changed) { $restart = Start-HttpRestart }

@{
    changed = $changed
    address = $canonical
    restart_scheduled = $changed
    restart = $restart
    output = $output
}
