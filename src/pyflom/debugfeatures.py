"""``flom --debug-feature=NAME``: small network checks a user runs before real work.

``ipv6.multicast.server`` waits on the ``-A`` group (IPv6) and port ``-P`` for one
datagram and answers ``WELCOME``; ``ipv6.multicast.client`` sends ``HELLO`` to the group
and prints the answer.  Output and exit codes (0 success, 1 failure) are FLoM's; unlike
FLoM, the client gives up after the discovery timeout times attempts instead of hanging, and
every failure is explained on stderr.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Callable

from .errors import FlomError
from .netaddr import interface_index, resolve
from .settings import Settings

DATAGRAM_MAX = 1024


def run(name: str, settings: Settings) -> int:
    """Run debug feature ``name`` (case-insensitive); return the exit status."""
    feature = FEATURES.get(name.lower())
    if feature is None:
        known = ", ".join(sorted(FEATURES))
        print(f"flom: unknown debug feature '{name}' (known: {known})", file=sys.stderr)
        return 1
    try:
        return feature(settings)
    except (OSError, FlomError) as exc:
        print(f"flom: debug feature '{name}' failed: {exc}", file=sys.stderr)
        return 1


def _ipv6_group(settings: Settings) -> tuple[bytes, tuple]:  # type: ignore[type-arg]
    group = settings.multicast_address
    if not group:
        raise FlomError("no multicast group: give one with -A (an IPv6 group such as ff02::1)")
    family, sockaddr = resolve(
        group,
        settings.multicast_port,
        socket.SOCK_DGRAM,
        interface=settings.network_interface,
    )[0]
    if family != socket.AF_INET6:
        raise FlomError(f"'{group}' is not an IPv6 multicast group")
    return socket.inet_pton(socket.AF_INET6, sockaddr[0].split("%")[0]), sockaddr


def multicast_server(settings: Settings) -> int:
    """Wait for one datagram on the group, print it, answer ``WELCOME`` to its sender."""
    packed, sockaddr = _ipv6_group(settings)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", settings.multicast_port))
        index = sockaddr[3] or interface_index(settings.network_interface)
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, packed + struct.pack("@I", index)
        )
        data, sender = sock.recvfrom(DATAGRAM_MAX)
        print(f"Arrived datagram is '{data.decode(errors='replace')}'", flush=True)
        sock.sendto(b"WELCOME", sender)
        print("Sent datagram is 'WELCOME'", flush=True)
    return 0


def multicast_client(settings: Settings) -> int:
    """Send ``HELLO`` to the group and print the first answer."""
    _, sockaddr = _ipv6_group(settings)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, settings.discovery_ttl)
        index = interface_index(settings.network_interface)
        if index:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.bind(("::", 0))
        sock.sendto(b"HELLO", sockaddr)
        print("Sent datagram is 'HELLO'", flush=True)
        wait_s = max(1.0, settings.discovery_timeout * settings.discovery_attempts / 1000)
        sock.settimeout(wait_s)
        try:
            data, _ = sock.recvfrom(DATAGRAM_MAX)
        except TimeoutError:
            print(
                f"flom: no answer from {settings.multicast_address} port "
                f"{settings.multicast_port} within {wait_s:g} s: is a server running "
                "(--debug-feature=ipv6.multicast.server) and is the group routed here?",
                file=sys.stderr,
            )
            return 1
        print(f"Arrived datagram is '{data.decode(errors='replace')}'", flush=True)
    return 0


FEATURES: dict[str, Callable[[Settings], int]] = {
    "ipv6.multicast.server": multicast_server,
    "ipv6.multicast.client": multicast_client,
}
