"""The dsrprep command line: the only code that reads argv and the environment, prints, prompts and exits.

Everything it calls returns data; this module turns that data into tables, JSON and exit codes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator import oscaps, privatefs
from orchestrator.ansible_inventory import LOADERS, load_any
from orchestrator.choices import DEFAULT_FORKS, DEFAULT_WAVES, CheckFormat, ReportFormat
from orchestrator.clihelp import HelpGroup, examples
from orchestrator.errors import ErrorInfo
from orchestrator.exitcodes import ExitCode, Nagios
from orchestrator.exitcodes import help_text as exit_codes_help
from orchestrator.fdlimit import SPARE, OpenFilesError, ensure_open_files
from orchestrator.interrupts import STOP
from orchestrator.inventory import (
    MAX_HOSTS,
    MAX_INVENTORY_BYTES,
    MAX_NESTING,
    Host,
    Inventory,
    InventoryError,
    expand_limit_files,
    takes_default_password,
    with_credentials,
)
from orchestrator.redaction import Secrets, show_client_log
from orchestrator.retry import RetryPolicy

if TYPE_CHECKING:
    from orchestrator import drift
    from orchestrator.inventory import Connection
    from orchestrator.lab.fleet import LabFleet
    from orchestrator.locks import HeldLocks
    from orchestrator.progress import Progress
    from orchestrator.results import Command, FleetResult
    from orchestrator.rollout import Options, Outcome, Rollout, RunRecord
    from orchestrator.rolloutlog import HostRecord, RunLog
    from orchestrator.runner import RollbackRefusal, RollbackTarget
    from orchestrator.transport import Session, SessionFactory
    from orchestrator.waves import Wave

EXIT_OK = ExitCode.OK
EXIT_HOSTS_FAILED = ExitCode.HOSTS_FAILED
EXIT_BAD_INPUT = ExitCode.BAD_INPUT
EXIT_ABORTED = ExitCode.ABORTED
EXIT_DECLINED = ExitCode.DECLINED
EXIT_INTERRUPTED = ExitCode.INTERRUPTED

PASSWORD_ENV = "DSRPREP_PASSWORD"

app = typer.Typer(
    name="dsrprep",
    help="Prepare fleets of Windows servers for Direct Server Return over PowerShell Remoting.\n\n" + exit_codes_help(),
    epilog=examples("dsrprep demo", "dsrprep inventory check inventory.yml", "dsrprep plan inventory.yml",
                    "dsrprep rollout inventory.yml --limit web --waves 1,25%,100%",
                    "dsrprep --install-completion   (then open a new shell: Tab completes commands and options)"),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold passwords
    cls=HelpGroup,
)
inventory_app = typer.Typer(help="Inspect inventories.", no_args_is_help=True, cls=HelpGroup)
lab_app = typer.Typer(help="Run the lab fleet of simulated Windows servers.", no_args_is_help=True, cls=HelpGroup)
app.add_typer(inventory_app, name="inventory")
app.add_typer(lab_app, name="lab")

_SECRETS = Secrets()  # the passwords this process knows, masked in the --verbose log


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show the PSRP client's debug log (pypsrp, pyspnego, requests) on stderr; "
                                "passwords are masked.")] = False,
) -> None:
    """Prepare fleets of Windows servers for Direct Server Return over PowerShell Remoting."""
    if verbose:
        show_client_log(_SECRETS)


# Every printed string is data (host, user, group, adapter and site names, errors from hosts): never
# rich markup and never emoji codes (an IPv6 endpoint like 2001:db8::100:80 holds one). Styles come
# from rich.text.Text objects built by this module and orchestrator/report.py.
def _console(*, stderr: bool = False, width: int | None = None, soft_wrap: bool = False) -> Console:
    return Console(markup=False, emoji=False, highlight=False, stderr=stderr, width=width, soft_wrap=soft_wrap)


out = _console()
if not out.is_terminal:
    # Piped or captured output gets wide tables rather than rich's 80-column default.
    out = _console(width=160)
err = _console(stderr=True, soft_wrap=True)

InventoryArg = Annotated[Path, typer.Argument(
    help="Inventory: Ansible's YAML shape, or with dsrprep[ansible] anything Ansible reads (INI, a folder, plugins).")]
LimitOpt = Annotated[
    str | None,
    typer.Option("--limit", "-l", help="Hosts to act on: names, groups or globs; '!x' excludes, '&g' intersects."),
]
AskPassOpt = Annotated[bool, typer.Option(
    "--ask-pass", "-k", help=f"Prompt for the password of hosts without one in the inventory (else ${PASSWORD_ENV}).")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", "-u", help="User for the hosts whose inventory names none (the inventory's ansible_user wins).")]
VaultPasswordFileOpt = Annotated[Path | None, typer.Option(
    "--vault-password-file", help="File holding the vault password, for vault-encrypted inventory values "
                                  "(Ansible's loader: pip install 'dsrprep[ansible]').")]
InventoryLoaderOpt = Annotated[str, typer.Option(
    "--inventory-loader", help=f"Who reads the inventory: {', '.join(LOADERS)} (auto: Ansible's loader for INI, "
                               "folders, group_vars/, vault and plugins when installed, else the built-in YAML one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run logs are written.")]
ForksOpt = Annotated[int, typer.Option("--forks", "-f", min=1, max=512, help="Hosts worked on at once.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress and no table: only the summary at the end, and errors.")]
InventoryOutOpt = Annotated[Path, typer.Option("--inventory-out", "-o", help="Write the matching inventory here.")]


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    return typer.Exit(code)


@dataclass(frozen=True)
class Access:
    """How an inventory is read and which credentials fill what it leaves out (--user, --ask-pass,
    --vault-password-file, --inventory-loader)."""

    ask_pass: bool = False
    user: str | None = None
    vault_password_file: Path | None = None
    loader: str = "auto"


def _default_password(ask_pass: bool, inv: Inventory) -> str | None:
    """--ask-pass prompts (never echoing) only when some host takes the default password; else
    $DSRPREP_PASSWORD."""
    if not ask_pass:
        return os.environ.get(PASSWORD_ENV) or None
    if not any(takes_default_password(h.connection) for h in inv.hosts):
        return None  # every host has its password in the inventory, or uses Kerberos or a certificate
    value: str = typer.prompt("Password", hide_input=True)
    return value


def _load(path: Path, access: Access, *, require_secrets: bool = True, warn: bool = True) -> Inventory:
    """The inventory with --user and the default password filled in, its warnings on stderr (unless
    `warn` is false); exit 2 when it has problems."""
    try:
        inv = load_any(path, loader=access.loader, vault_password_file=access.vault_password_file, env=os.environ,
                       require_secrets=require_secrets)
    except InventoryError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    default = _default_password(access.ask_pass, inv)
    _SECRETS.add([default])
    inv = with_credentials(inv, user=access.user, password=default)
    if warn:  # a weakened setting (an unchecked certificate, clear text) is said on every run
        for line in inv.warning_lines():
            err.print(f"WARNING: {line}", markup=False)
    # Whatever --verbose shows of the transport's own log is scrubbed of these.
    _SECRETS.add(h.connection.password for h in inv.hosts)
    for host in inv.hosts:
        _SECRETS.add_url(host.connection.proxy)
    return inv


@inventory_app.command("check", epilog=examples(
    "dsrprep inventory check inventory.yml", "dsrprep inventory check inventory.yml --json"), help=(
    "Validate an inventory and show its hosts, groups and resolved settings (never a password).\n\n"
    f"An inventory is a regular file of at most {MAX_INVENTORY_BYTES // 2**20} MiB (refused before "
    f"parsing), nested at most {MAX_NESTING} levels deep, naming at most "
    f"{MAX_HOSTS:,} hosts. Unknown ansible_* variables are warnings naming the closest known one."))
def inventory_check(inventory: InventoryArg, as_json: JsonOpt = False,
                    vault_password_file: VaultPasswordFileOpt = None,
                    inventory_loader: InventoryLoaderOpt = "auto") -> None:
    inv = _load(inventory, Access(False, None, vault_password_file, inventory_loader), require_secrets=False,
                warn=False)
    described = inv.describe()
    # Warnings go to stderr in both forms, so --json output stays one JSON document on stdout.
    for line in inv.warning_lines():
        err.print(f"WARNING: {line}", markup=False)
    if as_json:
        groups = {name: list(members) for name, members in inv.groups.items()}
        document = {"inventory": str(inventory), "hosts": described, "groups": groups,
                    "warnings": inv.warning_lines()}
        typer.echo(json.dumps(document, indent=2))
        return
    table = Table(title=f"{inventory}: {len(inv.hosts)} hosts", title_justify="left")
    for column in ("host", "endpoint", "auth", "user", "password", "groups", "VIPs", "NIC"):
        table.add_column(column, no_wrap=column in ("endpoint", "VIPs"))
    for item in described:
        vips = [f"{v['address']}:{','.join(str(p) for p in v['ports'])}/{v['protocol']}" for v in _dicts(item["vips"])]
        nic = _dicts([item["nic"]])[0]
        table.add_row(
            str(item["name"]),
            str(item["endpoint"]),
            f"{item['auth']}/{item['message_encryption']}",
            _cell(item["user"]),
            _password_cell(item),
            _cell(item["groups"]),
            "\n".join(vips),
            f"{nic['by']} {nic['value']}",
        )
    out.print(table)
    out.print("groups: " + ", ".join(f"{name} ({len(members)})" for name, members in inv.groups.items()))
    out.print("auth is auth/message encryption; every resolved setting: dsrprep inventory check --json FILE")


def _password_cell(item: dict[str, Any]) -> Text:
    source = _cell(item["password_source"]) if item["password_source"] else "none"
    return Text(source, style="" if item["password"] == "set" else "red")


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def _select(inv: Inventory, limit: str | None) -> list[Host]:
    try:
        # @file terms (Ansible's --limit @retry_file): one pattern a line, relative to the current folder.
        pattern = None if limit is None else expand_limit_files(limit, lambda name: Path(name).read_text("utf-8"))
        return list(inv.select(pattern))
    except InventoryError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def psrp_session(connection: Connection) -> Session:
    """transport.psrp_session, imported by the first command that reaches a host: pypsrp and what it
    imports cost a third of a second of CPU that `--help` and the offline commands do not need."""
    from orchestrator import transport

    return transport.psrp_session(connection)


@dataclass(frozen=True)
class Deps:
    """How the commands reach hosts and the person. Tests hand their own through typer's `obj`
    (CliRunner.invoke(..., obj=Deps(...))); a real run uses PSRP and the terminal."""

    session_factory: SessionFactory = psrp_session
    terminal: bool | None = None  # None: whether stdin is a terminal

    def interactive(self) -> bool:
        return sys.stdin.isatty() if self.terminal is None else self.terminal


def _deps(ctx: typer.Context) -> Deps:
    return ctx.obj if isinstance(ctx.obj, Deps) else Deps()


def _execute(command: Command, runs_dir: Path, record: dict[str, Any], hosts: list[Host],
             work: Callable[[RunLog], FleetResult], *, lock: bool = False,
             progress: Progress | None = None) -> tuple[RunLog, FleetResult]:
    """Run `work` under a new run directory; run.json says what ran, with what, and how it ended.
    With `lock`, the hosts are locked for the run (a command that changes them); `progress` shows it go."""
    from orchestrator.progress import Progress
    from orchestrator.rolloutlog import RunState

    _allow_open_files(len(hosts), record["forks"])
    log = _new_log(runs_dir)
    view = progress or Progress(None)
    view.attach(log)
    view.begin(str(command), [h.name for h in hosts])
    base = {"command": command, **record, "hosts": [h.name for h in hosts],
            "started": datetime.now(UTC).isoformat(timespec="milliseconds")}
    with _locked(log, runs_dir, [h.name for h in hosts], command, lock) as held:
        for warning in held.warnings:
            err.print(f"warning: {warning}", markup=False)
        with view:
            result = _work_logged(log, base, work)
    if not result.covers([h.name for h in hosts]):
        raise RuntimeError(f"{command}: results do not cover every planned host")  # a bug, never bad input
    with STOP.held():  # the run has ended: a stop request now must not cut its record short
        log.write_run({**base, "state": RunState.FINISHED, "summary": result.counts(),
                       "outcomes": result.statuses()})
    return log, result


def _allow_open_files(hosts: int, forks: int) -> None:
    """Exit 2 when this process may not open what a run of `hosts` needs: every host's log file (kept
    open for the run) and two connections per worker (a session's, and the one that deletes its
    shell after a lost connection)."""
    try:
        ensure_open_files(hosts + 2 * forks + SPARE, f"{hosts} hosts with --forks {forks}")
    except OpenFilesError as exc:
        raise _fail(str(exc)) from None


def _new_log(runs_dir: Path, run_dir: Path | None = None) -> RunLog:
    """A new run's log under `runs_dir` (or exactly in `run_dir`); exit 2 naming the folder when it
    cannot be made there (a file, a read-only or virtual file system...)."""
    from orchestrator.rolloutlog import RunLog

    option, folder = ("--run-dir", run_dir) if run_dir is not None else ("--runs-dir", runs_dir)
    try:
        if run_dir is not None:
            return RunLog(run_dir.parent, run_dir.name)
        return RunLog.create(runs_dir)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        raise _fail(f"{option} {folder}: cannot write run logs there: {reason}{where}") from None


def _work_logged(log: RunLog, base: dict[str, Any], work: Callable[[RunLog], FleetResult]) -> FleetResult:
    """`work(log)`, with run.json saying it runs, and how it stopped if it did not finish."""
    from orchestrator.rolloutlog import RunState
    from orchestrator.runner import FleetInterrupted

    log.write_run({**base, "state": RunState.RUNNING})
    try:
        return work(log)
    except FleetInterrupted as exc:
        with STOP.held():
            log.close()
            log.write_run({**base, "state": RunState.INTERRUPTED, "summary": exc.result.counts(),
                           "outcomes": exc.result.statuses()})
            err.print(f"interrupted: {exc.result.summary_text()}; log: {log.path}")
            if exc.abandoned:
                raise _Abandoned() from None
            raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        log.write_run({**base, "state": RunState.INTERRUPTED})
        err.print(f"interrupted; log: {log.path}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BaseException:
        log.write_run({**base, "state": RunState.CRASHED})
        raise
    finally:
        log.close()


def _json_doc(log: RunLog, result: FleetResult) -> str:
    doc = {"run_id": log.run_id, "run_dir": str(log.path), **result.to_dict()}
    return json.dumps(doc, indent=2, default=str)


def _exit_for(result: FleetResult) -> typer.Exit:
    return typer.Exit(EXIT_OK if result.succeeded else EXIT_HOSTS_FAILED)


def _record(inventory: Path, limit: str | None, forks: int) -> dict[str, Any]:
    return {"inventory": str(inventory.resolve()), "limit": limit, "forks": forks}


@app.command(epilog=examples(
    "dsrprep facts inventory.yml", "dsrprep facts inventory.yml --limit 'web*' --json > facts.json",
    "dsrprep facts inventory.yml --limit web01 --capture captures/"))
def facts(
    ctx: typer.Context,
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
    capture: Annotated[Path | None, typer.Option(
        "--capture", help="Also save each host's raw facts to DIR/<host>.json, host names, addresses and "
                          "MACs replaced by placeholders (see --no-redact).", metavar="DIR")] = None,
    no_redact: Annotated[bool, typer.Option(
        "--no-redact", help="With --capture: save the facts as they came back, nothing replaced.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Gather facts from every selected host in parallel and show them. Changes nothing."""
    from orchestrator.results import Command
    from orchestrator.runner import gather_fleet_facts

    if no_redact and capture is None:
        raise _fail("--no-redact only applies with --capture DIR")
    inv = _load(inventory, Access(ask_pass, user, vault_password_file, inventory_loader))
    hosts = _select(inv, limit)
    progress = _progress(quiet, as_json)
    log, result = _execute(
        Command.FACTS, runs_dir, _record(inventory, limit, forks), hosts,
        lambda log: gather_fleet_facts(hosts, session_factory=_deps(ctx).session_factory, log=log,
                                       policy=RetryPolicy(), forks=forks), progress=progress)
    saved = _save_captures(capture, log, result, redact=not no_redact) if capture is not None else {}
    if as_json:
        doc = json.loads(_json_doc(log, result))
        if capture is not None:
            doc["captures"] = {host: str(path) for host, path in saved.items()}
        typer.echo(json.dumps(doc, indent=2, default=str))
    else:
        if not quiet:
            _print_facts(inv, result, log)
        _print_summary(result, log, progress)
        for host, path in saved.items():
            out.print(f"captured {host}: {path}", markup=False)
    raise _exit_for(result)


