"""``python -m pyflom.daemon``: run a lock daemon (normally started on demand by a client)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..core.table import MAX_RESOURCES
from ..options import DAEMON_ARGV_ORDER, GRANT_POLICY, INT, KEEPALIVE, SWITCH, daemon_default
from ..settings import GrantPolicy
from ..tls.files import TlsFiles
from .log import LEVELS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..etcd.config import EtcdConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the daemon's own command line (written by :func:`pyflom.spawn.daemon_argv`)."""
    parser = argparse.ArgumentParser(prog="python -m pyflom.daemon", description=__doc__)
    for option in DAEMON_ARGV_ORDER:  # the settings a client passes on (pyflom.options)
        daemon = option.daemon
        assert daemon is not None
        how: dict[str, Any] = {"help": daemon.help or None}
        if daemon.default:
            how["default"] = daemon_default(daemon.flag)
        if daemon.form == SWITCH:
            how["action"] = "store_true"
        elif daemon.form == KEEPALIVE:
            how["type"] = _keepalive
        elif option.kind == INT:
            how["type"] = int
        if option.rule == GRANT_POLICY:
            how["choices"] = GrantPolicy.ALL
        parser.add_argument(daemon.flag, **how)
    parser.add_argument(
        "--max-resources",
        type=_positive,
        default=MAX_RESOURCES,
        help="live resources kept at most; a request that would create one more is "
        f"refused with reason code -12 (default {MAX_RESOURCES})",
    )
    parser.add_argument(
        "--lock-delay",
        type=_positive,
        default=None,
        metavar="MS",
        help="when the previous daemon here died holding locks, grant nothing for this "
        "long first (default: the default lock-loss grace plus a second, 6000; the dead "
        "daemon's own value when it was longer)",
    )
    parser.add_argument(
        "--log-level",
        choices=tuple(LEVELS),
        help="keep log messages of this syslog priority or above (default info, every lock "
        "event; or $PYFLOM_LOG_LEVEL)",
    )
    parser.add_argument(
        "--ready-fd",
        type=int,
        help="detach, then write a 4-byte start status (0 = listening) to this descriptor",
    )
    args = parser.parse_args(argv)
    if args.backend is not None and (args.state_file or args.mount_point_vfs):
        parser.error(
            "--state-file and --mount-point-vfs are for the memory backend: with "
            "--backend=etcd://... sequences and generations live in etcd, and "
            "'flom --status' shows what every gateway holds"
        )
    if not (args.socket_name or args.unicast_address or args.multicast_address):
        parser.error("one of --socket-name, --unicast-address, --multicast-address is needed")
    if args.socket_name and (args.unicast_address or args.multicast_address):
        parser.error("a daemon serves a UNIX socket or the network, not both")
    return args


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    if not (args.tls_certificate and args.tls_private_key and args.tls_ca_certificate):
        return None
    return TlsFiles(
        args.tls_certificate,
        args.tls_private_key,
        args.tls_ca_certificate,
        args.tls_check_peer_id,
        args.tls_trace,
        args.tls_keylog,
    )


def _keepalive(text: str) -> tuple[int, int, int]:
    values = tuple(int(part) for part in text.split(","))
    if len(values) != 3 or min(values) < 0:
        raise argparse.ArgumentTypeError("expected TIME,INTVL,PROBES (three integers >= 0)")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {text}")
    return value


def _etcd_config(args: argparse.Namespace) -> EtcdConfig | None:
    """The etcd backend's configuration (None: memory); raises ValueError saying why
    the settings cannot work."""
    if args.backend is None:
        return None
    from ..etcd.config import EtcdConfig, backend_setting, parse_etcd_url

    url = backend_setting(args.backend)
    if url is None:
        return None
    password = None
    if args.etcd_password_file:
        try:
            with open(args.etcd_password_file, encoding="utf-8") as file:
                password = file.read().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(
                f"cannot read the etcd password file '{args.etcd_password_file}': {exc.strerror}"
            ) from None
    return EtcdConfig(
        endpoints=parse_etcd_url(url),
        key_prefix=args.etcd_key_prefix,
        lease_ttl_s=args.etcd_lease_ttl,
        lock_loss_grace_ms=args.lock_loss_grace,
        ca_file=args.etcd_ca_file,
        cert_file=args.etcd_cert_file,
        key_file=args.etcd_key_file,
        user=args.etcd_user,
        password=password,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: detach when asked to, then serve until shut down or idle."""
    args = parse_args(argv)
    if args.ready_fd is not None and os.fork() != 0:
        os._exit(0)  # the starter waits for this process; the daemon is its child
    from .server import DaemonOptions, refuse_to_start, run_daemon

    try:
        etcd = _etcd_config(args)
    except ValueError as exc:
        return refuse_to_start(str(exc), args.ready_fd)

    options = DaemonOptions(
        socket_name=args.socket_name,
        unicast_address=args.unicast_address,
        unicast_port=args.unicast_port,
        multicast_address=args.multicast_address,
        multicast_port=args.multicast_port,
        network_interface=args.network_interface,
        tcp_keepalive_s=args.tcp_keepalive,
        tls=_tls_files(args),
        lifespan_ms=args.lifespan,
        grant_policy=args.grant_policy,
        max_resources=args.max_resources,
        log_level=args.log_level or os.environ.get("PYFLOM_LOG_LEVEL") or "info",
        **({} if args.lock_delay is None else {"lock_delay_ms": args.lock_delay}),
        trace_file=args.trace_file,
        append_trace_file=args.append_trace_file,
        state_file=None if args.state_file is None else os.path.abspath(args.state_file),
        mount_point_vfs=None
        if args.mount_point_vfs is None
        else os.path.abspath(args.mount_point_vfs),
        etcd=etcd,
        access_rules=None if args.access_rules is None else os.path.abspath(args.access_rules),
        metrics_address=args.metrics,
    )
    return run_daemon(options, ready_fd=args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
