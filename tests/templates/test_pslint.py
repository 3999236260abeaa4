"""The PowerShell 2.0 lint: every rule rejects its 3.0+ snippet and accepts the 2.0 way of saying it."""

from __future__ import annotations

import pytest

from orchestrator.pslint import RULES, LintIssue, check_template_conventions, lint, read_header

# (rule, snippet PowerShell 2.0 cannot run, snippet saying the same thing the 2.0 way)
CASES: list[tuple[str, str, str]] = [
    ("PS2000", "if ($x) {\n    $y = 1\n", "if ($x) {\n    $y = 1\n}\n"),
    ("PS2000", "$a = (1 + \n", "$a = (1 + 2)\n"),
    # The next two are valid PowerShell that tree-sitter-powershell cannot read; the lint says how
    # to write them so that both are happy.
    (
        "PS2000",
        '& netsh advfirewall firewall add rule name="DSR $Vip" dir=in\n',
        '& netsh advfirewall firewall add rule "name=DSR $Vip" dir=in\n',
    ),
    (
        "PS2000",
        "Get-Service | ForEach-Object -Begin {} -Process { $_ }\n",
        "Get-Service | ForEach-Object -Begin { ; } -Process { $_ }\n",
    ),
    (
        "PS2001",
        "$h = [ordered]@{ a = 1 }\n",
        "$h = New-Object System.Collections.Specialized.OrderedDictionary\n$h.Add('a', 1)\n",
    ),
    ("PS2001", "$h = [ORDERED] @{}\n", "$h = @{}\n"),
    ("PS2002", "$o = [pscustomobject]@{ a = 1 }\n", "$o = New-Object PSObject -Property @{ a = 1 }\n"),
    (
        "PS2002",
        "$o = [System.Management.Automation.PSCustomObject]@{ a = 1 }\n",
        "$o = New-Object -TypeName PSObject -Property @{ a = 1 }\n",
    ),
    ("PS2002", "if ($o -is [PSCustomObject]) { 1 }\n", "if ($o -is [PSObject]) { 1 }\n"),
    ("PS2003", "if ($x -in $list) { 1 }\n", "if ($list -contains $x) { 1 }\n"),
    ("PS2003", "if ($x -notin $list) { 1 }\n", "if ($list -notcontains $x) { 1 }\n"),
    ("PS2003", "$ok = $x -NotIn $list\n", "$ok = $list -NotContains $x\n"),
    (
        "PS2004",
        "Get-Service | ForEach-Object { $PSItem.Name }\n",
        "Get-Service | ForEach-Object { $_.Name }\n",
    ),
    ("PS2004", '"name: ${PSItem}"\n', "'name: $PSItem'\n$env:PSItem\n"),
    ("PS2005", "$json = $o | ConvertTo-Json -Depth 3\n", "$o\n"),
    ("PS2005", "$o = ConvertFrom-Json $text\n", "$o = Import-Clixml C:\\state.xml\n"),
    (
        "PS2005",
        "Microsoft.PowerShell.Utility\\ConvertTo-Json $o\n",
        "Microsoft.PowerShell.Utility\\Export-Clixml -InputObject $o -Path C:\\o.xml\n",
    ),
    (
        "PS2006",
        "$os = Get-CimInstance Win32_OperatingSystem\n",
        "$os = Get-WmiObject Win32_OperatingSystem\n",
    ),
    (
        "PS2006",
        "Invoke-CimMethod -ClassName Win32_Process -MethodName Create\n",
        "([wmiclass]'Win32_Process').Create('cmd.exe')\n",
    ),
    ("PS2006", "$s = New-CimSession\n", "$s = $null\n"),
    ("PS2006", "Get-CimClass Win32_Process\n", "Get-WmiObject -List Win32_Process\n"),
    ("PS2006", "$os = gcim Win32_OperatingSystem\n", "$os = gwmi Win32_OperatingSystem\n"),
    (
        "PS2006",
        "$os = & 'Get-CimInstance' Win32_OperatingSystem\n",
        "$os = & 'Get-WmiObject' Win32_OperatingSystem\n",
    ),
    (
        "PS2007",
        "$a = Get-NetAdapter\n",
        "$a = Get-WmiObject Win32_NetworkAdapter -Filter \"ServiceName='msloop'\"\n",
    ),
    (
        "PS2007",
        "Set-NetIPInterface -InterfaceIndex 3 -WeakHostSend Enabled\n",
        "& netsh interface ipv4 set interface 3 weakhostsend=enabled\n",
    ),
    (
        "PS2007",
        "New-NetIPAddress -InterfaceIndex 3 -IPAddress $Vip -PrefixLength 32\n",
        "& netsh interface ipv4 add address 3 $Vip 255.255.255.255\n",
    ),
    ("PS2007", "Get-NetIPInterface\n", "& netsh interface ipv4 show interfaces\n"),
    ("PS2007", "Set-NetIPAddress -IPAddress $Vip -SkipAsSource $true\n", "$cfg.EnableStatic($ips, $masks)\n"),
    ("PS2007", "Remove-NetIPAddress -IPAddress $Vip\n", "& netsh interface ipv4 delete address 3 $Vip\n"),
    ("PS2007", "Get-NetIPAddress -IPAddress $Vip\n", "$cfg.IPAddress\n"),
    (
        "PS2007",
        "Set-DnsClient -InterfaceIndex 3 -RegisterThisConnectionsAddress $false\n",
        "$cfg.SetDynamicDNSRegistration($false, $false)\n",
    ),
    ("PS2007", "New-NetFirewallRule -DisplayName x\n", "$fw = New-Object -ComObject HNetCfg.FwPolicy2\n"),
    ("PS2007", "Get-NetFirewallRule -DisplayName x\n", "& netsh advfirewall firewall show rule name=x\n"),
    (
        "PS2007",
        "Remove-NetFirewallRule -DisplayName x\n",
        "& netsh advfirewall firewall delete rule name=x\n",
    ),
    ("PS2007", "Disable-NetAdapterBinding -Name x -ComponentID ms_server\n", "$cfg.SetTcpipNetbios(2)\n"),
    ("PS2007", "Rename-NetAdapter -Name x -NewName y\n", "$adapter.NetConnectionID = 'y'\n$adapter.Put()\n"),
    (
        "PS2007",
        "Test-NetConnection 10.0.0.1 -Port 80\n",
        "$c = New-Object System.Net.Sockets.TcpClient\n$c.Connect('10.0.0.1', 80)\n",
    ),
    ("PS2007", "Resolve-DnsName host\n", "[System.Net.Dns]::GetHostAddresses('host')\n"),
    (
        "PS2008",
        "Get-Service | Where-Object Status -eq Running\n",
        "Get-Service | Where-Object { $_.Status -eq 'Running' }\n",
    ),
    ("PS2008", "Get-Service | ? Status -eq Running\n", "Get-Service | ? { $_.Status -eq 'Running' }\n"),
    (
        "PS2008",
        "Get-Service | where Status -eq Running\n",
        "Get-Service | where { $_.Status -eq 'Running' }\n",
    ),
    ("PS2008", "Get-Service | % Name\n", "Get-Service | % { $_.Name }\n"),
    (
        "PS2008",
        "Get-Service | ForEach-Object 'Name'\n",
        "Get-Service | ForEach-Object -Process { $_.Name }\n",
    ),
    ("PS2008", "Get-Service | foreach Name\n", "Get-Service | foreach { $_.Name }\n"),
    (
        "PS2008",
        "Get-Service | ForEach-Object -MemberName Name\n",
        "Get-Service | ForEach-Object -Begin { $n = 0 } -Process { $n++ } -End { $n }\n",
    ),
    (
        "PS2008",
        "Get-Service | Where-Object -Property Status -EQ Running\n",
        "Get-Service | Where-Object -FilterScript { $_.Status -eq 'Running' }\n",
    ),
    (
        "PS2008",
        "Get-Service | Where-Object -ErrorAction Stop Status -eq Running\n",
        "Get-Service | Where-Object -ErrorAction Stop { $_.Status -eq 'Running' }\n",
    ),
    (
        "PS2008",
        "$list | Where-Object Name -in $names\n",
        "$test = { $names -contains $_.Name }\n$list | Where-Object $test\n",
    ),
    (
        "PS2008",
        "Get-Service | ForEach-Object -Verbose Name\n",
        "Get-Service | ForEach-Object -Verbose { $_ }\n",
    ),
    (
        "PS2009",
        "function f {\n    param([Parameter(Mandatory)][string]$A)\n    $A\n}\n",
        "function f {\n    param([Parameter(Mandatory=$true)][string]$A)\n    $A\n}\n",
    ),
    (
        "PS2009",
        "function f {\n    [CmdletBinding(SupportsShouldProcess)]\n    param()\n    1\n}\n",
        "function f {\n    [CmdletBinding(SupportsShouldProcess=$true)]\n    param()\n    1\n}\n",
    ),
    ("PS2010", "$s = [NullString]::Value\n", "$s = $null\n"),
    ("PS2011", "$here = $PSScriptRoot\n", "$here = Split-Path $MyInvocation.MyCommand.Path\n"),
    ("PS2011", '$me = "$PSCommandPath"\n', "$me = $MyInvocation.MyCommand.Path\n"),
    ("PS2011", "$x = $script:PSScriptRoot\n", "$x = $script:Root\n"),
    (
        "PS2012",
        "$r = Invoke-WebRequest http://lb/health\n",
        "$r = (New-Object System.Net.WebClient).DownloadString('http://lb/health')\n",
    ),
    ("PS2012", "$r = Invoke-RestMethod http://lb/api\n", "$w = New-Object System.Net.WebClient\n"),
    ("PS2012", "$r = iwr http://lb/health\n", "$r = $null\n"),
    ("PS2013", "$t = Get-Content -Raw C:\\x.txt\n", "$t = [IO.File]::ReadAllText('C:\\x.txt')\n"),
    ("PS2013", "$t = gc C:\\x.txt -raw\n", "$t = gc C:\\x.txt -ReadCount 0\n"),
    ("PS2013", "$t = Get-Content C:\\x.txt -Ra\n", "$t = Get-Content C:\\x.txt -R 0\n"),
    (
        "PS2014",
        "$rows | Export-Csv -Path C:\\x.csv -Append\n",
        "$rows | ConvertTo-Csv | Out-File -FilePath C:\\x.csv -Append\n",
    ),
    (
        "PS2014",
        "$rows | Export-Csv C:\\x.csv -Append:$true\n",
        "$rows | Export-Csv C:\\x.csv -NoTypeInformation\n",
    ),
    (
        "PS2015",
        "class Marker { [string]$Id }\n",
        "Add-Type -TypeDefinition $source -Language CSharpVersion3\n",
    ),
    ("PS2015", "enum Color { Red; Blue }\n", "$red = 0\n$blue = 1\n"),
    ("PS2015", "using namespace System.Text\n", "$sb = New-Object System.Text.StringBuilder\n"),
    ("PS2016", "$sb = [System.Text.StringBuilder]::new()\n", "$sb = New-Object System.Text.StringBuilder\n"),
    (
        "PS2016",
        "$l = [Collections.ArrayList]::New(4)\n",
        "$l = New-Object Collections.ArrayList 4\n$e = [Text.Encoding]::UTF8\n",
    ),
    ("PS2017", "workflow Prepare { Get-Service }\n", "function Prepare { Get-Service }\n"),
    (
        "PS2018",
        "Get-Service -PipelineVariable svc | ForEach-Object { $svc }\n",
        "Get-Service | ForEach-Object { $svc = $_; $svc }\n",
    ),
    ("PS2018", "Get-Service -pv svc | Out-Null\n", "Get-Service -ov svc | Out-Null\n"),
    (
        "PS2019",
        "Register-ArgumentCompleter -CommandName x -ScriptBlock { 1 }\n",
        "Set-Variable -Name x -Value 1\n",
    ),
    ("PS2020", "Install-Module LoopbackAdapter\n", "Import-Module ServerManager\n"),
    ("PS2020", "Install-PackageProvider NuGet\n", "Add-PSSnapin WebAdministration\n"),
    ("PS2021", "Write-Host 'done'\n", "Write-Verbose 'done'\n"),
    ("PS2021", "write-host -ForegroundColor Red 'x'\n", "Write-Warning 'x'\n"),
    ("PS2022", "& ipconfig && 'ok'\n", "& ipconfig\nif ($?) { 'ok' }\n"),
    ("PS2022", "& ipconfig || throw 'failed'\n", "& ipconfig\nif (-not $?) { throw 'failed' }\n"),
]