def _save_captures(directory: Path, log: RunLog, result: FleetResult, *, redact: bool) -> dict[str, Path]:
    """Each answering host's raw facts, as its log recorded them, to DIR/<host>.json; redacted
    consistently across the hosts (and named by placeholder) unless `redact` is false."""
    from orchestrator import capture as capturing

    raws = {r.host: raw for r in result
            if r.facts is not None and (raw := capturing.raw_facts_from_log(log.path, r.host)) is not None}
    when = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        redacted = capturing.redact_captures(raws) if redact else None
        saved: dict[str, Path] = {}
        for host, raw in raws.items():
            name = redacted.names[host] if redacted else host
            facts = redacted.hosts[name] if redacted else raw
            document = capturing.capture_document(facts, captured_at=when, redacted=redact)
            saved[host] = capturing.write_capture(directory, name, document)
    except (OSError, capturing.CaptureError) as exc:
        raise _fail(f"--capture {directory}: {exc}") from None
    return saved


def _print_facts(inv: Inventory, result: FleetResult, log: RunLog) -> None:
    from orchestrator.report import facts_row
    from orchestrator.summary import by_name

    table = Table(title=f"facts, run {log.run_id}", title_justify="left")
    columns = ("host", "status", "OS", "PowerShell", "NIC", "loopback", "weak host", "IIS")
    for column in columns:
        table.add_column(column)
    for host in by_name(result):
        if host.facts is None:
            error = host.error or ErrorInfo("Error", "unknown")
            table.add_row(host.host, Text(str(host.status), style="red"), f"{error.error_class}: {error.message}",
                          "", "", "", "", "")
            continue
        row = facts_row(inv.host(host.host), host.facts)
        table.add_row(host.host, Text(str(host.status), style="green"), *(row[c] for c in columns[2:]))
    out.print(table)


