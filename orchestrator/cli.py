"""The dsrprep command line: the only code that reads argv and the environment, prints, prompts and exits.

Everything it calls returns data; this module turns that data into tables, JSON and exit codes.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.errors import ErrorInfo
from orchestrator.inventory import Host, Inventory, InventoryError, load_inventory
from orchestrator.report import facts_row
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog, read_run, recorded_rollout
from orchestrator.runner import (
    DEFAULT_FORKS,
    FleetInterrupted,
    HostFacts,
    HostOutcome,
    StepResult,
    gather_fleet_facts,
    rollback_fleet,
    rollout_fleet,
    rollout_host,
)
from orchestrator.templates import render as render_template
from orchestrator.transport import psrp_session

EXIT_OK = 0
EXIT_HOSTS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DECLINED = 4
EXIT_INTERRUPTED = 130

PASSWORD_ENV = "DSRPREP_PASSWORD"

app = typer.Typer(
    name="dsrprep",
    help="Prepare fleets of Windows servers for Direct Server Return over PowerShell Remoting.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold passwords
    add_completion=False,
)
inventory_app = typer.Typer(help="Inspect inventories.", no_args_is_help=True)
lab_app = typer.Typer(help="Run the lab fleet of simulated Windows servers.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
app.add_typer(lab_app, name="lab")

out = Console(highlight=False)
if not out.is_terminal:
    # Piped or captured output gets wide tables rather than rich's 80-column default.
    out = Console(highlight=False, width=160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

InventoryArg = Annotated[Path, typer.Argument(help="Inventory file (Ansible YAML inventory shape).")]
LimitOpt = Annotated[
    str | None,
    typer.Option("--limit", "-l", help="Hosts to act on: names, groups or globs; '!x' excludes, '&g' intersects."),
]
AskPassOpt = Annotated[
    bool, typer.Option("--ask-pass", "-k", help=f"Prompt for the password (else ${PASSWORD_ENV}, else the inventory).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of a table.")]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run logs are written.")]
ForksOpt = Annotated[int, typer.Option("--forks", "-f", min=1, max=512, help="Hosts worked on at once.")]
InventoryOutOpt = Annotated[Path, typer.Option("--inventory-out", "-o", help="Write the matching inventory here.")]


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(code)


def _default_password(ask_pass: bool) -> str | None:
    if ask_pass:
        value: str = typer.prompt("Password", hide_input=True)
        return value
    return os.environ.get(PASSWORD_ENV) or None


def _load(path: Path, ask_pass: bool, *, require_secrets: bool = True) -> Inventory:
    try:
        return load_inventory(path, default_password=_default_password(ask_pass), env=os.environ,
                              require_secrets=require_secrets)
    except InventoryError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


@inventory_app.command("check")
def inventory_check(inventory: InventoryArg, as_json: JsonOpt = False) -> None:
    """Validate an inventory and show its hosts, groups and resolved settings (never a password)."""
    inv = _load(inventory, ask_pass=False, require_secrets=False)
    described = inv.describe()
    if as_json:
        groups = {name: list(members) for name, members in inv.groups.items()}
        typer.echo(json.dumps({"inventory": str(inventory), "hosts": described, "groups": groups}, indent=2))
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


def _password_cell(item: dict[str, Any]) -> str:
    source = _cell(item["password_source"]) if item["password_source"] else "none"
    return source if item["password"] == "set" else f"[red]{source}[/]"


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


def _select(inv: Inventory, limit: str | None) -> list[Any]:
    try:
        return list(inv.select(limit))
    except InventoryError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


class _Outcome(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def status(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


OutcomeT = TypeVar("OutcomeT", bound=_Outcome)


def _execute(command: str, runs_dir: Path, record: dict[str, Any], hosts: list[Host],
             work: Callable[[RunLog], list[OutcomeT]]) -> tuple[RunLog, list[OutcomeT], dict[str, int]]:
    """Run `work` under a new run directory; run.json says what ran, with what, and how it ended."""
    log = RunLog.create(runs_dir)
    base = {"command": command, **record, "hosts": [h.name for h in hosts],
            "started": datetime.now(UTC).isoformat(timespec="milliseconds")}
    log.write_run({**base, "state": "running"})
    try:
        outcomes = work(log)
    except FleetInterrupted as exc:
        interrupted: list[OutcomeT] = exc.outcomes
        log.close()
        log.write_run({**base, "state": "interrupted", "summary": _summary(interrupted),
                       "outcomes": {o.host: o.status for o in interrupted}})
        err.print(f"interrupted: {_summary_text(interrupted)}; log: {log.path}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        log.write_run({**base, "state": "interrupted"})
        err.print(f"interrupted; log: {log.path}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BaseException:
        log.write_run({**base, "state": "crashed"})
        raise
    finally:
        log.close()
    summary = _summary(outcomes)
    if sorted(o.host for o in outcomes) != sorted(h.name for h in hosts):
        raise RuntimeError(f"{command}: outcomes do not cover every planned host")  # a bug, never bad input
    log.write_run({**base, "state": "finished", "summary": summary,
                   "outcomes": {o.host: o.status for o in outcomes}})
    return log, outcomes, summary


def _summary_text(outcomes: Sequence[_Outcome]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(_summary(outcomes).items()))


def _summary(outcomes: Sequence[_Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def _json_doc(log: RunLog, summary: dict[str, int], outcomes: Sequence[_Outcome]) -> str:
    doc = {"run_id": log.run_id, "run_dir": str(log.path), "summary": summary,
           "hosts": {o.host: o.to_dict() for o in outcomes}}
    return json.dumps(doc, indent=2, default=str)


def _exit_for(outcomes: Sequence[_Outcome], good: frozenset[str]) -> typer.Exit:
    return typer.Exit(EXIT_OK if all(o.status in good for o in outcomes) else EXIT_HOSTS_FAILED)


def _record(inventory: Path, limit: str | None, forks: int) -> dict[str, Any]:
    return {"inventory": str(inventory.resolve()), "limit": limit, "forks": forks}


@app.command()
def facts(
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Gather facts from every selected host in parallel and show them."""
    inv = _load(inventory, ask_pass)
    hosts = _select(inv, limit)
    log, outcomes, summary = _execute(
        "facts", runs_dir, _record(inventory, limit, forks), hosts,
        lambda log: gather_fleet_facts(hosts, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                       forks=forks))
    if as_json:
        typer.echo(_json_doc(log, summary, outcomes))
    else:
        _print_facts(inv, outcomes, log)
    raise _exit_for(outcomes, frozenset({"ok"}))


