"""The --verbose log of the transport's libraries is scrubbed of every password the process knows."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from orchestrator.redaction import CLIENT_LOGGERS, MASK, Secrets, show_client_log


@pytest.fixture
def client_log() -> Iterator[tuple[Secrets, io.StringIO]]:
    secrets, stream = Secrets(), io.StringIO()
    handler = logging.StreamHandler(stream)
    show_client_log(secrets, handler)
    try:
        yield secrets, stream
    finally:
        for name in CLIENT_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_known_passwords_are_masked_in_messages_arguments_and_tracebacks(
        client_log: tuple[Secrets, io.StringIO]) -> None:
    secrets, stream = client_log
    secrets.add(["S3cret!pw", None, ""])
    secrets.add_url("http://svc:Pr0xy%23pw@proxy.corp:3128")
    log = logging.getLogger("pypsrp.wsman")
    log.debug("auth with %s and S3cret!pw", "S3cret!pw")
    log.debug("proxy http://svc:Pr0xy%23pw@proxy.corp:3128, decoded Pr0xy#pw")
    try:
        raise ValueError("bad password S3cret!pw")
    except ValueError:
        logging.getLogger("urllib3.connectionpool").debug("failed", exc_info=True)
    text = stream.getvalue()
    assert "S3cret!pw" not in text and "Pr0xy" not in text
    assert text.count(MASK) == 6
    assert "auth with" in text and "ValueError: bad password" in text  # the rest of each line is kept


def test_a_password_inside_a_longer_one_leaves_nothing_of_either() -> None:
    secrets = Secrets()
    secrets.add(["abc", "abcdef"])
    assert secrets.scrub("abcdef abc") == f"{MASK} {MASK}"