def _progress(quiet: bool, as_json: bool) -> Progress:
    """A run's progress: on stderr under --json (stdout holds the one JSON document), none with --quiet."""
    from orchestrator.progress import Progress

    return Progress(None if quiet else err if as_json else out)


def _print_summary(result: FleetResult, log: RunLog, progress: Progress, *, title: str | None = None,
                   gates: list[dict[str, Any]] | None = None) -> None:
    """The end of a run: counts, failed and unreachable hosts with their step and reason, times, folder."""
    from orchestrator.summary import summarize

    summary = summarize(result, title=title or str(result.command), wall=progress.wall, run_dir=log.path,
                        gates=gates or [])
    for line in summary.lines():
        out.print(line)


def _results_table(title: str, result: FleetResult, waves: list[Wave] | None = None) -> Table:
    """Hosts by name, or with `waves` (a rollout) wave by wave, with a wave column."""
    from orchestrator.report import result_row
    from orchestrator.results import Command
    from orchestrator.summary import by_name, in_wave_order

    table = Table(title=title, title_justify="left", show_lines=True)
    columns = ("host", "status", "would change" if result.command == Command.PLAN else "steps")
    for column in columns if waves is None else ("wave", *columns):
        table.add_column(column)
    if waves is None:
        for host in by_name(result):
            table.add_row(*result_row(host))
    else:
        for wave, host in in_wave_order(result, waves):
            table.add_row(wave or "-", *result_row(host))
    return table


@app.command("plan", epilog=examples(
    "dsrprep plan inventory.yml", "dsrprep plan inventory.yml --canary 2 --waves 5,50%",
    "dsrprep plan inventory.yml --limit 'web*,!web03' --json"))
