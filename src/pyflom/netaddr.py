"""Network addresses and TCP socket options shared by clients and the daemon.

Only ``socket`` is imported: the CLI loads this module for ``-a``/``-A`` runs.
"""

from __future__ import annotations

import socket

from . import rc as _rc
from .errors import ConnectionFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

WILDCARDS = ("", "0.0.0.0", "::", "::0", "0:0:0:0:0:0:0:0")


def parse_host_port(text: str, where: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` (``default_port``, when given) or ``[IPV6]:PORT`` as
    ``(host, port)``.  Raises ValueError naming ``where`` and what to write instead."""
    item = text.strip()
    example = f":{default_port or 'PORT'}"
    if item.startswith("["):
        close = item.find("]")
        if close < 0:
            raise ValueError(f"{where}: '{item}' opens '[' without ']': write [IPV6]:PORT")
        host, rest = item[1:close], item[close + 1 :]
        if ":" not in host:
            raise ValueError(f"{where}: '{item}': brackets are for IPv6 addresses only")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{where}: '{item}': only ':PORT' may follow ']'")
        port_text = rest[1:] if rest else None
    elif item.count(":") > 1:
        forms = f"[{item}]{example}" if default_port is None else f"[{item}] or [{item}]{example}"
        raise ValueError(
            f"{where}: '{item}' looks like an IPv6 address: write it in brackets, as {forms}"
        )
    else:
        host, colon, port_text_or_empty = item.partition(":")
        port_text = port_text_or_empty if colon else None
    if not host:
        raise ValueError(f"{where}: '{item}' has no host name")
    if any(ch.isspace() or ch in "/?#@" for ch in host):
        raise ValueError(f"{where}: '{item}' is not a host name or address")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{where}: '{item}' has no port: write {item}{example}")
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{where}: '{item}' has no valid port (a number from 1 to 65535)")
    return host, int(port_text)


def interface_index(name: str | None) -> int:
    """The index of network interface ``name`` (0 when unset or unknown, as FLoM)."""
    if not name:
        return 0
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def with_scope(sockaddr: tuple, scope: int) -> tuple:  # type: ignore[type-arg]
    """An IPv6 ``sockaddr`` with ``scope`` as scope id when it has none yet."""
    if len(sockaddr) == 4 and scope and not sockaddr[3]:
        return (sockaddr[0], sockaddr[1], sockaddr[2], scope)
    return sockaddr


def resolve(
    host: str | None, port: int, kind: int, *, interface: str | None = None, passive: bool = False
) -> list[tuple[int, tuple]]:  # type: ignore[type-arg]
    """``getaddrinfo`` as FLoM uses it: IPv6 only when an interface is named (``-n``).

    Returns ``(family, sockaddr)`` pairs; IPv6 addresses without a scope get the
    interface's.  Raises :class:`ConnectionFailed` (rc -102) naming the host otherwise.
    """
    try:
        infos = socket.getaddrinfo(*address_query(host, port, kind, interface, passive))
    except (socket.gaierror, UnicodeError) as exc:
        raise unresolved(host, exc) from None
    return resolved(infos, interface)


def address_query(
    host: str | None, port: int, kind: int, interface: str | None = None, passive: bool = False
) -> tuple[str | None, int, int, int, int, int]:
    """The ``getaddrinfo`` arguments of :func:`resolve`."""
    family = socket.AF_INET6 if interface else socket.AF_UNSPEC
    return host or None, port, family, kind, 0, socket.AI_PASSIVE if passive else 0


def unresolved(host: str | None, exc: BaseException) -> ConnectionFailed:
    """The error for a host that ``getaddrinfo`` could not resolve."""
    return ConnectionFailed(
        f"cannot resolve '{host}': {getattr(exc, 'strerror', None) or exc}",
        rc=_rc.SYSCALL_ERRORS["getaddrinfo"],
    )


def resolved(
    infos: Sequence[tuple[Any, Any, Any, Any, Any]],
    interface: str | None,
) -> list[tuple[int, tuple]]:  # type: ignore[type-arg]
    """``(family, sockaddr)`` pairs of ``getaddrinfo``'s answer, with the interface's scope
    for IPv6 addresses without one."""
    scope = interface_index(interface)
    return [(info[0], with_scope(info[4], scope)) for info in infos]


def show(sockaddr: tuple) -> str:  # type: ignore[type-arg]
    """``host:port`` or ``[host%scope]:port`` for messages."""
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tune_tcp(sock: socket.socket, keepalive_s: tuple[int, int, int] | None) -> None:
    """TCP_NODELAY, and keepalive (idle, interval, probes in seconds) on IPv4 and IPv6.

    ``TCP_USER_TIMEOUT`` is set to the same window, so a peer that vanishes while data is
    in flight is dropped as soon as an idle one would be (not after ~15 min of retries).
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if keepalive_s is None:
        return
    idle, interval, probes = keepalive_s
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        (socket.TCP_KEEPIDLE, idle),
        (socket.TCP_KEEPINTVL, interval),
        (socket.TCP_KEEPCNT, probes),
        (socket.TCP_USER_TIMEOUT, (idle + interval * probes) * 1000),
    ):
        if value > 0:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def connect_tcp(
    host: str, port: int, interface: str | None, keepalive_s: tuple[int, int, int] | None
) -> socket.socket:
    """Connect to the first address of ``host`` that accepts; raise the last ``OSError``."""
    return connect_first(resolve(host, port, socket.SOCK_STREAM, interface=interface), keepalive_s)


def connect_first(
    candidates: list[tuple[int, tuple]],  # type: ignore[type-arg]
    keepalive_s: tuple[int, int, int] | None,
) -> socket.socket:
    """Connect to the first ``(family, sockaddr)`` that accepts; raise the last ``OSError``."""
    error: OSError = ConnectionRefusedError(_rc.CONNECTION_REFUSED, "no address to connect to")
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        tune_tcp(sock, keepalive_s)
        return sock
    raise error
