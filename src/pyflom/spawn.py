"""Start a daemon on demand: a fresh, detached interpreter that reports when it is ready.

The starter spawns ``python -m pyflom.daemon`` in a new session with stdio on
/dev/null (so ``out=$(flom -- cmd)`` never waits for the daemon), waits for that
process to fork the real daemon and exit, then reads a 4-byte status from a pipe: 0
once the daemon listens, ``rc.FLOCK_ERROR`` when another daemon owns the socket or the
TCP address; any other status is followed by the daemon's reason, in plain words.
"""

from __future__ import annotations

import os
import select
import struct
import sys
import time

from . import rc as _rc
from .settings import Settings

READY_TIMEOUT_S = 10.0
MAX_REPORT_BYTES = 4096
_READY = struct.pack("=i", _rc.OK)


def daemon_argv(settings: Settings, ready_fd: int) -> list[str]:
    """The command line that starts the daemon ``settings`` describe: on their UNIX
    socket, or on TCP (``-a``) and/or answering discovery on a multicast group (``-A``)."""
    argv = [
        sys.executable,
        "-m",
        "pyflom.daemon",
        "--lifespan",
        str(settings.daemon_lifespan),
        "--grant-policy",
        settings.grant_policy,
        "--ready-fd",
        str(ready_fd),
    ]
    socket_name = settings.effective_socket_name()
    if socket_name is not None:
        argv += ["--socket-name", socket_name]
    else:
        if settings.unicast_address:
            argv += ["--unicast-address", settings.unicast_address]
            argv += ["--unicast-port", str(settings.unicast_port)]
        if settings.multicast_address:
            argv += ["--multicast-address", settings.multicast_address]
            argv += ["--multicast-port", str(settings.multicast_port)]
        if settings.network_interface:
            argv += ["--network-interface", settings.network_interface]
        argv += ["--tcp-keepalive", ",".join(map(str, settings.keepalive_s()))]
    if settings.tls_certificate and settings.tls_private_key and settings.tls_ca_certificate:
        argv += ["--tls-certificate", settings.tls_certificate]
        argv += ["--tls-private-key", settings.tls_private_key]
        argv += ["--tls-ca-certificate", settings.tls_ca_certificate]
        if settings.tls_check_peer_id:
            argv.append("--tls-check-peer-id")
        if settings.tls_trace_file:
            argv += ["--tls-trace", settings.tls_trace_file]
        if settings.tls_keylog_file:
            argv += ["--tls-keylog", settings.tls_keylog_file]
    if settings.daemon_trace_file:
        argv += ["--trace-file", os.path.abspath(settings.daemon_trace_file)]
        if settings.append_trace_file:
            argv.append("--append-trace-file")
    return argv


def start_daemon(settings: Settings) -> tuple[int, str]:
    """Start the daemon ``settings`` describe; return its start status (a FLoM rc) and,
    when it failed, the daemon's reason in plain words (may be empty)."""
    read_end, write_end = os.pipe()
    try:
        os.set_inheritable(write_end, True)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(
                sys.executable,
                daemon_argv(settings, write_end),
                os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)],
                setsid=True,
            )
        finally:
            os.close(devnull)
        os.close(write_end)
        write_end = -1
        os.waitpid(pid, 0)
        report = b""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(report) < MAX_REPORT_BYTES:  # until the daemon closes its end
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(remaining, 0))
            chunk = os.read(read_end, MAX_REPORT_BYTES) if ready else b""
            report += chunk
            if not chunk or report[:4] == _READY:
                break
        if len(report) < 4:
            return _rc.DAEMON_NOT_STARTED, ""
        status = int(struct.unpack("=i", report[:4])[0])
        return status, report[4:].decode(errors="replace")
    except OSError:
        return _rc.DAEMON_NOT_STARTED, ""
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