def plan_command(
    ctx: typer.Context,
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    canary: CanaryOpt = None,
    waves: WavesOpt = DEFAULT_WAVES,
    order: OrderOpt = "inventory",
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Show per host what a rollout would change and why, and the waves it would run in. Changes nothing."""
    from orchestrator.results import Command, PlanStatus
    from orchestrator.runner import rollout_fleet
    from orchestrator.waves import CanarySpec, WaveError, order_hosts, parse_waves, place

    try:
        spec, sizes = CanarySpec.parse(canary), parse_waves(waves)
    except WaveError as exc:
        raise _fail(str(exc)) from None
    inv = _load(inventory, Access(ask_pass, user, vault_password_file, inventory_loader))
    hosts = _select(inv, limit)
    try:
        names = order_hosts([h.name for h in hosts], order)
    except WaveError as exc:
        raise _fail(str(exc)) from None
    hosts = [inv.host(n) for n in names]
    progress = _progress(quiet, as_json)
    log, result = _execute(
        Command.PLAN, runs_dir, _record(inventory, limit, forks), hosts,
        lambda log: rollout_fleet(hosts, session_factory=_deps(ctx).session_factory, log=log,
                                  policy=RetryPolicy(), peers=_peers(inv), forks=forks, dry_run=True),
        progress=progress)
    needing = [r.host for r in result if r.status == PlanStatus.CHANGES]
    try:
        placed = place(names, needing, spec, sizes, inv.groups)
    except WaveError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        doc = json.loads(_json_doc(log, result))
        doc["waves"] = [{"name": w.name, "hosts": list(w.hosts)} for w in placed]
        typer.echo(json.dumps(doc, indent=2, default=str))
    else:
        if not quiet:
            out.print(_results_table(f"plan, run {log.run_id}", result))
            for wave in placed:
                out.print(f"{wave.name}: {', '.join(wave.hosts)}", markup=False)
        _print_summary(result, log, progress)
    raise _exit_for(result)


def _peers(inv: Inventory) -> dict[str, Host]:
    return {h.name: h for h in inv.hosts}


_CHECK_HELP = (
    "Check that the selected hosts are still in DSR shape. Changes nothing.\n\n"
    "Reads every host's facts and plans as `dsrprep plan` does. "
    f"Exit {ExitCode.OK:d} when every host is compliant, {ExitCode.DRIFTED:d} when some host has drifted, "
    f"{ExitCode.UNCHECKED:d} when none has but some host could not be checked; with --format nagios: "
    + ", ".join(f"{code:d} {code.name}" for code in Nagios) + " (dsrprep --help)."
)
_CHECK_EXAMPLES = examples(
    "dsrprep check inventory.yml",
    "dsrprep check inventory.yml --format prometheus --output /var/lib/node_exporter/textfile/dsrprep.prom",
    "dsrprep check inventory.yml --format nagios")


@app.command(help=_CHECK_HELP, epilog=_CHECK_EXAMPLES)
def check(
    ctx: typer.Context,
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    output_format: Annotated[CheckFormat, typer.Option(
        "--format", help="table; json (one document); prometheus (node_exporter textfile metrics); nagios (one "
                         "plugin status line, Nagios exit codes).")] = CheckFormat.TABLE,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="With --format json or prometheus: write FILE atomically (a "
                                               "temporary file in its folder, then renamed) instead of stdout.")
    ] = None,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    if output is not None and output_format not in (CheckFormat.JSON, CheckFormat.PROMETHEUS):
        raise _fail(f"--output takes --format json or prometheus, not {output_format}")
    access = Access(ask_pass, user, vault_password_file, inventory_loader)
    if output_format == CheckFormat.NAGIOS:
        verdict = _nagios_guard(lambda: _drift_check(ctx, inventory, limit, forks, access, runs_dir))
        line, status = verdict.nagios()
        typer.echo(line)
        raise typer.Exit(status)
    log, verdict = _drift_check(ctx, inventory, limit, forks, access, runs_dir)
    if output_format == CheckFormat.TABLE:
        _print_check(log, verdict)
    else:
        document = verdict.prometheus() if output_format == CheckFormat.PROMETHEUS else json.dumps(
            {"run_id": log.run_id, "run_dir": str(log.path), **verdict.to_dict()}, indent=2, default=str)
        _write_output(document, output, readable=output_format == CheckFormat.PROMETHEUS)
    raise typer.Exit(verdict.exit_code())


def _drift_check(ctx: typer.Context, inventory: Path, limit: str | None, forks: int, access: Access,
                 runs_dir: Path) -> tuple[RunLog, drift.Check]:
    """The check of the selected hosts, run and logged as `plan` is (run.json's command: check)."""
    from orchestrator import drift
    from orchestrator.results import Command
    from orchestrator.runner import rollout_fleet

    inv = _load(inventory, access)
    hosts = _select(inv, limit)
    log, result = _execute(
        Command.CHECK, runs_dir, _record(inventory, limit, forks), hosts,
        lambda log: rollout_fleet(hosts, session_factory=_deps(ctx).session_factory, log=log,
                                  policy=RetryPolicy(), peers=_peers(inv), forks=forks, dry_run=True))
    return log, drift.Check(result, datetime.now(UTC).timestamp())


def _print_check(log: RunLog, verdict: drift.Check) -> None:
    from orchestrator import drift

    table = Table(title=f"check, run {log.run_id}", title_justify="left", show_lines=True)
    for column in ("host", "state", "would change"):
        table.add_column(column)
    for host in verdict.hosts:
        table.add_row(*drift.row(host))
    out.print(table)
    out.print(f"{verdict.summary_text()}; log: {log.path}", markup=False)


def _nagios_guard(body: Callable[[], tuple[RunLog, drift.Check]]) -> drift.Check:
    """`body()`; when it exits (bad input, interrupted), the Nagios UNKNOWN line with what it said on
    stderr, and exit 3: a monitoring system reads only stdout and the plugin's exit code."""
    from orchestrator import drift

    with err.capture() as captured:
        try:
            return body()[1]
        except typer.Exit as exc:
            stopped = exc
    said = captured.get()
    sys.stderr.write(said)
    reason = said.strip().splitlines()[0] if said.strip() else f"dsrprep check exited {stopped.exit_code}"
    typer.echo(drift.nagios_unknown(reason))
    raise typer.Exit(Nagios.UNKNOWN)


def _write_output(document: str, output: Path | None, *, readable: bool) -> None:
    """`document` on stdout, or into `output` atomically; metrics are readable by other users (the
    collector's), anything else by the owner only."""
    if output is None:
        typer.echo(document, nl=not document.endswith("\n"))
        return
    try:
        privatefs.replace_text(output, document, mode=0o644 if readable else privatefs.FILE_MODE)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _fail(f"--output {output}: cannot write it: {reason}") from None


@app.command(epilog=examples(
    "dsrprep render inventory.yml --host web01", "dsrprep render inventory.yml --host web01 --step loopback"))
def render(
    ctx: typer.Context,
    inventory: InventoryArg,
    host: Annotated[str, typer.Option("--host", help="The host whose scripts to show.")],
    step: Annotated[str | None, typer.Option("--step", help="Only this step (default: every planned step).")] = None,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
) -> None:
    """Print the exact scripts and bound parameters a rollout would send to one host."""
    from orchestrator.results import PlanStatus
    from orchestrator.rolloutlog import RunLog
    from orchestrator.runner import rollout_host
    from orchestrator.templates import render as render_template

    inv = _load(inventory, Access(ask_pass, user, vault_password_file, inventory_loader))
    try:
        target = inv.host(host)
    except InventoryError as exc:
        raise _fail(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="dsrprep-render-") as tmp:
        log = RunLog.create(Path(tmp))
        try:
            planned = rollout_host(target, session_factory=_deps(ctx).session_factory, log=log,
                                   policy=RetryPolicy(), peers=_peers(inv), dry_run=True)
        finally:
            log.close()
    if not isinstance(planned.status, PlanStatus):
        # A refused or unreachable host would be sent nothing, so there is nothing to show.
        error = planned.error or ErrorInfo("Error", "unknown")
        raise _fail(f"{host}: {error.error_class}: {error.message}", EXIT_HOSTS_FAILED)
    actions = [a for a in planned.planned if step is None or a.step == step]
    if step is not None and not actions:
        names = ", ".join(a.step for a in planned.planned) or "nothing: the host is compliant"
        raise _fail(f"{host}: step {step!r} is not in its plan (planned: {names})", EXIT_HOSTS_FAILED)
    if not actions:
        out.print(f"{host}: compliant, nothing to send")
        return
    for action in actions:
        script = render_template(action.step, planned.os_family or "default", action.params)
        out.rule(f"{host}: {action.step} ({script.template_path}, sha256 {script.sha256[:12]})")
        out.print(f"# reason: {action.reason}", markup=False)
        out.print("# parameters, bound over PSRP:", markup=False)
        typer.echo(json.dumps(dict(script.parameters), indent=2, default=str))
        typer.echo(script.text)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        accepted = typer.confirm(question, default=False, err=True)  # stdout may be a --json document
    except typer.Abort:  # end of input at the prompt
        accepted = False
    if not accepted:
        err.print("declined; nothing changed.")
        raise typer.Exit(EXIT_DECLINED)


CanaryOpt = Annotated[str | None, typer.Option(
    "--canary", help="The canary: N (the first N hosts needing changes), HOST,... or @GROUP; default: the "
                     "inventory group 'canary', else the first host needing changes.")]
WavesOpt = Annotated[str, typer.Option(
    "--waves", help="Wave sizes after the canary: counts and percentages, the last repeating (like Ansible's serial).")]
OrderOpt = Annotated[str, typer.Option("--order", help="Placement order: inventory, sorted or shuffle:SEED.")]


@app.command(help="Prepare hosts for DSR canary first, then in waves, with gates between them.\n\n"
                  + exit_codes_help(), epilog=examples(
    "dsrprep rollout inventory.yml --check", "dsrprep rollout inventory.yml",
    "dsrprep rollout inventory.yml --canary web01 --waves 5,25%,100% --max-failures 1",
    "dsrprep rollout inventory.yml --yes --quiet   (CI: no prompts, only the summary)"))
def rollout(
    ctx: typer.Context,
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    canary: CanaryOpt = None,
    waves: WavesOpt = DEFAULT_WAVES,
    max_failures: Annotated[str, typer.Option(
        "--max-failures", help="Failed hosts a wave may have (N, or P% of the wave, rounded down); more stops "
                               "the rollout. The canary allows none.")] = "0",
    max_unreachable: Annotated[str, typer.Option(
        "--max-unreachable", help="Unreachable hosts a wave may have (N or P%), counted apart from failures.")] = "0",
    order: OrderOpt = "inventory",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (before the first change, after the canary).")
                   ] = False,
    pause_after_wave: Annotated[bool, typer.Option("--pause-after-wave", help="Ask again after every wave.")] = False,
    gate_command: Annotated[str | None, typer.Option(
        "--gate-command", help="Run after each wave (DSRPREP_RUN_DIR, DSRPREP_WAVE, DSRPREP_WAVE_HOSTS set); "
                               "a non-zero exit stops the rollout.")] = None,
    rollback_on_abort: Annotated[bool, typer.Option(
        "--rollback-on-abort", help="When a gate stops the rollout, roll back the hosts its wave changed.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Preflight and waves only: change nothing.")] = False,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Write this run's log into exactly this folder.")
                       ] = None,
    quiet: QuietOpt = False,
) -> None:
    from orchestrator.rollout import Options
    from orchestrator.waves import WaveError

    options = Options(canary=canary, waves=waves, max_failures=max_failures, max_unreachable=max_unreachable,
                      order=order, forks=forks, pause_after_wave=pause_after_wave, gate_command=gate_command,
                      rollback_on_abort=rollback_on_abort, check=check)
    try:
        options.validate()
    except WaveError as exc:
        raise _fail(str(exc)) from None
    inv = _load(inventory, Access(ask_pass, user, vault_password_file, inventory_loader))
    hosts = [h.name for h in _select(inv, limit)]
    _start_rollout(_deps(ctx), inv, hosts, options, _record(inventory, limit, forks), yes=yes, as_json=as_json,
                   run_dir=run_dir, runs_dir=runs_dir, quiet=quiet)