LINT_RULES = sorted(r for r in RULES if r.startswith("PS20"))


def _ids(case: tuple[str, str, str]) -> str:
    return f"{case[0]}-{case[1].splitlines()[0][:40]}"


def test_every_rule_has_a_case() -> None:
    assert sorted({rule for rule, _, _ in CASES}) == LINT_RULES


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_rule_rejects_the_3_0_form(case: tuple[str, str, str]) -> None:
    rule, bad, _ = case
    issues = lint(bad, "bad.ps1")
    assert rule in {i.rule for i in issues}, issues
    assert {i.rule for i in issues} == {rule}, issues
    for issue in issues:
        assert issue.path == "bad.ps1"
        assert 1 <= issue.line <= bad.count("\n") + 1
        assert issue.column >= 1
        assert issue.message


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_rule_accepts_the_2_0_form(case: tuple[str, str, str]) -> None:
    _, _, good = case
    assert lint(good, "good.ps1") == []


def test_syntax_error_names_its_line() -> None:
    script = "$a = 1\n$b = 2\nif ($a -eq $b {\n    'same'\n}\n$c = 3\n"
    issues = lint(script, "broken.ps1")
    assert issues, "a script with an unclosed parenthesis must be rejected"
    assert all(i.rule == "PS2000" for i in issues)
    assert issues[0].line == 3
    assert str(issues[0]).startswith("broken.ps1:3:")