def _print_facts(inv: Inventory, outcomes: list[HostFacts], log: RunLog) -> None:
    table = Table(title=f"facts, run {log.run_id}", title_justify="left")
    columns = ("host", "status", "OS", "PowerShell", "NIC", "loopback", "weak host", "IIS")
    for column in columns:
        table.add_column(column)
    for outcome in outcomes:
        if outcome.facts is None:
            error = outcome.error or ErrorInfo("Error", "unknown")
            table.add_row(outcome.host, f"[red]{outcome.status}[/]", escape(f"{error.error_class}: {error.message}"),
                          "", "", "", "", "")
            continue
        row = facts_row(inv.host(outcome.host), outcome.facts)
        table.add_row(outcome.host, "[green]ok[/]", *(row[c] for c in columns[2:]))
    out.print(table)
    _print_summary(outcomes, log)


def _print_summary(outcomes: Sequence[_Outcome], log: RunLog) -> None:
    out.print(f"{_summary_text(outcomes)}; log: {log.path}", markup=False)


_STATUS_STYLE = {"ok": "green", "changed": "yellow", "rolled_back": "cyan", "failed": "red",
                 "unreachable": "red", "compliant": "green", "changes": "yellow"}


def _styled(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def plan_status(outcome: HostOutcome) -> str:
    """What `plan` reports: compliant, changes, or why it could not tell."""
    if outcome.status != "ok":
        return outcome.status
    return "changes" if outcome.planned else "compliant"


@dataclass(frozen=True)
class _PlanView:
    """A dry-run outcome as `plan` shows it."""

    outcome: HostOutcome

    @property
    def host(self) -> str:
        return self.outcome.host

    @property
    def status(self) -> str:
        return plan_status(self.outcome)

    def to_dict(self) -> dict[str, Any]:
        data = self.outcome.to_dict()
        data["status"] = self.status
        data.pop("steps", None)
        return data


def _steps_cell(steps: Sequence[StepResult]) -> str:
    """Changed steps in order, repeats counted; failed attempts spelled out."""
    parts: list[str] = []
    for s in steps:
        if s.status == "failed":
            parts.append(f"[red]{s.step} failed[/] ({s.error.error_class if s.error else 'error'})")
        elif s.status == "changed":
            if parts and parts[-1].split(" x")[0] == s.step:
                count = int(parts[-1].split(" x")[1]) + 1 if " x" in parts[-1] else 2
                parts[-1] = f"{s.step} x{count}"
            else:
                parts.append(s.step)
    return ", ".join(parts) or "-"


def _plan_table(title: str, outcomes: Sequence[HostOutcome], *, dry_run: bool) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    for column in ("host", "status", "steps" if not dry_run else "would change"):
        table.add_column(column)
    for o in outcomes:
        status = plan_status(o) if dry_run else o.status
        if o.error is not None:
            detail = escape(f"{o.failed_step + ': ' if o.failed_step else ''}{o.error.error_class}: {o.error.message}")
        elif dry_run:
            detail = "\n".join(escape(f"{a.step}: {a.reason}") for a in o.planned if a.step != "preflight") or "-"
        else:
            detail = _steps_cell(o.steps)
        if o.warnings:
            detail += "\n" + "\n".join(f"[yellow]warning:[/] {escape(w)}" for w in o.warnings)
        table.add_row(o.host, _styled(status), detail)
    return table


@app.command("plan")
def plan_command(
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Show per host what a rollout would change and why. Changes nothing."""
    inv = _load(inventory, ask_pass)
    hosts = _select(inv, limit)
    log, outcomes, _ = _execute(
        "plan", runs_dir, _record(inventory, limit, forks), hosts,
        lambda log: rollout_fleet(hosts, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                  peers=_peers(inv), forks=forks, dry_run=True))
    views = [_PlanView(o) for o in outcomes]
    if as_json:
        typer.echo(_json_doc(log, _summary(views), views))
    else:
        out.print(_plan_table(f"plan, run {log.run_id}", outcomes, dry_run=True))
        _print_summary(views, log)
    raise _exit_for(views, frozenset({"compliant", "changes"}))


def _peers(inv: Inventory) -> dict[str, Host]:
    return {h.name: h for h in inv.hosts}


@app.command()
def render(
    inventory: InventoryArg,
    host: Annotated[str, typer.Option("--host", help="The host whose scripts to show.")],
    step: Annotated[str | None, typer.Option("--step", help="Only this step (default: every planned step).")] = None,
    ask_pass: AskPassOpt = False,
) -> None:
    """Print the exact scripts and bound parameters a rollout would send to one host."""
    inv = _load(inventory, ask_pass)
    try:
        target = inv.host(host)
    except InventoryError as exc:
        raise _fail(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="dsrprep-render-") as tmp:
        log = RunLog.create(Path(tmp))
        try:
            outcome = rollout_host(target, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                   peers=_peers(inv), dry_run=True)
        finally:
            log.close()
    if outcome.status != "ok":
        # A refused or unreachable host would be sent nothing, so there is nothing to show.
        error = outcome.error or ErrorInfo("Error", "unknown")
        raise _fail(f"{host}: {error.error_class}: {error.message}", EXIT_HOSTS_FAILED)
    family = outcome.os_family or "default"
    actions = [a for a in outcome.planned if step is None or a.step == step]
    if step is not None and not actions:
        planned = ", ".join(a.step for a in outcome.planned) or "nothing: the host is compliant"
        raise _fail(f"{host}: step {step!r} is not in its plan (planned: {planned})", EXIT_HOSTS_FAILED)
    if not actions:
        out.print(f"{host}: compliant, nothing to send")
        return
    for action in actions:
        script = render_template(action.step, family, action.params)
        out.rule(f"{host}: {action.step} ({script.template_path}, sha256 {script.sha256[:12]})")
        out.print(f"# reason: {action.reason}", markup=False)
        out.print("# parameters, bound over PSRP:", markup=False)
        typer.echo(json.dumps(dict(script.parameters), indent=2, default=str))
        typer.echo(script.text)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        accepted = typer.confirm(question, default=False)
    except typer.Abort:  # end of input at the prompt
        accepted = False
    if not accepted:
        err.print("declined; nothing changed.")
        raise typer.Exit(EXIT_DECLINED)


@app.command()
def rollout(
    inventory: InventoryArg,
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before changing hosts.")] = False,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Apply the DSR plan to every selected host, verify it, and log everything."""
    inv = _load(inventory, ask_pass)
    hosts = _select(inv, limit)
    _confirm(f"Prepare {len(hosts)} host(s) for DSR ({', '.join(h.name for h in hosts[:5])}"
             f"{', ...' if len(hosts) > 5 else ''})?", yes)
    log, outcomes, summary = _execute(
        "rollout", runs_dir, _record(inventory, limit, forks), hosts,
        lambda log: rollout_fleet(hosts, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                  peers=_peers(inv), forks=forks))
    if as_json:
        typer.echo(_json_doc(log, summary, outcomes))
    else:
        out.print(_plan_table(f"rollout, run {log.run_id}", outcomes, dry_run=False))
        _print_summary(outcomes, log)
    raise _exit_for(outcomes, frozenset({"ok", "changed"}))


@app.command()
def rollback(
    run_dir: Annotated[Path, typer.Argument(help="The run directory of the rollout to undo (runs/<run-id>).")],
    limit: LimitOpt = None,
    forks: ForksOpt = DEFAULT_FORKS,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before changing hosts.")] = False,
    as_json: JsonOpt = False,
    ask_pass: AskPassOpt = False,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Return hosts to the facts recorded before a rollout, for what dsrprep changed only."""
    try:
        record = read_run(run_dir)
    except (OSError, ValueError) as exc:
        raise _fail(f"{run_dir}: not a readable run directory ({exc})") from None
    if record.get("command") != "rollout":
        raise _fail(f"{run_dir}: run {record.get('run_id')} was a {record.get('command')!r}, not a rollout")
    inv = _load(Path(str(record.get("inventory"))), ask_pass)
    in_run = set(record.get("hosts") or [])
    hosts = [h for h in _select(inv, limit) if h.name in in_run]
    work: list[tuple[Host, dict[str, Any]]] = []
    for h in hosts:
        recorded = recorded_rollout(run_dir, h.name)
        if recorded.facts_before is None:
            err.print(f"{h.name}: the rollout took no facts from it (unreachable?): skipped", markup=False)
        elif not recorded.changed:
            err.print(f"{h.name}: the rollout changed nothing there: skipped", markup=False)
        else:
            work.append((h, recorded.facts_before))
    if not work:
        out.print(f"{run_dir}: no selected host was changed by that rollout: nothing to roll back", markup=False)
        raise typer.Exit(EXIT_OK)
    _confirm(f"Roll back {len(work)} host(s) to their state before run {record.get('run_id')}?", yes)
    selected = [h for h, _raw in work]
    log, outcomes, summary = _execute(
        "rollback", runs_dir, {**_record(Path(str(record.get("inventory"))), limit, forks),
                               "of_run": record.get("run_id")}, selected,
        lambda log: rollback_fleet(work, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                   forks=forks))
    if as_json:
        typer.echo(_json_doc(log, summary, outcomes))
    else:
        out.print(_plan_table(f"rollback of {record.get('run_id')}, run {log.run_id}", outcomes, dry_run=False))
        _print_summary(outcomes, log)
    raise _exit_for(outcomes, frozenset({"ok", "rolled_back"}))


@lab_app.command("serve")
def lab_serve(
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=1, max=250, help="How many hosts.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fleet's variation.")] = 1,
    profile: Annotated[str, typer.Option("--profile", help="mixed|2003|2008|2008r2|2012r2|2016|2019|2022")] = "mixed",
    inventory_out: InventoryOutOpt = Path("lab-inventory.yml"),
    port: Annotated[int, typer.Option("--port", help="Port for every host (0: a free port each).")] = 0,
) -> None:
    """Run a fleet of simulated Windows servers in the foreground until Ctrl-C."""
    from orchestrator.lab.fleet import FleetError, LabFleet

    try:
        fleet = LabFleet.build(hosts, seed=seed, profile=profile, port=port)
    except FleetError as exc:
        raise _fail(str(exc)) from None
    stop = threading.Event()
    # Both explicitly: a shell that starts this in the background hands it SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with fleet:
        fleet.write_inventory(inventory_out)
        out.print(f"lab fleet: {len(fleet.hosts)} hosts ({profile}, seed {seed}); inventory: {inventory_out}")
        for handle in fleet.hosts:
            out.print(f"  {handle.name:<8} {handle.model.os_family:<7} {handle.url}")
        out.print("Ctrl-C stops the fleet.")
        while not stop.wait(0.5):
            pass
    out.print("lab fleet stopped.")


@app.command()
def demo(
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=1, max=100, help="How many lab hosts.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the lab fleet.")] = 7,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Start a mixed-OS lab fleet, plan, roll out, show that a second rollout changes nothing, stop."""
    from orchestrator.lab.fleet import LabFleet

    fleet = LabFleet.build(hosts, seed=seed, profile="mixed", port=0)
    with fleet, tempfile.TemporaryDirectory(prefix="dsrprep-demo-") as tmp:
        inventory_path = Path(tmp) / "lab.yml"
        fleet.write_inventory(inventory_path)
        families = sorted({h.model.os_family for h in fleet.hosts})
        out.print(f"[bold]lab fleet[/]: {len(fleet.hosts)} simulated Windows servers on 127.0.0.0/8 "
                  f"({', '.join(families)}), real WinRM/PSRP with NTLM + message encryption")
        inv = _load(inventory_path, ask_pass=False)
        selected = list(inv.hosts)
        record = {"inventory": "lab fleet (demo)", "limit": None, "forks": DEFAULT_FORKS}

        def run(title: str, dry_run: bool) -> list[HostOutcome]:
            _log, outcomes, _ = _execute(
                "plan" if dry_run else "rollout", runs_dir, record, selected,
                lambda log: rollout_fleet(selected, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                          peers=_peers(inv), dry_run=dry_run))
            out.print(_plan_table(f"{title} (log: {_log.path})", outcomes, dry_run=dry_run))
            out.print(_summary_text([_PlanView(o) for o in outcomes] if dry_run else outcomes))
            return outcomes

        run("1. plan: what would change", dry_run=True)
        first = run("2. rollout", dry_run=False)
        second = run("3. rollout again: nothing left to change", dry_run=False)
    out.print("lab fleet stopped.")
    healthy = all(o.status in ("ok", "changed") for o in first) and all(o.status == "ok" for o in second)
    raise typer.Exit(EXIT_OK if healthy else EXIT_HOSTS_FAILED)


def main() -> None:
    app()
