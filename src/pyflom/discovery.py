"""Finding a daemon by UDP multicast (``-A GROUP -P PORT``), as FLoM 1.7.2 does.

The client sends FLoM's discover request to the group up to ``discovery_attempts``
times, waiting ``discovery_timeout`` ms each time, and takes the first valid reply: the
daemon's TCP address (or, when the reply's address is empty, the reply's source) and
port.  Unlike FLoM, ``-n IFACE`` also picks the interface the query leaves by (Q23).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

from . import codec
from .netaddr import interface_index, resolve, with_scope
from .settings import Settings

Candidates = list[tuple[int, tuple]]  # type: ignore[type-arg]

DATAGRAM_MAX = 1024  # FLoM clients' receive buffer
REQUEST = codec.encode(codec.DiscoverRequest())


def discover(settings: Settings, say: Callable[[str], None] | None = None) -> Candidates | None:
    """Where a daemon of the group listens, as ``(family, sockaddr)`` candidates to connect
    to; ``None`` when nobody answered.  ``say`` receives FLoM's verbose chatter."""
    group = settings.multicast_address or ""
    where = f"{group}/{settings.multicast_port}"
    for family, sockaddr in resolve(
        group, settings.multicast_port, socket.SOCK_DGRAM, interface=settings.network_interface
    ):
        with query_socket(family, settings) as sock:
            for _ in range(settings.discovery_attempts):
                if say:
                    say(f"sending UDP multicast datagram to {where} ('{REQUEST.decode()}')")
                try:
                    sock.sendto(REQUEST, sockaddr)
                except OSError:
                    break  # this address is unusable (no route): try the next one
                reply = _first_reply(sock, settings.discovery_timeout / 1000)
                if reply is not None:
                    answer, raw, source = reply
                    if say:
                        say(f"reply from {where} is '{raw.decode(errors='replace')}'")
                    return _candidates(answer, source, settings)
                if say:
                    say(f"no reply from {where}")
    return None


def query_socket(family: int, settings: Settings) -> socket.socket:
    """A UDP socket that sends the discovery query to the group as the settings say."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, settings.discovery_ttl)
            index = interface_index(settings.network_interface)
            if index:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.bind(("::", 0))
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, settings.discovery_ttl)
            sock.bind(("0.0.0.0", 0))
    except OSError:
        sock.close()
        raise
    return sock


def _first_reply(
    sock: socket.socket, timeout_s: float
) -> tuple[codec.DiscoverAnswer, bytes, tuple] | None:  # type: ignore[type-arg]
    """The first well-formed discover answer within ``timeout_s``; other datagrams are
    ignored (a hostile or confused sender cannot stop the discovery)."""
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], remaining)[0]:
            break
        try:
            raw, source = sock.recvfrom(DATAGRAM_MAX + 1)
        except OSError:
            continue
        answer = valid_reply(raw)
        if answer is not None:
            return answer, raw, source
    return None


def valid_reply(raw: bytes) -> codec.DiscoverAnswer | None:
    """The discover answer in datagram ``raw``; None when it is not a well-formed one."""
    if len(raw) > DATAGRAM_MAX:
        return None
    try:
        answer = codec.decode(raw)
    except codec.CodecError:
        return None
    if isinstance(answer, codec.DiscoverAnswer) and 0 < answer.port < 65536:
        return answer
    return None


def source_candidates(
    answer: codec.DiscoverAnswer,
    source: tuple,  # type: ignore[type-arg]
) -> Candidates | None:
    """The reply's source as the address to connect to, when the answer names none
    (None: resolve the answer's address, with :func:`scope_of` the source)."""
    if answer.address:
        return None
    if len(source) == 4:
        return [(socket.AF_INET6, (source[0], answer.port, 0, source[3]))]
    return [(socket.AF_INET, (source[0], answer.port))]


def scope_of(source: tuple) -> int:  # type: ignore[type-arg]
    """The scope id of a reply's source address (0 for IPv4)."""
    return int(source[3]) if len(source) == 4 else 0


def _candidates(
    answer: codec.DiscoverAnswer,
    source: tuple,  # type: ignore[type-arg]
    settings: Settings,
) -> Candidates:
    """The addresses to connect to: the announced one, else the reply's source."""
    found = source_candidates(answer, source)
    if found is not None:
        return found
    return [
        (family, with_scope(sockaddr, scope_of(source)))
        for family, sockaddr in resolve(
            answer.address,
            answer.port,
            socket.SOCK_STREAM,
            interface=settings.network_interface,
        )
    ]
