"""The fault-injection checker of the etcd backend, for minutes (tests/etcd_checker.py).

Real gateways (``python -m pyflom.daemon`` started by ``flom`` on demand, one UNIX socket
each) x real ``flom`` client loops with random modes on shared resources, while etcd
members and gateways are killed, stopped and restarted.  Prints the operations, the
faults injected, the violations (none expected) and the command that reruns the same
schedule.  Needs an etcd binary (``make etcd`` or PYFLOM_ETCD_BIN).

    .venv/bin/python bench/bench_etcd_checker.py --seconds 180 --gateways 3 --clients 9

Exit status: 0 without violations, 1 with.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from etcd_checker import Checker, CheckerConfig, rerun_command
from etcd_cluster import INSTALL_HINT, find_etcd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the load")
    parser.add_argument("--gateways", type=int, default=3, help="gateways (UNIX sockets)")
    parser.add_argument("--clients", type=int, default=9, help="client loops in all")
    parser.add_argument("--seed", type=int, default=None, help="random schedule (default: new)")
    parser.add_argument("--lease-ttl", type=int, default=7, help="gateway lease TTL, s")
    parser.add_argument("--grant-policy", default="flom", choices=("flom", "fifo"))
    parser.add_argument("--no-faults", action="store_true", help="load only, nothing killed")
    parser.add_argument(
        "--backend",
        default="etcd",
        choices=("etcd", "memory"),
        help="memory: one memory daemon (use --gateways 1), SIGKILLed, SIGTERMed, -X'd, paused",
    )
    args = parser.parse_args()
    binary = find_etcd() or ""
    if not binary and args.backend == "etcd":
        print(f"no etcd server binary: {INSTALL_HINT}", file=sys.stderr)
        return 2
    config = CheckerConfig(
        seconds=args.seconds,
        gateways=args.gateways,
        clients=args.clients,
        lease_ttl_s=args.lease_ttl,
        seed=args.seed if args.seed is not None else random.randrange(1 << 30),
        faults=not args.no_faults,
        grant_policy=args.grant_policy,
        backend=args.backend,
    )
    print(
        f"{config.gateways} gateways x {config.clients} clients for {config.seconds:g} s, "
        f"lease TTL {config.lease_ttl_s} s, lock-loss grace {config.grace_ms} ms, gateway "
        f"pauses <= {config.max_gateway_pause_s:g} s, seed {config.seed}",
        flush=True,
    )
    report = Checker(config, binary).run()
    print(report.summary())
    print(f"wall time: {report.wall_s:.1f} s")
    print(f"rerun: {rerun_command(config)}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
