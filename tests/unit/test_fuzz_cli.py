"""Fuzzed input through the command line, in process: generated inventories, run directories and
option values are accepted, or refused with exit 2 and lines naming the file (and field) - never a
traceback. Bounded: a fixed number of examples each, derandomized, no deadline (the machine is
shared), hosts reached through a session that fails at once (and a few through real pypsrp to an
address where nothing listens)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from orchestrator.choices import ReportFormat
from orchestrator.cli import Deps, app
from orchestrator.errors import AuthError
from orchestrator.inventory import MAX_INVENTORY_BYTES, Connection
from orchestrator.rolloutlog import Event, RunLog
from orchestrator.transport import RunResult

BOUNDED = settings(max_examples=60, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ENV = {"DSRPREP_PASSWORD": "fuzz-password", "COLUMNS": "200"}


class Refused:
    """A host that refuses the credentials at once (not retried, so a fuzzed run stays fast)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def open(self) -> None:
        raise AuthError(f"{self.connection.address}: the credentials were refused")

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        raise AssertionError("never opened")

    def close(self) -> list[str]:
        return []


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV, obj=Deps(session_factory=Refused, terminal=False))


def assert_clean(result: Result, *, codes: tuple[int, ...], names: str | None = None) -> None:
    """No traceback, an expected exit code; a refusal (2) says what is wrong on stderr, each line
    naming `names` (the file or folder) when given, or the option."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, (result.exit_code, result.output)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines, result.output
        if names is not None:
            assert all(names in line or line.startswith("WARNING:") for line in lines), (names, result.stderr)


# --- inventories ---------------------------------------------------------------------------------------

# Text that means something to rich, to PowerShell, to YAML, to a shell or to a terminal.
NASTY = ["[/x]", "[bold]", ":smile:", "2001:db8::100:80", "$(Get-Date)", "`n", "';\"", "\n", "\r\n", "\t",
         "web[01:03]", "web[a:c]", "{{ x }}", "{% if %}", "env:BAD-NAME", "!unsafe", "&", "*", "~", "#", "%",
         "Ünïcødé", "🙂", "\u200f", "\x1b[31m", "\\\\srv\\share", "..", "/", "-", " ", "", "0", "-1", "1e999"]
nasty_text = st.one_of(
    st.sampled_from(NASTY),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=4).map("".join),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    nasty_text, st.sampled_from(["10.0.0.50", "10.0.0.11", "::1", "fe80::1", "255.255.255.255", "127.0.0.1",
                                 "224.0.0.1", "0.0.0.0", "10.0.0.0/24", "AA-BB-CC-DD-EE-FF", "http", "https",
                                 "basic", "ntlm", "never", "always", "5985", "5986", "C:\\devcon.exe"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(nasty_text, inner, max_size=4)),
                      max_leaves=12)
VARIABLES = ["ansible_host", "ansible_port", "ansible_user", "ansible_password", "ansible_connection",
             "ansible_psrp_auth", "ansible_psrp_protocol", "ansible_psrp_message_encryption",
             "ansible_winrm_transport", "ansible_psrp_proxy", "ansible_psrp_read_timeout",
             "ansible_psrp_operation_timeout", "ansible_pasword", "ansible_group_priority", "dsr_vips", "dsr_nic",
             "dsr_iis_sites", "dsr_loopback_name", "dsr_metric", "dsr_firewall", "dsr_subnet_check",
             "dsr_devcon_path", "dsr_verify_peer", "dsr_arp_retry_count", "dsr_vip", "unrelated"]
host_vars = st.one_of(st.none(), values,
                      st.dictionaries(st.sampled_from(VARIABLES) | nasty_text, values, max_size=6))
hosts = st.dictionaries(nasty_text | st.sampled_from(["web01", "web02", "[::1]:5986", "web[1:3]"]), host_vars,
                        max_size=4)


@st.composite
def groups(draw: st.DrawFn, depth: int = 0) -> Any:
    group: dict[Any, Any] = {}
    for key in draw(st.lists(st.sampled_from(["hosts", "vars", "children", "dsr_vips", "junk"]), unique=True,
                             max_size=3)):
        if key == "hosts":
            group[key] = draw(hosts | values)
        elif key == "vars":
            group[key] = draw(st.dictionaries(st.sampled_from(VARIABLES) | nasty_text, values, max_size=5) | values)
        elif key == "children" and depth < 3:
            group[key] = draw(st.dictionaries(nasty_text | st.just("all"), groups(depth + 1), max_size=3) | values)
        else:
            group[key] = draw(values)
    return group


inventories = st.one_of(
    st.builds(lambda g: {"all": g}, groups()),
    st.dictionaries(nasty_text | st.just("all"), values, max_size=3),
    values,
)


def _as_text(document: Any, how: str, cut: int) -> str:
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    if how == "torn":
        return text[: cut % (len(text) + 1)]
    if how == "deep":
        return "all:\n  vars:\n    x: " + "[" * (cut * 40) + "]" * (cut * 40) + "\n" + text
    if how == "long":  # a value of a megabyte, within the size limit
        return text + f"# {'x' * 2**20}\n" if cut % 2 else "all:\n  hosts:\n    " + "w" * 2**20 + ":\n" + text
    if how == "huge":  # over the size limit
        return text + "#" * MAX_INVENTORY_BYTES
    return text


@BOUNDED
@given(document=inventories, how=st.sampled_from(["whole", "whole", "torn", "deep", "long", "huge"]),
       cut=st.integers(0, 200),
       as_json=st.booleans())
def test_generated_inventories_load_or_are_refused_naming_the_file(
        tmp_path_factory: Any, document: Any, how: str, cut: int, as_json: bool) -> None:
    path = tmp_path_factory.mktemp("inv") / "inventory.yml"
    path.write_text(_as_text(document, how, cut), encoding="utf-8")
    result = invoke("inventory", "check", *(["--json"] if as_json else []), str(path))
    assert_clean(result, codes=(0, 2), names=str(path))
    if result.exit_code == 0 and as_json:
        json.loads(result.stdout)


VALID = {
    "all": {
        "vars": {"dsr_vips": ["10.0.0.50"], "ansible_psrp_connection_timeout": 1,
                 "ansible_psrp_operation_timeout": 1, "ansible_psrp_read_timeout": 2},
        "children": {"web": {"hosts": {"web01": {"ansible_host": "10.0.0.11"},
                                       "web02": {"ansible_host": "10.0.0.12"}}},
                     "canary": {"hosts": {"web01": None}}},
    }
}


def _write_valid(directory: Path, **host_vars: Any) -> Path:
    document = json.loads(json.dumps(VALID))
    document["all"]["vars"].update(host_vars)
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@BOUNDED
@given(name=nasty_text, site=nasty_text, user=nasty_text, loopback=nasty_text, command=st.sampled_from(
    ["plan", "facts", "inventory"]))
def test_hostile_names_in_a_valid_inventory_never_crash_the_output(
        tmp_path_factory: Any, name: str, site: str, user: str, loopback: str, command: str) -> None:
    directory = tmp_path_factory.mktemp("names")
    document = json.loads(json.dumps(VALID))
    document["all"]["vars"].update(ansible_user=user, dsr_iis_sites=[site], dsr_loopback_name=loopback)
    document["all"]["children"]["web"]["hosts"][name] = {"ansible_host": "10.0.0.13"}
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    args = ["inventory", "check", str(path)] if command == "inventory" else [
        command, str(path), "--runs-dir", str(directory / "runs")]
    assert_clean(invoke(*args), codes=(0, 1, 2), names=str(path))


# --- options ---------------------------------------------------------------------------------------------

limit_parts = st.sampled_from(["web01", "web02", "web", "canary", "all", "nosuch", ",", ":", "!", "&", "~", "*",
                               "?", "[", "]", "web0[12]", "~web.*", "~(", " ", "[/x]", ":smile:", "\n", "\0"])
limits = st.lists(limit_parts, max_size=5).map("".join) | st.text(max_size=8)


@BOUNDED
@given(limit=limits, command=st.sampled_from(["plan", "facts"]))
def test_fuzzed_limits_select_hosts_or_are_refused(tmp_path_factory: Any, limit: str, command: str) -> None:
    directory = tmp_path_factory.mktemp("limit")
    result = invoke(command, str(_write_valid(directory)), "--limit", limit, "--runs-dir", str(directory / "runs"))
    assert_clean(result, codes=(1, 2))  # every selected host refuses the credentials: 1
    if limit.strip(" ,:") == "" or limit.strip() in ("!", "&", "~"):
        assert result.exit_code == 2 and "selects nothing" in result.stderr, result.output


forks = st.one_of(st.integers(min_value=-(2**40), max_value=2**40).map(str),  # \uff13: a full-width 3
                  st.sampled_from(["0", "1", "512", "513", "-1", "x", "", "1.5", "0x10", "1e3", "[/x]", "\uff13"]))


@BOUNDED
@given(value=forks, command=st.sampled_from(["plan", "facts", "rollout"]))
def test_fuzzed_forks_run_or_are_refused(tmp_path_factory: Any, value: str, command: str) -> None:
    directory = tmp_path_factory.mktemp("forks")
    extra = ["--yes"] if command == "rollout" else []
    result = invoke(command, str(_write_valid(directory)), "--forks", value, "--runs-dir", str(directory / "runs"),
                    *extra)
    assert_clean(result, codes=(1, 2, 3))
    if value.isascii() and value.strip().lstrip("-").isdigit() and not 1 <= int(value) <= 512:
        assert result.exit_code == 2 and "--forks" in result.stderr, result.output


@st.composite
def runs_dirs(draw: st.DrawFn, base: Path) -> str:
    kind = draw(st.sampled_from(["fresh", "file", "dev-null", "proc", "nul", "nested-file", "weird", "dot"]))
    if kind == "file":
        (base / "a-file").write_text("x")
        return str(base / "a-file")
    if kind == "nested-file":
        (base / "a-file").write_text("x")
        return str(base / "a-file" / "runs")
    return {"fresh": str(base / "runs"), "dev-null": "/dev/null", "proc": "/proc/dsrprep-runs",
            "nul": str(base / "ru\0ns"), "dot": str(base),
            "weird": str(base / draw(nasty_text.filter(lambda t: "\0" not in t and "/" not in t and t not in
                                                          ("", ".", "..")))),
            }[kind]


@BOUNDED
@given(data=st.data(), command=st.sampled_from(["plan", "facts", "rollout"]))
def test_fuzzed_runs_dirs_are_used_or_refused_naming_them(tmp_path_factory: Any, data: st.DataObject,
                                                         command: str) -> None:
    directory = tmp_path_factory.mktemp("runsdir")
    runs = data.draw(runs_dirs(directory))
    extra = ["--yes"] if command == "rollout" else []
    result = invoke(command, str(_write_valid(directory)), "--runs-dir", runs, *extra)
    assert_clean(result, codes=(1, 2, 3))
    if result.exit_code == 2:  # refused by dsrprep, or by typer (a NUL in a path)
        assert (f"--runs-dir {runs}: cannot write run logs there" in result.stderr
                or "Invalid value for '--runs-dir'" in result.stderr), result.output


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(limit=st.sampled_from(["web01", "web", "all", "!web02"]), command=st.sampled_from(["plan", "facts"]))
def test_fuzzed_limits_through_real_pypsrp_to_an_address_where_nothing_listens(
        tmp_path_factory: Any, limit: str, command: str) -> None:
    directory = tmp_path_factory.mktemp("real")
    path = _write_valid(directory, ansible_port=_closed_port())
    document = yaml.safe_load(path.read_text())
    for host in document["all"]["children"]["web"]["hosts"].values():
        host["ansible_host"] = "127.0.0.1"
    document["all"]["children"]["web"]["hosts"]["web02"]["ansible_host"] = "127.0.0.2"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = CliRunner().invoke(app, [command, str(path), "--limit", limit, "--runs-dir", str(directory / "runs"),
                                      "--json"], env=ENV)
    assert_clean(result, codes=(1,))
    assert {h["status"] for h in json.loads(result.stdout)["hosts"].values()} == {"unreachable"}


# --- run directories --------------------------------------------------------------------------------------

RUN_ID = "20240101T000000.000Z-abcdef"


def _rollout_record(inventory: Path) -> dict[str, Any]:
    return {
        "command": "rollout", "run_id": RUN_ID, "inventory": str(inventory), "limit": None, "forks": 4,
        "hosts": ["web01", "web02"], "state": "interrupted", "started": "2024-01-01T00:00:00.000+00:00",
        "options": {"canary": None, "waves": "1,100%", "max_failures": "0", "max_unreachable": "0",
                    "order": "inventory", "forks": 4, "pause_after_wave": False, "gate_command": None,
                    "rollback_on_abort": False, "check": False},
        "preflight": {"web01": "changes", "web02": "changes"},
        "waves": [{"name": "canary", "hosts": ["web01"]}, {"name": "wave 1", "hosts": ["web02"]}],
        "gates": [], "outcomes": {"web01": "changed", "web02": "failed"}, "ending": None,
        "runs_dir": "", "summary": {"changed": 1, "failed": 1},
    }


RUN_FIELDS = ["command", "run_id", "inventory", "limit", "forks", "hosts", "state", "started", "options",
              "preflight", "waves", "gates", "outcomes", "ending", "runs_dir", "summary", "resumed"]
SUB_FIELDS = ["options.forks", "options.waves", "options.canary", "options.check", "waves.0", "waves.0.hosts",
              "waves.0.name", "outcomes.web01", "hosts.0", "preflight.web01", "gates.0"]


def _set(record: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    target: Any = record
    for part in path:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


@st.composite
def run_dirs(draw: st.DrawFn, base: Path, inventory: Path) -> Path:
    record = _rollout_record(inventory)
    record["runs_dir"] = str(base / "runs")
    for field in draw(st.lists(st.sampled_from(RUN_FIELDS), max_size=3, unique=True)):
        if draw(st.booleans()):
            record.pop(field, None)
        else:
            record[field] = draw(values)
    for field in draw(st.lists(st.sampled_from(SUB_FIELDS), max_size=2, unique=True)):
        value = draw(values)
        with contextlib.suppress(KeyError, IndexError, TypeError, ValueError):  # an earlier change removed it
            _set(record, field, value)
    log = RunLog.create(base / "old", RUN_ID)
    logger = log.host_logger("web01")
    logger.info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "WEB01"})
    logger.info(Event.STEP_RESULT, step="firewall_state", status="changed")
    logger.info(Event.HOST_DONE, step="rollout", status="changed")
    log.close()
    run_json = log.path / "run.json"
    text = json.dumps(record, default=str)
    damage = draw(st.sampled_from(["none", "none", "torn-json", "torn-host-log", "host-log-dir", "no-run-json",
                                   "run-json-dir", "binary"]))
    run_json.write_text(text[: len(text) // 2] if damage == "torn-json" else text, encoding="utf-8")
    if damage == "torn-host-log":
        with (log.hosts_dir / "web01.jsonl").open("a", encoding="utf-8") as fh:
            fh.write('{"event": "host_done", "host": "web01", "sta')
    elif damage == "host-log-dir":
        (log.hosts_dir / "web02.jsonl").mkdir()
    elif damage == "no-run-json":
        run_json.unlink()
    elif damage == "run-json-dir":
        run_json.unlink()
        run_json.mkdir()
    elif damage == "binary":
        run_json.write_bytes(b"\xff\xfe\x00{" + bytes(range(256)))
    return log.path


@BOUNDED
@given(data=st.data(), command=st.sampled_from(["resume", "rollback", "rerun", "report"]))
def test_fuzzed_run_directories_are_used_or_refused_naming_the_file(
        tmp_path_factory: Any, data: st.DataObject, command: str) -> None:
    base = tmp_path_factory.mktemp("rundir")
    run_dir = data.draw(run_dirs(base, _write_valid(base)))
    args = {"resume": ["resume", "--yes"], "rollback": ["rollback", "--yes", "--runs-dir", str(base / "runs")],
            "rerun": ["rerun", "--failed", "--yes", "--runs-dir", str(base / "runs")],
            "report": ["report", "--format", data.draw(st.sampled_from(list(ReportFormat)))]}[command]
    result = invoke(*args, str(run_dir))
    assert_clean(result, codes=(0, 1, 2, 3))
    if result.exit_code == 2:  # names the run directory, the runs folder, or the inventory it recorded
        named = [str(run_dir), str(base / "runs"), _recorded_inventory(run_dir)]
        assert any(name and name in result.stderr for name in named), result.stderr


def _recorded_inventory(run_dir: Path) -> str | None:
    try:
        inventory = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("inventory")
    except (OSError, ValueError, AttributeError):
        return None
    return inventory if isinstance(inventory, str) else None