def test_missing_brace_is_reported_at_the_end() -> None:
    issues = lint("$a = 1\nif ($a) {\n    'x'\n", "broken.ps1")
    assert [i.rule for i in issues] == ["PS2000"]
    assert issues[0].line >= 2


def test_issue_position_is_one_based_and_in_characters() -> None:
    issues = lint("$x = 1\n$e = 'ü'; $h = [ordered]@{}\n")
    assert [(i.line, i.column, i.rule) for i in issues] == [(2, 16, "PS2001")]


def test_issues_are_sorted_by_position() -> None:
    issues = lint("Write-Host 'a'\n$x = [ordered]@{}\nWrite-Host 'b'\n")
    assert [(i.line, i.rule) for i in issues] == [(1, "PS2021"), (2, "PS2001"), (3, "PS2021")]


def test_strings_and_comments_are_not_code() -> None:
    script = (
        "# Get-NetAdapter, ConvertTo-Json, $PSItem and [ordered] are only mentioned here\n"
        "<# Write-Host 'x' #>\n"
        "$note = 'Get-CimInstance -in $PSItem [pscustomobject]'\n"
        "$here = @'\nWrite-Host $PSScriptRoot\n'@\n"
    )
    assert lint(script) == []


def test_a_script_may_define_its_own_helper_under_a_cmdlet_name() -> None:
    script = (
        "function ConvertTo-Json($Value) {\n    '\"' + [string]$Value + '\"'\n}\n"
        "function script:Write-Host($Text) {\n    Write-Verbose $Text\n}\n"
        "ConvertTo-Json 'x'\nWrite-Host 'y'\n"
    )
    assert lint(script) == []
    assert [i.rule for i in lint(script.replace("function ConvertTo-Json", "function Format-Json"))] == [
        "PS2005"
    ]


