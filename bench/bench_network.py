"""Lock+unlock pairs per second over TCP between two virtual hosts vs over the UNIX socket.

Host a (a network namespace) runs a TCP daemon; a client on host b (another namespace,
joined to a by veth pairs and a bridge) measures FLoM's model (connect, lock, unlock,
disconnect per pair) and a kept connection.  The baseline, measured in the same run and
alternated with it, is the same client against a daemon on a UNIX socket.  Also shown:
TCP over host a's own loopback, to separate the cost of TCP from that of the virtual
link.  Needs root (``ip netns``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pyflom
from _common import FLOM, pairs_per_second, private_daemon, rerun_line

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def measure(seconds: float, settings: pyflom.Settings) -> tuple[float, float]:
    """(FLoM model, kept connection) pairs/s with ``settings`` naming the daemon."""
    flom_model = pairs_per_second(pyflom.Handle("BenchRes", settings=settings.copy()), seconds)
    kept = pairs_per_second(
        pyflom.Handle("BenchRes", settings=settings.copy(), keep_connection=True), seconds
    )
    return flom_model, kept


def inner(argv: list[str]) -> None:
    """``--measure KIND WHERE SECONDS``: print the two figures (run inside a namespace)."""
    kind, where, seconds = argv
    if kind == "unix":
        settings = pyflom.Settings(socket_name=where)
    else:
        settings = pyflom.Settings(unicast_address=where)
    print(*measure(float(seconds), settings))


def run_measure(prefix: list[str], kind: str, where: str, seconds: float) -> tuple[float, float]:
    argv = [*prefix, sys.executable, str(Path(__file__).resolve())]
    argv += ["--measure", kind, where, str(seconds)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=HERE).stdout
    flom_model, kept = out.split()
    return float(flom_model), float(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        inner(args.measure)
        return
    from vhosts import VirtualNetwork, netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"bench_network: skipped, {reason}")
        return
    figures: dict[str, list[tuple[float, float]]] = {"unix": [], "veth": [], "loopback": []}
    with VirtualNetwork(("a", "b")) as net, private_daemon() as unix_path:
        a, b = net["a"], net["b"]
        for address in (a.ipv4, "127.0.0.1"):
            started = a.run([FLOM, "-a", address, "-d", "-1", "--", "true"])
            assert started.returncode == 0, started.stderr
        in_a = ["ip", "netns", "exec", a.netns]
        in_b = ["ip", "netns", "exec", b.netns]
        for _ in range(args.rounds):
            figures["unix"].append(run_measure([], "unix", unix_path, args.seconds))
            figures["veth"].append(run_measure(in_b, "tcp", a.ipv4, args.seconds))
            figures["loopback"].append(run_measure(in_a, "tcp", "127.0.0.1", args.seconds))
    best = {kind: tuple(map(max, zip(*rows, strict=True))) for kind, rows in figures.items()}
    labels = {
        "unix": "UNIX socket (baseline)",
        "veth": "TCP, host b -> host a (veth)",
        "loopback": "TCP, loopback of host a",
    }
    print(f"{'transport':32} {'connect per pair':>18} {'kept connection':>16}  (best of rounds)")
    for kind, (flom_model, kept) in best.items():
        base_flom, base_kept = best["unix"]
        print(
            f"{labels[kind]:32} {flom_model:12.0f}/s {flom_model / base_flom:4.2f}x "
            f"{kept:10.0f}/s {kept / base_kept:4.2f}x"
        )
    print(rerun_line("bench_network.py", f"--seconds {args.seconds:g}", f"--rounds {args.rounds}"))


if __name__ == "__main__":
    main()