def _start_rollout(deps: Deps, inv: Inventory, hosts: list[str], options: Options, record: dict[str, Any], *,
                   yes: bool, as_json: bool, run_dir: Path | None, runs_dir: Path, quiet: bool = False) -> None:
    """A new rollout of `hosts` (placed in the order the options ask for), logged into `run_dir`
    exactly, or into a new run id under `runs_dir`."""
    from orchestrator.results import Command
    from orchestrator.rollout import RunRecord
    from orchestrator.waves import CanarySpec, WaveError, named_canary, order_hosts

    if not (yes or options.check or deps.interactive()):
        raise _fail("no terminal to ask for approval on: pass --yes to roll out without asking")
    try:
        names = order_hosts(hosts, options.order)
        named_canary(CanarySpec.parse(options.canary), names, inv.groups)  # names hosts and groups that exist
    except WaveError as exc:
        raise _fail(str(exc)) from None
    log = _new_log(runs_dir, run_dir)
    # The locks live in the runs folder, wherever --run-dir puts this run's log.
    base = {"command": Command.ROLLOUT, **record, "options": options.to_dict(), "runs_dir": str(runs_dir.resolve()),
            "started": datetime.now(UTC).isoformat(timespec="milliseconds")}
    _drive_rollout(deps, inv, log, base, RunRecord(hosts=names), options, yes=yes, as_json=as_json, resume=False,
                   quiet=quiet)


@app.command(epilog=examples("dsrprep resume runs/20240601T101500.123Z-a1b2c3"))
def resume(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="The run directory of the rollout to finish (runs/<run-id>).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before going on.")] = False,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Finish an interrupted, stopped or crashed rollout with the same waves and options: hosts that ended
    are not run again, the others re-read their facts and go on from what the facts say."""
    from orchestrator.rollout import DONE, Ending
    from orchestrator.rolloutlog import RunState

    data = _read_rollout(run_dir)
    options, record = _recorded_rollout(run_dir, data)
    if data.get("state") == RunState.FINISHED and record.ending == Ending.FINISHED:
        out.print(f"{run_dir}: run {data.get('run_id')} finished: nothing to resume", markup=False)
        raise typer.Exit(EXIT_OK)
    deps = _deps(ctx)
    if not (yes or options.check or deps.interactive()):
        raise _fail("no terminal to ask for approval on: pass --yes to go on without asking")
    inv = _load(Path(str(data.get("inventory"))), Access(ask_pass, user, vault_password_file, inventory_loader))
    missing = [h for h in record.hosts if h not in {x.name for x in inv.hosts}]
    if missing:
        raise _fail(f"{run_dir}: the inventory no longer has host(s) {', '.join(missing)}")
    for host in record.hosts:  # hosts that ended after run.json was last written (a crash mid-wave)
        ended = _host_record(run_dir, host).outcome
        if ended in DONE and record.outcomes.get(host) not in DONE:
            record.outcomes[host] = ended
    base = {k: v for k, v in data.items() if k not in record.to_dict() and k not in ("state", "summary", "run_id")}
    base["resumed"] = [*base.get("resumed", []), datetime.now(UTC).isoformat(timespec="milliseconds")]
    log = _new_log(run_dir.parent, run_dir)
    _drive_rollout(deps, inv, log, base, record, options, yes=yes, as_json=as_json, resume=bool(record.waves),
                   quiet=quiet)


def _recorded_rollout(run_dir: Path, data: dict[str, Any]) -> tuple[Options, RunRecord]:
    """The options and the record of a rollout's run.json, checked; exit 2 naming the field."""
    from orchestrator.rollout import Options, RunRecord
    from orchestrator.waves import WaveError

    try:
        options = Options.from_dict(data.get("options") or {})
        options.validate()
        return options, RunRecord.from_dict(data)
    except WaveError as exc:
        raise _fail(f"{run_dir / 'run.json'}: options: {exc}") from None
    except ValueError as exc:
        raise _fail(f"{run_dir / 'run.json'}: {exc}") from None


def _host_record(run_dir: Path, host: str) -> HostRecord:
    from orchestrator.rolloutlog import RunFileError, recorded_rollout

    try:
        return recorded_rollout(run_dir, host)
    except RunFileError as exc:
        raise _fail(str(exc)) from None


@app.command(epilog=examples("dsrprep rerun --failed runs/20240601T101500.123Z-a1b2c3"))
def rerun(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="The run directory of an earlier rollout.")],
    failed: Annotated[bool, typer.Option("--failed", help="Only the hosts that failed or were unreachable.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (before the first change, after the canary).")
                   ] = False,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Start a new rollout with the options of an earlier one, of the hosts that failed or were unreachable there."""
    from orchestrator.results import Status

    if not failed:
        raise _fail("say which hosts to run again: --failed (those that failed or were unreachable)")
    data = _read_rollout(run_dir)
    options, earlier = _recorded_rollout(run_dir, data)
    again = [h for h, status in earlier.outcomes.items() if status in (Status.FAILED, Status.UNREACHABLE)]
    if not again:
        out.print(f"{run_dir}: no host failed or was unreachable there: nothing to run again", markup=False)
        raise typer.Exit(EXIT_OK)
    inventory = Path(str(data.get("inventory")))
    inv = _load(inventory, Access(ask_pass, user, vault_password_file, inventory_loader))
    known = {h.name for h in inv.hosts}
    record = {**_record(inventory, data.get("limit"), options.forks), "rerun_of": data.get("run_id")}
    _start_rollout(_deps(ctx), inv, [h for h in again if h in known], options, record, yes=yes,
                   as_json=as_json, run_dir=None, runs_dir=runs_dir, quiet=quiet)


def _drive_rollout(deps: Deps, inv: Inventory, log: RunLog, base: dict[str, Any], record: RunRecord,
                   options: Options, *, yes: bool, as_json: bool, resume: bool, quiet: bool = False) -> None:
    """Run (or resume) a rollout under `log`, print it, and exit with its code."""
    _allow_open_files(len(record.hosts), options.forks)
    progress = _progress(quiet, as_json)
    outcome = _rollout_outcome(deps, inv, log, base, record, options, yes=yes, console=err if as_json else out,
                               resume=resume, progress=progress, quiet=quiet)
    if as_json:
        typer.echo(json.dumps({"run_id": log.run_id, "run_dir": str(log.path), "ending": outcome.ending,
                               "waves": outcome.record.to_dict()["waves"], "gates": outcome.record.gates,
                               **outcome.result.to_dict()}, indent=2, default=str))
    else:
        _show_rollout(outcome, log, progress, quiet=quiet)
    raise typer.Exit(_exit_code(outcome))


def _show_rollout(outcome: Outcome, log: RunLog, progress: Progress, *, quiet: bool) -> None:
    """A rollout's table (wave by wave) and its summary."""
    if not quiet:
        out.print(_results_table(f"rollout, run {log.run_id}", outcome.result, outcome.record.waves))
    _print_summary(outcome.result, log, progress, title=f"{outcome.result.command} {outcome.ending}",
                   gates=outcome.record.gates)