def test_get_winevent_filterhashtable_is_allowed() -> None:
    script = (
        "$events = Get-WinEvent -FilterHashtable @{ LogName = 'System'; Id = 4199 } "
        "-ErrorAction SilentlyContinue\n"
    )
    assert lint(script) == []


def test_nested_rules_are_all_found() -> None:
    script = (
        "function f {\n"
        "    if ($true) {\n"
        "        $list | ForEach-Object { if ($_ -in $x) { $PSItem } }\n"
        "    }\n"
        "}\n"
    )
    assert [(i.line, i.rule) for i in lint(script)] == [(3, "PS2003"), (3, "PS2004")]


@pytest.mark.parametrize(
    ("script", "hint"),
    [
        ('& netsh advfirewall firewall add rule name="DSR $Vip" dir=in\n', '"name=value with spaces"'),
        ("$sb = {}\n$x = 1\n", "{ ; }"),
        ("function f { param($a) $a }\n", "newline or ;"),
    ],
)
def test_grammar_gaps_come_with_a_hint(script: str, hint: str) -> None:
    issues = lint(script)
    assert issues and all(i.rule == "PS2000" for i in issues)
    assert hint in issues[0].message


def test_lint_issue_str() -> None:
    issue = LintIssue("a.ps1", 3, 7, "PS2001", "msg")
    assert str(issue) == "a.ps1:3:7: PS2001 msg"


