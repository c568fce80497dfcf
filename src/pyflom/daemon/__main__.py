"""``python -m pyflom.daemon``: run a lock daemon (normally started on demand by a client)."""

from __future__ import annotations

import argparse
import os
import sys

from ..settings import GrantPolicy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the daemon's own command line (written by :func:`pyflom.spawn.daemon_argv`)."""
    parser = argparse.ArgumentParser(prog="python -m pyflom.daemon", description=__doc__)
    parser.add_argument("--socket-name", required=True, help="UNIX socket to serve")
    parser.add_argument(
        "--lifespan",
        type=int,
        default=5000,
        help="ms of idleness before exiting; <0 never exit (FLoM's -d)",
    )
    parser.add_argument("--grant-policy", choices=GrantPolicy.ALL, default=GrantPolicy.FLOM)
    parser.add_argument("--trace-file", help="daemon trace file (absolute path)")
    parser.add_argument("--append-trace-file", action="store_true")
    parser.add_argument(
        "--ready-fd",
        type=int,
        help="detach, then write a 4-byte start status (0 = listening) to this descriptor",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: detach when asked to, then serve until shut down or idle."""
    args = parse_args(argv)
    if args.ready_fd is not None and os.fork() != 0:
        os._exit(0)  # the starter waits for this process; the daemon is its child
    from .server import DaemonOptions, run_daemon

    options = DaemonOptions(
        socket_name=args.socket_name,
        lifespan_ms=args.lifespan,
        grant_policy=args.grant_policy,
        trace_file=args.trace_file,
        append_trace_file=args.append_trace_file,
    )
    return run_daemon(options, ready_fd=args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