def _exit_code(outcome: Outcome) -> int:
    from orchestrator.rollout import Ending

    ending_exit = {Ending.ABORTED: EXIT_ABORTED, Ending.DECLINED: EXIT_DECLINED, Ending.INTERRUPTED: EXIT_INTERRUPTED}
    return ending_exit.get(outcome.ending) or (EXIT_OK if outcome.result.succeeded else EXIT_HOSTS_FAILED)


def _rollout_outcome(deps: Deps, inv: Inventory, log: RunLog, base: dict[str, Any], record: RunRecord,
                     options: Options, *, yes: bool, console: Console, resume: bool,
                     progress: Progress | None = None, quiet: bool = False) -> Outcome:
    """Run (or resume) a rollout under `log` with its hosts locked; run.json says how it ended."""
    from orchestrator.fleetops import PsrpFleet
    from orchestrator.progress import Progress
    from orchestrator.results import Command
    from orchestrator.rollout import Ending, Rollout
    from orchestrator.rolloutlog import RunState

    view = progress or Progress(None)
    view.attach(log)
    view.begin("preflight", record.hosts)
    operator = _Operator(yes=yes, log=log, base=base, console=console, progress=view, quiet=quiet)
    fleet = PsrpFleet({h.name: h for h in inv.hosts}, log, deps.session_factory, _peers(inv), options.forks,
                      options.gate_command)
    plan = Rollout(inv.groups, options, fleet, operator, record)
    runs_dir = Path(str(base.get("runs_dir") or log.path.parent))
    with _locked(log, runs_dir, record.hosts, Command.ROLLOUT, not options.check) as held:
        for warning in held.warnings:
            err.print(f"warning: {warning}", markup=False)
        # Before the preflight: a run killed there is still a run that `resume` can finish.
        operator.save(record)
        with view:
            outcome, abandoned = _run_rollout(plan, resume=resume)
        with STOP.held():  # the run has ended: a stop request now must not cut its record short
            log.close()
            state = {Ending.INTERRUPTED: RunState.INTERRUPTED}.get(outcome.ending, RunState.FINISHED)
            log.write_run({**base, **outcome.record.to_dict(), "state": state, "summary": outcome.result.counts()})
            if abandoned:
                err.print(f"interrupted again: {outcome.result.summary_text()}; log: {log.path}", markup=False)
                raise _Abandoned()
    return outcome


def _run_rollout(plan: Rollout, *, resume: bool) -> tuple[Outcome, bool]:
    """The rollout's outcome, and whether a second Ctrl-C abandoned hosts in flight."""
    from orchestrator.runner import FleetInterrupted

    try:
        if resume:
            return plan.outcome(plan.run(first_wave=plan.resume_from())), False
        return plan.outcome(plan.prepare() or plan.run()), False
    except FleetInterrupted as exc:
        return plan.interrupted(), exc.abandoned
    except KeyboardInterrupt:
        return plan.interrupted(), False


@contextmanager
def _locked(log: RunLog, runs_dir: Path, hosts: list[str], command: Command, lock: bool) -> Iterator[HeldLocks]:
    """The hosts' locks for a run that changes them (none when `lock` is false); exit 2 when another
    run holds one of them."""
    from orchestrator.locks import HeldLocks, LockError, LockHeld, LockRecord, acquire

    if lock:
        try:
            held = acquire(runs_dir, run_id=log.run_id, command=command, hosts=hosts)
        except LockHeld as exc:
            raise _fail(str(exc)) from None
        except (LockError, OSError, ValueError) as exc:  # the runs folder is not usable (ValueError: a NUL in it)
            raise _fail(f"{runs_dir}: cannot lock the hosts there: {exc}") from None
    else:
        held = HeldLocks(LockRecord.mine(log.run_id, command), [], [])
    try:
        with held:
            yield held
    except _Abandoned:
        # A second stop request: the outcomes and each abandoned host's last log line are written
        # and the locks are released; threads still waiting on hosts are left behind (their remote
        # shells expire on their own).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


class _Abandoned(BaseException):
    """Raised after a second Ctrl-C once the run's summary is written: leave without waiting."""


@dataclass
class _Operator:
    """The person at the terminal: asked before the first change and after the canary, shown each wave."""

    yes: bool
    log: RunLog
    base: dict[str, Any]
    console: Console
    progress: Progress
    quiet: bool = False

    def approve(self, question: str) -> bool:
        if self.yes:
            return True
        try:
            with self.progress.paused():  # the live view would draw over the question
                return bool(typer.confirm(question, default=False, err=True))  # stdout may be a --json document
        except typer.Abort:  # end of input at the prompt, or a stop request (Ctrl-C, SIGTERM, SIGHUP)
            if STOP.requested:
                raise KeyboardInterrupt from None
            return False

    def show(self, event: str, **details: Any) -> None:
        if event == "wave":
            self.progress.begin(details["wave"].name, details["todo"])
        if self.quiet:  # the summary says how the run ended
            return
        if event == "preflight":
            counts = ", ".join(f"{k} {v}" for k, v in sorted(details["counts"].items()))
            self.console.print(f"preflight: {counts}", markup=False)
            for wave in details["waves"]:
                self.console.print(f"  {wave.name}: {', '.join(wave.hosts)}", markup=False)
        elif event == "wave":
            self.console.print(f"{details['wave'].name}: {len(details['todo'])} host(s)", markup=False)
        elif event == "gate":
            gate = details["gate"]
            verdict = "go on" if gate.go_on else "STOP: " + "; ".join(gate.reasons)
            self.console.print(f"gate after {details['wave'].name}: {verdict}", markup=False)

    def save(self, record: RunRecord) -> None:
        from orchestrator.rolloutlog import RunState
        self.log.write_run({**self.base, **record.to_dict(), "state": RunState.RUNNING})


def _read_rollout(run_dir: Path) -> dict[str, Any]:
    from orchestrator.results import Command
    from orchestrator.rolloutlog import RunFileError, read_run

    try:
        record = read_run(run_dir, required=("command", "inventory", "hosts"))
    except RunFileError as exc:
        raise _fail(f"{exc} (not a usable run directory)") from None
    if record.get("command") != Command.ROLLOUT:
        raise _fail(f"{run_dir}: run {record.get('run_id')} was a {record.get('command')!r}, not a rollout")
    return record


