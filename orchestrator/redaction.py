"""Passwords kept out of the client's debug log (`dsrprep --verbose`).

The run logs redact secret-named keys (orchestrator/rolloutlog.py), and dsrprep's own messages never
quote a password; the debug log of the libraries under the transport (pypsrp, pyspnego, requests,
urllib3) is text dsrprep does not write itself, so every line of it is scrubbed of the passwords
this process knows (the hosts' passwords and the proxies' ones) before it is shown.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Iterable

MASK = "***"
# The loggers `--verbose` shows: the transport's libraries.
CLIENT_LOGGERS = ("pypsrp", "spnego", "requests", "urllib3")


class Secrets:
    """The passwords this process knows; `scrub` masks each of them in a text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        with self._lock:
            self._values.update(v for v in values if v)

    def add_url(self, url: str | None) -> None:
        """The password a URL carries (http://user:password@proxy:3128), if any."""
        try:
            password = urllib.parse.urlsplit(url).password if url else None
        except ValueError:
            return
        # As written (percent-encoded) and as sent (decoded).
        self.add([password, urllib.parse.unquote(password) if password else None])

    def scrub(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)  # a password inside a longer one
        for value in values:
            text = text.replace(value, MASK)
        return text


class ScrubbingFormatter(logging.Formatter):
    """A log formatter whose every line (its exception text too) has the known passwords masked."""

    def __init__(self, secrets: Secrets, fmt: str) -> None:
        super().__init__(fmt)
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return self._secrets.scrub(super().format(record))


def show_client_log(secrets: Secrets, handler: logging.Handler | None = None) -> None:
    """Send the transport libraries' debug log to stderr (or `handler`), scrubbed by `secrets`."""
    handler = handler or logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter(secrets, "%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
