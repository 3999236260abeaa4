"""WinRM message encryption on the server side of the lab: the MS-WSMV multipart framing around
pyspnego's sealing of one message per part.

A sealed body is `multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted";
boundary="Encrypted Boundary"` with, per message, a part naming the original type and length and an
octet-stream part holding a little-endian uint32 signature length, the signature and the sealed
bytes. The lab answers sealed only what came sealed, in the same protocol; the framing is the same
for an NTLM and a Kerberos key.
"""

from __future__ import annotations

import re
import struct
from typing import Any

SPNEGO_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
# What a client that authenticated with the `Kerberos` HTTP scheme (not `Negotiate`) names instead
# (MS-WSMV 2.2.9.1; pypsrp's WSMan picks it when the server's 401 offered Kerberos and not Negotiate).
KERBEROS_PROTOCOL = "application/HTTP-Kerberos-session-encrypted"
BOUNDARY = "Encrypted Boundary"
_LENGTH = re.compile(rb"Length=(\d+)")
_OCTET_HEADER = b"\tContent-Type: application/octet-stream\r\n"


class SealingError(ValueError):
    """A sealed body that does not follow the framing, or whose length does not match."""


def seal(context: Any, protocol: str, message: bytes) -> tuple[str, bytes]:
    """(content type, body) for `message` sealed with the connection's security context."""
    signature, sealed, padding = context.wrap_winrm(message)
    head = (
        f"--{BOUNDARY}\r\n"
        f"\tContent-Type: {protocol}\r\n"
        f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message) + padding}\r\n"
        f"--{BOUNDARY}\r\n"
    ).encode()
    body = head + _OCTET_HEADER + struct.pack("<I", len(signature)) + signature + sealed
    body += f"--{BOUNDARY}--\r\n".encode()
    content_type = f'multipart/encrypted;protocol="{protocol}";boundary="{BOUNDARY}"'
    return content_type, body


def unseal(context: Any, body: bytes, boundary: str) -> bytes:
    """The plain message(s) of a sealed request body, joined."""
    parts = [p for p in re.split(rb"--\s*" + re.escape(boundary.encode()) + rb"(?:--)?\r\n", body) if p]
    if len(parts) % 2:
        raise SealingError("a sealed body needs a header part and a data part per message")
    plain = b""
    for header, data in zip(parts[0::2], parts[1::2], strict=True):
        length = _LENGTH.search(header)
        if length is None:
            raise SealingError("the header part names no original length")
        if data.startswith(_OCTET_HEADER):
            data = data[len(_OCTET_HEADER):]
        if len(data) < 4:
            raise SealingError("the data part is too short")
        size = struct.unpack("<I", data[:4])[0]
        message = context.unwrap_winrm(data[4:4 + size], data[4 + size:])
        if len(message) != int(length.group(1)):
            raise SealingError(f"unsealed {len(message)} bytes, the header says {int(length.group(1))}")
        plain += message
    return plain
