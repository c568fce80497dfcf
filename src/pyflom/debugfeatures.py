"""``flom --debug-feature=NAME``: small network checks a user runs before real work.

``ipv6.multicast.server`` waits on the ``-A`` group (IPv6) and port ``-P`` for one
datagram and answers ``WELCOME``; ``ipv6.multicast.client`` sends ``HELLO`` to the group
and prints the answer.  ``tls.server`` accepts one TLS connection on ``-a``/``-p`` and
``tls.client`` makes one: both do the handshake with the configured ``--tls-*`` files
and exchange unique ids (``<id></msg>``), checking them against the certificate CN when
``--tls-check-peer-id`` is set.  Output and exit codes (0 success, 1 failure) are
FLoM's; unlike FLoM, clients give up after a timeout instead of hanging, and every
failure is explained on stderr.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from .errors import FlomError
from .netaddr import interface_index, resolve
from .settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl

    from .tls.files import TlsFiles

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
        reason: object = exc
        if name.lower().startswith("tls.") and isinstance(exc, OSError):
            from .tls.diagnosis import diagnose

            side = "daemon" if name.lower() == "tls.server" else "client"
            reason = diagnose(exc, side, None)
        print(f"flom: debug feature '{name}' failed: {reason}", file=sys.stderr)
        return 1


def _ipv6_group(settings: Settings) -> tuple:  # type: ignore[type-arg]
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
    return sockaddr


def multicast_server(settings: Settings) -> int:
    """Wait for one datagram on the group, print it, answer ``WELCOME`` to its sender."""
    from .daemon.listeners import ListenError, open_discovery

    _ipv6_group(settings)
    try:
        # The daemon's own discovery socket: wildcard:port, joined to the group.
        sock = open_discovery(
            settings.multicast_address or "", settings.multicast_port, settings.network_interface
        )
    except ListenError as exc:
        raise FlomError(exc.reason) from None
    with sock:
        data, sender = sock.recvfrom(DATAGRAM_MAX)
        print(f"Arrived datagram is '{data.decode(errors='replace')}'", flush=True)
        sock.sendto(b"WELCOME", sender)
        print("Sent datagram is 'WELCOME'", flush=True)
    return 0


def multicast_client(settings: Settings) -> int:
    """Send ``HELLO`` to the group and print the first answer."""
    sockaddr = _ipv6_group(settings)
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


def tls_server(settings: Settings) -> int:
    """Accept one connection on ``-a``/``-p``, handshake, exchange and check unique ids."""
    from .daemon.listeners import listen_tcp

    files, context = _tls_setup(settings, server_side=True)
    listener = listen_tcp(settings.unicast_address or "", settings.unicast_port, None)
    with listener:
        raw, _ = listener.accept()
    with context.wrap_socket(raw, server_side=True) as conn:
        return _exchange_ids(conn, files, settings, "client")


def tls_client(settings: Settings) -> int:
    """Connect to ``-a``/``-p``, handshake, exchange and check unique ids."""
    from .netaddr import connect_tcp

    files, context = _tls_setup(settings, server_side=False)
    address, port = settings.unicast_address or "", settings.unicast_port
    try:
        raw = connect_tcp(address, port, None, None)
    except OSError as exc:
        raise FlomError(f"cannot connect to {address} port {port}: {exc.strerror}") from None
    raw.settimeout(TLS_TIMEOUT_S)
    with context.wrap_socket(raw) as conn:
        return _exchange_ids(conn, files, settings, "server")


TLS_TIMEOUT_S = 10.0


def _tls_setup(settings: Settings, server_side: bool) -> tuple[TlsFiles, ssl.SSLContext]:
    from .tls.contexts import build_context
    from .tls.files import tls_files

    files = tls_files(settings)
    if files is None:
        raise FlomError(
            "TLS is not configured: give --tls-certificate, --tls-private-key and "
            "--tls-ca-certificate"
        )
    if not settings.unicast_address:
        raise FlomError("no address: give one with -a (and -p for the port)")
    return files, build_context(files, server_side)


def _exchange_ids(conn: ssl.SSLSocket, files: TlsFiles, settings: Settings, peer: str) -> int:
    """Send our id first (client) or second (server), read the peer's, check it."""
    from .tls import identity
    from .tls.contexts import trace_of
    from .uniqueid import peer_id

    cert = conn.getpeercert() or {}
    for line in identity.log_lines(cert):
        print(line, file=sys.stderr)
    tracer = trace_of(conn.context)
    if tracer is not None:
        check = "on" if files.check_peer_id else "off"
        tracer.log_session(conn, check=f"{check}, peer CN '{identity.common_name(cert)}'")
    mine = f"{peer_id()}</msg>".encode()
    if peer == "server":
        conn.sendall(mine)
    data = b""
    while b"</msg>" not in data and len(data) < DATAGRAM_MAX:
        chunk = conn.recv(DATAGRAM_MAX)
        if not chunk:
            break
        data += chunk
    if b"</msg>" not in data:
        print(
            f"flom: the {peer} closed the connection without sending its id (a server "
            "that refuses the client's id closes without answering: see its output)",
            file=sys.stderr,
        )
        return 1
    announced = data.split(b"</msg>", 1)[0].decode(errors="replace")
    print(f"the {peer} announced unique id '{announced}'", file=sys.stderr)
    if files.check_peer_id:
        why = identity.mismatch(announced, identity.common_name(cert))
        if why is not None:
            print(f"FLM013E the {peer} failed the peer-id check: {why}", file=sys.stderr)
            return 1
        print(f"FLM014I the {peer}'s unique id matches its certificate CN", file=sys.stderr)
    if peer == "client":
        conn.sendall(mine)
    return 0


FEATURES: dict[str, Callable[[Settings], int]] = {
    "ipv6.multicast.server": multicast_server,
    "ipv6.multicast.client": multicast_client,
    "tls.server": tls_server,
    "tls.client": tls_client,
}
