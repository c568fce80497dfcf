"""What a client tells its user when the daemon's access rules refuse a request
(reason code -42, :data:`pyflom.rc.NOT_ALLOWED`): what was refused, as whom, and what to
do.  Loaded only then."""

from __future__ import annotations

import os
import socket
from typing import Any

from .settings import Settings, user_label


def _local_socket(channel: Any) -> Any:
    """The connection's socket: a :class:`pyflom.transport.Channel`'s, or an asyncio
    channel's transport socket."""
    sock = getattr(channel, "sock", None)
    if sock is None:
        writer = getattr(channel, "writer", None)
        sock = None if writer is None else writer.get_extra_info("socket")
    return sock


def _certificate_cn(path: str | None) -> str | None:
    if not path:
        return None
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        with open(path, "rb") as file:
            cert = x509.load_pem_x509_certificate(file.read())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (OSError, ValueError, ImportError):
        return None
    return str(names[0].value) if names else None


def identity(channel: Any, settings: Settings) -> str:
    """Who the daemon sees on ``channel``, as its access rules name peers: the user and
    group on a UNIX socket, the IP address over TCP, the certificate's CN over TLS."""
    parts = []
    sock = _local_socket(channel)
    family = None if sock is None else sock.family
    if family == socket.AF_UNIX:
        parts.append(f"{user_label(os.geteuid())}, gid {os.getegid()}")
    elif sock is not None:
        try:
            parts.append(f"address {sock.getsockname()[0]}")
        except OSError:
            pass
    if getattr(channel, "tls", False):
        cn = _certificate_cn(settings.tls_certificate)
        if cn is not None:
            parts.append(f"certificate CN '{cn}'")
    return " with ".join(parts) or "this client"


RIGHT_OF = {"lock": "lock", "read": "status", "stop": "stop"}


def refusal(what: str, channel: Any, settings: Settings) -> str:
    """``not allowed to <what> as <who>: ...`` with the fix; ``what`` begins with the
    verb: ``lock 'db'``, ``read the status``, ``stop the daemon``."""
    right = RIGHT_OF[what.split(" ", 1)[0]]
    return (
        f"not allowed to {what} as {identity(channel, settings)}: the daemon's access "
        f"rules do not grant it; ask whoever runs the daemon for a '{right}' rule "
        "that names you in its rules file (--access-rules, [Daemon]/AccessRules; "
        "docs/access.md)"
    )
