"""Folders and files only their owner can read, whatever the umask: what dsrprep writes about hosts
(run logs hold each host's full facts; captures, lock records) is created 0700 (folders) and 0600
(files). The modes are set explicitly after creating, so neither a permissive umask (0o000) nor a
strict one changes them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, BinaryIO, cast

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_dirs(path: Path) -> None:
    """`path` and every missing parent, each created 0700; folders that exist are left as they are."""
    missing: list[Path] = []
    here = path
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs, left as it is
        os.chmod(folder, DIR_MODE)


def private_dir(path: Path) -> None:
    """A folder dsrprep owns (a run's folder): made as `make_dirs` does, and 0700 if it existed."""
    make_dirs(path)
    os.chmod(path, DIR_MODE)


def open_fd(path: Path, flags: int) -> int:
    """`os.open(path, flags)` of a file that is 0600 once open (a file that existed is made so too)."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_text(path: Path, mode: str) -> IO[str]:
    """A text file opened for writing ("w") or appending ("a"), 0600, UTF-8."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    return os.fdopen(open_fd(path, flags), mode, encoding="utf-8")


def open_binary(path: Path, mode: str) -> BinaryIO:
    """A binary file opened as `open(path, "a+b")` would, 0600."""
    if mode != "a+b":
        raise ValueError(f"unsupported mode {mode!r}")
    return cast(BinaryIO, os.fdopen(open_fd(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), mode))


def write_text(path: Path, text: str) -> None:
    """`path.write_text(text)`, the file 0600."""
    with open_text(path, "w") as fh:
        fh.write(text)


def replace_text(path: Path, text: str, *, mode: int = FILE_MODE) -> None:
    """Write `text` to `path` atomically: a temporary file of a unique name in the same folder, synced,
    then renamed over `path` (a reader sees the old file or the new one, never a part); the folder is
    synced too. `mode`: 0600 unless the file is meant for other users (metrics a collector reads)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
