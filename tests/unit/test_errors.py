"""One hierarchy of error classes; what is retryable and recoverable is declared on the classes only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import orchestrator.capture
import orchestrator.facts
import orchestrator.inventory
import orchestrator.oscaps
import orchestrator.steps
import orchestrator.templates
from orchestrator import errors
from orchestrator.errors import DsrError, ErrorInfo, InternalError, TransportError
from orchestrator.retry import RetryPolicy

ROOT = Path(__file__).resolve().parents[2]


def every_error_class() -> list[type[DsrError]]:
    found: list[type[DsrError]] = []
    todo: list[type[DsrError]] = [DsrError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def test_the_error_classes_defined_elsewhere_are_in_the_hierarchy() -> None:
    names = {cls.__name__ for cls in every_error_class()}
    assert {"FactsError", "InventoryError", "TemplateError", "UnknownFamily", "UnknownStep"} <= names
    for module in (orchestrator.capture, orchestrator.facts, orchestrator.inventory, orchestrator.templates,
                   orchestrator.oscaps, orchestrator.steps):
        assert module.__name__  # imported so that their classes are registered above


def test_every_class_with_an_error_class_name_is_a_dsr_error() -> None:
    """Outside the lab, a class that names its `error_class` derives from DsrError."""
    sources = [p for p in (ROOT / "orchestrator").rglob("*.py") if "lab" not in p.relative_to(ROOT).parts]
    known = {cls.__name__ for cls in every_error_class()}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "error_class" for t in s.targets)
                for s in node.body
            ):
                assert node.name in known, f"{path}: {node.name} is not a DsrError"


def test_error_class_names_are_the_class_names() -> None:
    for cls in every_error_class():
        if cls is not DsrError:
            assert cls.error_class == cls.__name__, cls


def test_retryable_and_recoverable_are_declared_on_the_classes() -> None:
    retryable = {cls.__name__ for cls in every_error_class() if cls.retryable}
    recoverable = {cls.__name__ for cls in every_error_class() if cls.recoverable}
    assert retryable == {"Unreachable", "ConnectionLost", "Timeout", "RemoteFault"}
    assert recoverable == {"Unreachable", "ConnectionLost", "Timeout", "RemoteFault"}
    assert all(issubclass(getattr(errors, name), TransportError) for name in retryable)


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda c: c.__name__)
def test_the_retry_policy_reads_the_class_attribute(cls: type[DsrError]) -> None:
    exc = cls.__new__(cls)  # some take more than a message; the decision must not look at it anyway
    assert RetryPolicy().should_retry(exc) is cls.retryable


def test_a_new_class_decides_its_own_retries() -> None:
    class Flaky(DsrError):
        retryable = True

    assert RetryPolicy().should_retry(Flaky("again"))
    assert Flaky.error_class == "Flaky"
    assert not RetryPolicy().should_retry(ValueError("a bug"))


def test_retry_module_lists_no_error_names() -> None:
    text = (ROOT / "orchestrator" / "retry.py").read_text()
    assert "RETRYABLE" not in text and '"Unreachable"' not in text


def test_an_unexpected_exception_becomes_one_line_of_internal_error() -> None:
    info = ErrorInfo.of(InternalError.wrapping(KeyError("certificate_pem")))
    assert info == ErrorInfo("InternalError", "KeyError: 'certificate_pem'")