def _rollback_target(run_dir: Path, host: Host) -> RollbackTarget | RollbackRefusal | None:
    """What the rollout recorded about `host`, or None (said on stderr) when there is nothing to undo.

    The rollback plans against the desired state the rollout acted on, not against the inventory as
    it is now (only the connection settings come from there).
    """
    from orchestrator.fleetops import rollback_target
    from orchestrator.rolloutlog import RunFileError

    try:
        undo = rollback_target(run_dir, host)
    except RunFileError as exc:  # the host's log cannot be read at all
        raise _fail(str(exc)) from None
    except ValueError as exc:
        raise _fail(f"{run_dir}: host {host.name}: the recorded desired state is unreadable ({exc})") from None
    if undo.skipped:
        err.print(undo.skipped, markup=False)
    return undo.target


def _refuse_running(run_dir: Path, record: dict[str, Any]) -> None:
    """Exit 2 while the run's process still holds its hosts; a run whose process died can be rolled back."""
    from orchestrator.locks import LockError, live_holder
    from orchestrator.rolloutlog import RunState

    run_id = str(record.get("run_id"))
    runs_of = Path(str(record.get("runs_dir") or run_dir.parent))
    try:
        holder = live_holder(runs_of, run_id, [str(h) for h in record.get("hosts") or []])
    except LockError as exc:
        raise _fail(f"{run_dir}: cannot tell whether run {run_id} still runs: {exc}") from None
    if holder is not None:
        raise _fail(f"{run_dir}: run {run_id} is still running ({holder.describe()}): let it end, or stop it, "
                    "before rolling it back")
    if record.get("state") == RunState.RUNNING:
        err.print(f"warning: run {run_id} did not end (its process is gone): rolling back what its log shows",
                  markup=False)


@app.command(epilog=examples(
    "dsrprep rollback runs/20240601T101500.123Z-a1b2c3",
    "dsrprep rollback runs/20240601T101500.123Z-a1b2c3 --limit web07 --yes"))
def rollback(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="The run directory of the rollout to undo (runs/<run-id>).")],
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before changing hosts.")] = False,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    user: UserOpt = None,
    vault_password_file: VaultPasswordFileOpt = None,
    inventory_loader: InventoryLoaderOpt = "auto",
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Return hosts to the facts recorded before a rollout, for what dsrprep manages, whatever the step
    results say; a host that is not the recorded machine, or whose record is torn, is refused."""
    from orchestrator.results import Command
    from orchestrator.runner import rollback_fleet

    record = _read_rollout(run_dir)
    _refuse_running(run_dir, record)
    inventory = Path(str(record.get("inventory")))
    inv = _load(inventory, Access(ask_pass, user, vault_password_file, inventory_loader))
    in_run = [str(h) for h in record.get("hosts") or []]
    missing = [h for h in in_run if h not in {x.name for x in inv.hosts}]
    if missing and limit is None:
        raise _fail(f"{run_dir}: the inventory {inventory} no longer has host(s) {', '.join(missing)}: "
                    "restore them, or leave them out with --limit")
    found = [_rollback_target(run_dir, h) for h in _select(inv, limit) if h.name in in_run]
    targets = [t for t in found if t is not None]
    if not targets:
        out.print(f"{run_dir}: no selected host was read or changed by that rollout: nothing to roll back",
                  markup=False)
        raise typer.Exit(EXIT_OK)
    _confirm(f"Roll back {len(targets)} host(s) to their state before run {record.get('run_id')}?", yes)
    progress = _progress(quiet, as_json)
    log, result = _execute(
        Command.ROLLBACK, runs_dir, {**_record(inventory, limit, forks), "of_run": record.get("run_id")},
        [t.host for t in targets],
        lambda log: rollback_fleet(targets, session_factory=_deps(ctx).session_factory, log=log,
                                   policy=RetryPolicy(), forks=forks), lock=True, progress=progress)
    if as_json:
        typer.echo(_json_doc(log, result))
    else:
        if not quiet:
            out.print(_results_table(f"rollback of {record.get('run_id')}, run {log.run_id}", result))
        _print_summary(result, log, progress)
    raise _exit_for(result)


@app.command("report", epilog=examples(
    "dsrprep report runs/20240601T101500.123Z-a1b2c3",
    "dsrprep report runs/20240601T101500.123Z-a1b2c3 --format markdown > ticket.md",
    "dsrprep report runs/20240601T101500.123Z-a1b2c3 --format html -o rollout.html"))
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<run-id>) of any command: facts, plan, rollout, "
                                                 "rollback; finished, interrupted or crashed.")],
    report_format: Annotated[ReportFormat, typer.Option(
        "--format", "-F", help="table (the terminal), json (docs/report.md), markdown (a change ticket), "
                               "junit (CI), html (one self-contained page with a timeline).")] = ReportFormat.TABLE,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the report to this file (0600) instead of stdout.")] = None,
) -> None:
    """Report on a run from its folder: per-host status, failures with the step and the reason, waves and gates."""
    from orchestrator.render_report import RENDERERS, to_table
    from orchestrator.rolloutlog import RunFileError
    from orchestrator.runreport import build_report, load_run

    try:
        document = build_report(load_run(run_dir))
    except RunFileError as exc:
        raise _fail(f"{exc} (not a usable run folder)") from None
    if report_format == ReportFormat.TABLE and output is None:
        out.print(to_table(document))
        return
    if report_format == ReportFormat.TABLE:
        console = Console(file=io.StringIO(), width=160, markup=False, emoji=False, highlight=False, color_system=None)
        console.print(to_table(document))
        text = console.file.getvalue()  # type: ignore[attr-defined]  # the StringIO given above
    else:
        text = RENDERERS[report_format](document)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        privatefs.write_text(output, text)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise _fail(f"--output {output}: cannot write the report there: {getattr(exc, 'strerror', None) or exc}"
                    ) from None
    err.print(f"report written: {output}", markup=False)


@app.command("steps", epilog=examples("dsrprep steps", "dsrprep steps --markdown"))
def steps_command(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table in Markdown.")] = False,
    write_docs: Annotated[
        Path | None, typer.Option("--write-docs", help="Regenerate the step tables and variable lists of README.md, "
                                                       "docs/steps.md and inventory/example.yml in this source folder.")
    ] = None,
) -> None:
    """Show every step: per OS family the command it runs, the facts that check it, what undoes it."""
    from orchestrator import stepdocs

    if write_docs is not None:
        _write_docs(write_docs)
        return
    if markdown:
        typer.echo(stepdocs.readme_table(), nl=False)
        return
    head, rows = stepdocs.table_rows()
    table = Table(title="dsrprep steps, in rollout order", title_justify="left", show_lines=True)
    for column in head:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _write_docs(root: Path) -> None:
    """Regenerate the step tables and variable lists in the source folder `root`."""
    from orchestrator import stepdocs

    paths = {rel: root / rel for rel in stepdocs.GENERATED_FILES}
    missing = [rel for rel, path in paths.items() if not path.is_file()]
    if missing:
        raise _fail(f"{root}: not a dsrprep source folder (no {', '.join(missing)})")
    try:
        old = {rel: path.read_text(encoding="utf-8") for rel, path in paths.items()}
        new = stepdocs.regenerate(old)
        changed = [rel for rel in paths if new[rel] != old[rel]]
        for rel in changed:
            paths[rel].write_text(new[rel], encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out.print("rewrote: " + (", ".join(str(paths[r]) for r in changed) or "nothing (already up to date)"), markup=False)


@lab_app.command("serve", epilog=examples(
    "dsrprep lab serve --hosts 20 --seed 1 --inventory-out lab.yml", "dsrprep lab serve --profile 2008r2 --https",
    "dsrprep lab serve --from-capture captures/ -o lab.yml"))
def lab_serve(
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=1, max=2000, help="How many hosts.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fleet's variation.")] = 1,
    profile: Annotated[str, typer.Option("--profile", help="mixed (every OS family), or one family: "
                                         + "|".join(oscaps.families()))] = "mixed",
    inventory_out: InventoryOutOpt = Path("lab-inventory.yml"),
    port: Annotated[int, typer.Option("--port", help="Port for every host (0: a free port each).")] = 0,
    https: Annotated[bool, typer.Option(
        "--https", help="HTTPS listeners with certificates of a CA made for the fleet, which the inventory "
                        "validates against; 2003 to 2008 R2 hosts speak TLS 1.0 only, as Windows does.")] = False,
    from_capture: Annotated[Path | None, typer.Option(
        "--from-capture", metavar="DIR", help="Serve the captures in DIR (dsrprep facts --capture), one host each, "
                                              "instead of a generated fleet.")] = None,
    latency: Annotated[float, typer.Option(
        "--latency", min=0.0, max=60.0, metavar="SECONDS", help="Added before answering every HTTP request.")] = 0.0,
    counters_out: Annotated[Path | None, typer.Option(
        "--counters-out", metavar="FILE", help="Write every host's request counters as JSON to FILE when the fleet "
                                               "stops and on each SIGUSR1 (bench/run.py reads them).")] = None,
) -> None:
    """Run a fleet of simulated Windows servers in the foreground until Ctrl-C."""
    from orchestrator.lab.fleet import CaptureFleet, FleetError, LabFleet

    try:
        if from_capture is not None:
            fleet: LabFleet = CaptureFleet.from_dir(from_capture, port=port, https=https)
            profile = f"captures in {from_capture}"
        else:
            fleet = LabFleet.build(hosts, seed=seed, profile=profile, port=port, https=https)
    except FleetError as exc:
        raise _fail(str(exc)) from None
    if counters_out is not None and not counters_out.resolve().parent.is_dir():
        raise _fail(f"--counters-out {counters_out}: its folder does not exist")
    for handle in fleet.hosts if latency else ():
        handle.faults.latency = latency
    stop, asked = threading.Event(), [0]
    # Both explicitly: a shell that starts this in the background hands it SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: asked.__setitem__(0, asked[0] + 1))
    with fleet:
        fleet.write_inventory(inventory_out)
        origin = profile if from_capture is not None else f"{profile}, seed {seed}"
        out.print(f"lab fleet: {len(fleet.hosts)} hosts ({origin}); inventory: {inventory_out}")
        for handle in fleet.hosts:
            out.print(f"  {handle.name:<8} {handle.model.os_family:<7} {handle.url}")
        out.print("Ctrl-C stops the fleet.")
        written = 0
        while not stop.wait(0.05):
            if counters_out is not None and asked[0] != written:
                written = asked[0]
                fleet.write_counters(counters_out, written)
        if counters_out is not None:
            fleet.write_counters(counters_out, asked[0])
    out.print("lab fleet stopped.")


class Scenario(StrEnum):
    FLEET = "fleet"
    CANARY_FAILS = "canary-fails"


@app.command(epilog=examples("dsrprep demo", "dsrprep demo --scenario canary-fails", "dsrprep demo -n 40 --seed 3"))
def demo(
    ctx: typer.Context,
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=4, max=100, help="How many lab hosts.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the lab fleet.")] = 7,
    scenario: Annotated[Scenario, typer.Option(
        "--scenario", help="fleet: a canary-then-fleet rollout to a compliant fleet; canary-fails: the canary's "
                           "step is refused and the rollout stops before any other host.")] = Scenario.FLEET,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Start a lab fleet of simulated Windows servers of every OS family (some partly configured by hand
    already, one flaky), roll it out canary first and then in waves with live progress, write the HTML
    report, check that the fleet is compliant, and stop the fleet. Exit 0 when it all went as the
    scenario says it goes."""
    from orchestrator.lab.fleet import LabFleet
    from orchestrator.render_report import RENDERERS
    from orchestrator.results import Command
    from orchestrator.rollout import Ending, Options, RunRecord
    from orchestrator.rolloutlog import RunLog
    from orchestrator.runreport import build_report, load_run

    # The lab's hosts belong to no Kerberos realm: NTLM at once, rather than negotiate asking this
    # machine's default realm first (half a second a session where its KDCs are out of reach).
    fleet = LabFleet.build(hosts, seed=seed, profile="mixed", port=0, client_auth="ntlm")
    with fleet, tempfile.TemporaryDirectory(prefix="dsrprep-demo-") as tmp:
        inventory_path = Path(tmp) / "lab.yml"
        fleet.write_inventory(inventory_path)
        inv = _load(inventory_path, Access())
        canary = _stage_demo(fleet, inv, scenario, seed)
        options = Options(canary=canary, waves="25%,100%", max_failures="0", max_unreachable="0")
        log = RunLog.create(runs_dir)
        base = {"command": Command.ROLLOUT, "inventory": "lab fleet (demo)", "limit": None, "forks": DEFAULT_FORKS,
                "options": options.to_dict(), "runs_dir": str(runs_dir.resolve()),
                "started": datetime.now(UTC).isoformat(timespec="milliseconds")}
        progress = _progress(quiet, as_json=False)
        outcome = _rollout_outcome(_deps(ctx), inv, log, base, RunRecord(hosts=[h.name for h in inv.hosts]), options,
                                   yes=True, console=out, resume=False, progress=progress, quiet=quiet)
        _show_rollout(outcome, log, progress, quiet=quiet)
        report = log.path / "report.html"
        privatefs.write_text(report, RENDERERS[ReportFormat.HTML](build_report(load_run(log.path))))
        out.print(f"HTML report: {report}", markup=False)
        compliant = scenario == Scenario.CANARY_FAILS or _demo_check(ctx, inventory_path, runs_dir)
    out.print("lab fleet stopped.")
    expected = Ending.ABORTED if scenario == Scenario.CANARY_FAILS else Ending.FINISHED
    raise typer.Exit(_exit_code(outcome) if outcome.ending == expected and compliant else EXIT_HOSTS_FAILED)


