"""The dsrprep command line: the only code that reads argv and the environment, prints, prompts and exits.

Everything it calls returns data; this module turns that data into tables, JSON and exit codes.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.errors import ErrorInfo
from orchestrator.inventory import Inventory, InventoryError, load_inventory
from orchestrator.report import facts_row
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import DEFAULT_FORKS, HostFacts, gather_fleet_facts
from orchestrator.transport import psrp_session

EXIT_OK = 0
EXIT_HOSTS_FAILED = 1
EXIT_BAD_INPUT = 2
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
    err.print(f"[bold red]error:[/] {message}", markup=True)
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
    log = RunLog.create(runs_dir)
    log.write_run({"command": "facts", "inventory": str(inventory), "limit": limit, "forks": forks,
                   "hosts": [h.name for h in hosts], "state": "running"})
    try:
        outcomes = gather_fleet_facts(hosts, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                      forks=forks)
    except KeyboardInterrupt:
        log.write_run({"command": "facts", "inventory": str(inventory), "state": "interrupted"})
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        log.close()
    summary = _summary(outcomes)
    log.write_run({"command": "facts", "inventory": str(inventory), "limit": limit, "forks": forks,
                   "hosts": [h.name for h in hosts], "state": "finished", "summary": summary})
    if as_json:
        doc = {"run_id": log.run_id, "run_dir": str(log.path), "summary": summary,
               "hosts": {o.host: o.to_dict() for o in outcomes}}
        typer.echo(json.dumps(doc, indent=2, default=str))
    else:
        _print_facts(inv, outcomes, log)
    raise typer.Exit(EXIT_OK if summary["ok"] == len(outcomes) else EXIT_HOSTS_FAILED)


def _summary(outcomes: list[HostFacts]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "unreachable": 0}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def _print_facts(inv: Inventory, outcomes: list[HostFacts], log: RunLog) -> None:
    table = Table(title=f"facts, run {log.run_id}", title_justify="left")
    columns = ("host", "status", "OS", "PowerShell", "NIC", "loopback", "weak host", "IIS")
    for column in columns:
        table.add_column(column)
    for outcome in outcomes:
        if outcome.facts is None:
            error = outcome.error or ErrorInfo("Error", "unknown")
            status = f"[red]{outcome.status}[/]"
            table.add_row(outcome.host, status, f"{error.error_class}: {error.message}", "", "", "", "", "")
            continue
        row = facts_row(inv.host(outcome.host), outcome.facts)
        table.add_row(outcome.host, "[green]ok[/]", *(row[c] for c in columns[2:]))
    out.print(table)
    summary = _summary(outcomes)
    out.print(", ".join(f"{k} {v}" for k, v in summary.items()) + f"; log: {log.path}")


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
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fleet:
        fleet.write_inventory(inventory_out)
        out.print(f"lab fleet: {len(fleet.hosts)} hosts ({profile}, seed {seed}); inventory: {inventory_out}")
        for handle in fleet.hosts:
            out.print(f"  {handle.name:<8} {handle.model.os_family:<7} {handle.url}")
        out.print("Ctrl-C stops the fleet.")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    out.print("lab fleet stopped.")


@app.command()
def demo(
    hosts: Annotated[int, typer.Option("--hosts", "-n", min=1, max=100, help="How many lab hosts.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the lab fleet.")] = 7,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Start a mixed-OS lab fleet, gather facts from every host through real PSRP, and stop the fleet."""
    from orchestrator.lab.fleet import LabFleet

    fleet = LabFleet.build(hosts, seed=seed, profile="mixed", port=0)
    with fleet, tempfile.TemporaryDirectory(prefix="dsrprep-demo-") as tmp:
        inventory_path = Path(tmp) / "lab.yml"
        fleet.write_inventory(inventory_path)
        out.print(f"[bold]lab fleet[/]: {len(fleet.hosts)} simulated Windows servers on 127.0.0.0/8, "
                  f"NTLM + message encryption")
        inv = _load(inventory_path, ask_pass=False)
        log = RunLog.create(runs_dir)
        log.write_run({"command": "demo", "hosts": [h.name for h in inv.hosts], "state": "running"})
        try:
            outcomes = gather_fleet_facts(list(inv.hosts), session_factory=psrp_session, log=log,
                                          policy=RetryPolicy())
        finally:
            log.close()
        log.write_run({"command": "demo", "hosts": [h.name for h in inv.hosts], "state": "finished",
                       "summary": _summary(outcomes)})
        _print_facts(inv, outcomes, log)
    failed = [o for o in outcomes if o.status != "ok"]
    raise typer.Exit(EXIT_HOSTS_FAILED if failed else EXIT_OK)


def main() -> None:
    app()
