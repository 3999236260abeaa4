"""Shared fixtures for the template tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.templates import TemplateCatalog

WriteCatalog = Callable[[dict[str, str]], TemplateCatalog]


@pytest.fixture
def write_catalog(tmp_path: Path) -> WriteCatalog:
    """Writes files (path below the root -> text) under tmp_path and loads them as a catalog."""

    def write(files: dict[str, str]) -> TemplateCatalog:
        for rel, text in files.items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return TemplateCatalog(tmp_path)

    return write