def _stage_demo(fleet: LabFleet, inv: Inventory, scenario: Scenario, seed: int) -> str:
    """Make the lab fleet look like a real one: every fourth host partly configured by hand already,
    one host flaky; with canary-fails, the canary's loopback_config refused. Says so; returns the canary."""
    from orchestrator.lab import scenes

    handles = list(fleet.hosts)
    canary, flaky = handles[0], handles[len(handles) // 2]
    families = sorted({h.model.os_family for h in handles})
    out.print(Text.assemble(("lab fleet", "bold"), f": {len(handles)} simulated Windows servers on 127.0.0.0/8 "
                            f"({', '.join(families)}), real WinRM/PSRP with NTLM + message encryption"))
    for handle in handles[3::4]:
        done = scenes.configure_partly(handle, inv.host(handle.name).desired, steps=2)
        out.print(f"  {handle.name}: partly configured by hand already ({', '.join(done) or 'nothing to do'})",
                  markup=False)
    scenes.make_flaky(flaky, rate=0.08, seed=seed)
    out.print(f"  {flaky.name}: flaky (8 % of its requests dropped, refused with HTTP 503 or their shell gone)",
              markup=False)
    if scenario == Scenario.CANARY_FAILS:
        scenes.refuse_step(canary, "loopback_config")
        out.print(f"  {canary.name}: the canary; Windows refuses its loopback_config step", markup=False)
    return str(canary.name)


def _demo_check(ctx: typer.Context, inventory: Path, runs_dir: Path) -> bool:
    """`dsrprep check` of the demo fleet, as a table; whether every host is compliant."""
    out.rule("dsrprep check: is every host still in DSR shape?")
    log, verdict = _drift_check(ctx, inventory, None, DEFAULT_FORKS, Access(), runs_dir)
    _print_check(log, verdict)
    return verdict.exit_code() == ExitCode.OK


def main() -> None:
    STOP.install()  # SIGTERM and SIGHUP stop a run as Ctrl-C does; later requests never cut its record short
    app()
