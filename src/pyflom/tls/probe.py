"""``flom-tls probe``: one TLS handshake with a daemon, traced, and a named verdict.

The probe connects like a client (TCP ``HOST:PORT``, or a UNIX socket path), does the
handshake with the given files, then waits a moment for the daemon's verdict on our
certificate — TLS 1.3 sends a refusal only after the handshake — without sending any
FLoM message, so nothing is locked and no daemon is disturbed.
"""

from __future__ import annotations

import socket
import sys
from typing import TextIO

from ..netaddr import connect_tcp
from ..transport import connect_unix
from . import identity
from .contexts import TlsSetupError, build_context
from .diagnosis import diagnose
from .files import TlsFiles
from .trace import TlsTrace

VERDICT_WAIT_S = 1.0  # how long the daemon is given to refuse our certificate


def _connect(target: str, timeout: float) -> socket.socket:
    if target.startswith("/"):
        sock = connect_unix(target)
    else:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"'{target}' is neither HOST:PORT nor a UNIX socket path")
        sock = connect_tcp(host.strip("[]"), int(port), None, None)
    sock.settimeout(timeout)
    return sock


def probe(target: str, files: TlsFiles, out: TextIO = sys.stdout, timeout: float = 10.0) -> int:
    """Handshake with the daemon at ``target``; print the trace and a verdict; 0 when the
    daemon accepted us and we accept it, 1 otherwise."""
    try:
        context = build_context(files, server_side=False)
    except TlsSetupError as exc:
        print(f"verdict: FAIL, this side's files: {exc}", file=out)
        return 1
    tracer = TlsTrace(out, "client", target)
    if not tracer.install(context):
        print("note: record tracing is not available with this Python", file=out)
    try:
        raw = _connect(target, timeout)
    except (OSError, ValueError) as exc:
        print(f"verdict: FAIL, cannot connect to {target}: {exc}", file=out)
        return 1
    with context.wrap_socket(raw, do_handshake_on_connect=False) as conn:
        try:
            conn.do_handshake()
            conn.settimeout(VERDICT_WAIT_S)
            try:
                conn.recv(1)
            except TimeoutError:
                pass  # silence: the daemon accepted our certificate and waits for a request
        except (OSError, ValueError) as exc:
            print(f"verdict: FAIL, {diagnose(exc, 'client', files, conn)}", file=out)
            return 1
        cn = identity.common_name(conn.getpeercert())
        tracer.log_session(conn, check=f"the daemon's certificate CN is '{cn}'")
    print(
        "verdict: OK, the daemon accepted this client's certificate and this client "
        "accepted the daemon's",
        file=out,
    )
    return 0