# -- template conventions ----------------------------------------------------------------------------

GOOD_TEMPLATE = """# dsrprep-step: weak-host
# Turns weak host send/receive on for one interface.
param(
    [Parameter(Mandatory=$true)][int]$InterfaceIndex,
    [int[]]$Ports = @(80)
)
$ErrorActionPreference = 'Stop'
& netsh interface ipv4 set interface $InterfaceIndex weakhostreceive=enabled
New-Object PSObject -Property @{ changed = $true }
"""


def test_good_template_has_no_convention_issues() -> None:
    assert check_template_conventions(GOOD_TEMPLATE, "t.ps1") == []
    assert lint(GOOD_TEMPLATE, "t.ps1") == []


@pytest.mark.parametrize(
    "text",
    [
        "param()\n$ErrorActionPreference = 'Stop'\n",
        "\n# dsrprep-step: x\nparam()\n$ErrorActionPreference = 'Stop'\n",
        "# A template\n# dsrprep-step: x\nparam()\n$ErrorActionPreference = 'Stop'\n",
        "# dsrprep-step: Weak Host\nparam()\n$ErrorActionPreference = 'Stop'\n",
        "# dsrprep-step:\nparam()\n$ErrorActionPreference = 'Stop'\n",
        "# dsrprep-os: 2008\nparam()\n$ErrorActionPreference = 'Stop'\n",
        "<# dsrprep-step: x #>\nparam()\n$ErrorActionPreference = 'Stop'\n",
    ],
)
def test_header_must_come_first(text: str) -> None:
    assert [i.rule for i in check_template_conventions(text)] == ["PS2101"]


@pytest.mark.parametrize(
    "text",
    [
        "# dsrprep-step: x\n$ErrorActionPreference = 'Stop'\n",
        "# dsrprep-step: x\n$ErrorActionPreference = 'Stop'\nfunction f {\n    param($a)\n    $a\n}\n",
        "# dsrprep-step: x\n",
    ],
)
def test_param_block_must_be_the_first_statement(text: str) -> None:
    assert [i.rule for i in check_template_conventions(text)] == ["PS2102"]


@pytest.mark.parametrize(
    "text",
    [
        "# dsrprep-step: x\nparam()\n$x = 1\n",
        "# dsrprep-step: x\nparam()\n$x = 1\n$ErrorActionPreference = 'Stop'\n",
        "# dsrprep-step: x\nparam()\n$ErrorActionPreference = 'Continue'\n",
        "# dsrprep-step: x\nparam()\n$ErrorActionPreference += 'Stop'\n",
        "# dsrprep-step: x\nparam()\n$global:ErrorActionPreference = 'Stop'\n",
        "# dsrprep-step: x\nparam($a)\n$ErrorActionPreference = $a\n",
    ],
)
def test_stop_preference_must_follow_param(text: str) -> None:
    assert [i.rule for i in check_template_conventions(text)] == ["PS2103"]


@pytest.mark.parametrize(
    "text",
    [
        '# dsrprep-step: x\nparam()\n$ErrorActionPreference = "Stop"\n',
        "# dsrprep-step: x\nparam()\n# why: fail fast\n$erroractionpreference = 'stop'\n",
        "# dsrprep-step: x_1\n# more words\n[CmdletBinding()]\nparam()\n\n$ErrorActionPreference = 'Stop'\n",
    ],
)
def test_convention_variants_that_are_fine(text: str) -> None:
    assert check_template_conventions(text) == []


def test_convention_issue_positions() -> None:
    issues = check_template_conventions("# dsrprep-step: x\nparam()\n\n$x = 1\n", "t.ps1")
    assert [(i.rule, i.line, i.column) for i in issues] == [("PS2103", 4, 1)]


def test_read_header() -> None:
    text = (
        "# dsrprep-step: iis\n# dsrprep-os: 2012r2+\n# Adds a binding.\nparam()\n# dsrprep-x: late\n$a = 1\n"
    )
    assert read_header(text) == {"step": "iis", "os": "2012r2+"}
