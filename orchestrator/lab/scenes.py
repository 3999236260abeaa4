"""How a lab fleet is made to look like a real one before a run: hosts an admin began to configure
by hand, a flaky host, a host whose step Windows refuses. Used by `dsrprep demo` and by tests.

Everything here works on the host models directly (no network): what a host then shows to dsrprep
is what Windows would show after the same commands (the models run the same templates).
"""

from __future__ import annotations

from typing import Any

from orchestrator.desired import Desired
from orchestrator.facts import parse_facts
from orchestrator.lab.common import RandomFaults, ScriptResult
from orchestrator.lab.fleet import LabHost, template_of
from orchestrator.plan import plan
from orchestrator.steps import http_listen, preflight
from orchestrator.templates import render

# A flaky host's faults: the kinds a busy or badly-networked Windows host shows without being down.
FLAKY_KINDS = ("drop", "http_503", "shell_gone")


def configure_partly(handle: LabHost, desired: Desired, steps: int) -> list[str]:
    """Run the first `steps` steps a rollout would run on this host, straight on its model, as an admin
    who began by hand and stopped; the steps run, in order. A step that restarts WinRM (http_listen)
    is never among them: the host is left answering."""
    done: list[str] = []
    for _ in range(steps):
        facts = parse_facts(_run(handle, "facts", {}, None).output[0])
        actions = [a for a in plan(facts, desired).actions if a.step != preflight.NAME]
        if not actions or actions[0].step == http_listen.NAME:
            break
        script = render(actions[0].step, facts.os.family, actions[0].params)
        known = template_of(script.text)
        _run(handle, actions[0].step, dict(script.parameters), known[1] if known else None)
        done.append(actions[0].step)
    return done


def _run(handle: LabHost, step: str, params: dict[str, Any], variant: str | None) -> ScriptResult:
    result = handle.model.run(step, params, variant=variant)
    if result.failed is not None:
        raise RuntimeError(f"{handle.name}: {step} failed on the lab model: {result.failed}")
    return result


def make_flaky(handle: LabHost, rate: float, seed: int) -> None:
    """Fault `rate` of the host's requests: dropped connections, HTTP 503, shells gone."""
    handle.faults.random = RandomFaults(rate, seed=seed, kinds=FLAKY_KINDS)


def refuse_step(handle: LabHost, step: str) -> None:
    """Make this one host's `step` throw, as Windows refusing it would (the other hosts answer as usual)."""
    answer = handle.model.run

    def run(name: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
        if name == step:
            return ScriptResult(failed=f"lab: {step} refused on purpose")
        return answer(name, params, variant=variant)

    handle.model.run = run  # type: ignore[method-assign,assignment]  # this host object only, not its class
