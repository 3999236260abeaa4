"""Lab host models run without a network, for the runner's unit tests: an inventory host for one
model, and a session that runs each template straight on the model and can lose its connection."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConnectionLost, ScriptError
from orchestrator.inventory import Host, load_inventory
from orchestrator.lab.build import build_fleet
from orchestrator.lab.fleet import LabFleet, template_of
from orchestrator.lab.host import WindowsHost
from orchestrator.transport import RunResult


class ModelSession:
    """One session to `model`; the connection is lost after a run of a step in `lose` (the change
    made) and before a run of a step in `drop` (nothing done), as often as they count it, across
    sessions. `degrade`: loopback_config answers at every run that Windows fell back, and changes
    nothing. `ran` counts the steps run."""

    def __init__(self, model: WindowsHost, lose: Counter[str] | None = None, drop: Counter[str] | None = None,
                 degrade: bool = False, ran: Counter[str] | None = None) -> None:
        self.model, self.degrade = model, degrade
        self.lose = lose if lose is not None else Counter()
        self.drop = drop if drop is not None else Counter()
        self.ran = ran if ran is not None else Counter()  # every step run (facts included), counted

    def open(self) -> None:
        pass

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        identified = template_of(script)
        assert identified is not None
        step, variant = identified
        self.ran[step] += 1
        if self.degrade and step == "loopback_config":
            # Windows answers that it fell back, and nothing it did shows in the facts.
            return RunResult(output=[{"changed": True, "degraded": True, "addresses": []}])
        if self.drop[step] > 0:
            self.drop[step] -= 1
            raise ConnectionLost("connection lost: Connection aborted")
        result = self.model.run(step, dict(parameters), variant=variant)
        if result.failed is not None:
            raise ScriptError(result.failed)
        if self.lose[step] > 0:
            self.lose[step] -= 1
            raise ConnectionLost("connection lost: Connection aborted")
        return RunResult(output=list(result.output), errors=list(result.errors))

    def close(self) -> list[str]:
        return []


def model_host(tmp_path: Path, profile: str = "2016", seed: int = 4) -> tuple[WindowsHost, Host]:
    """One lab host model of `profile` and the inventory host that names it."""
    (model,) = build_fleet(1, seed=seed, profile=profile)
    document = LabFleet([model]).inventory()
    for group in document["all"]["children"].values():
        for entry in group["hosts"].values():
            entry["ansible_port"] = 5985
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return model, load_inventory(path).hosts[0]
