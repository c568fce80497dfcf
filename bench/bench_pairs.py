"""Lock+unlock pairs per second through the library, one client, on the UNIX socket.

Two models: FLoM's (connect, lock, unlock, disconnect for every pair) and pyflom's
kept connection (many pairs over one connection).  Baseline, run in the same minute: a
bare Python socket server and client exchanging the same bytes with no lock logic at
all, i.e. the most any Python daemon could do on this machine.  Target (issue 2):
>= 5000 pairs/s for FLoM's model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import pyflom
from _common import pairs_per_second, private_daemon, rerun_line
from pyflom import codec

BARE_SERVER = r"""
import selectors, socket, sys
answer = sys.stdin.buffer.read()
sel = selectors.DefaultSelector()
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1]); listener.listen(1024); listener.setblocking(False)
def accept():
    conn, _ = listener.accept(); conn.setblocking(False)
    sel.register(conn, selectors.EVENT_READ, lambda: read(conn))
def read(conn):
    data = conn.recv(65536)
    if not data:
        sel.unregister(conn); conn.close()
    elif b'verb="1"' in data:
        conn.send(answer)
sel.register(listener, selectors.EVENT_READ, accept)
while True:
    for key, _ in sel.select():
        key.data()
"""


def bare_pairs_per_second(seconds: float) -> float:
    """The same exchange as FLoM's model, without any pyflom code on either side."""
    request = codec.encode(codec.LockRequest("x" * 32, "BenchRes", True, True, 0, mode=5))
    unlock = codec.encode(codec.UnlockRequest("BenchRes", False))
    answer = codec.encode(codec.LockAnswer(16, 0, None, "x" * 32))
    import socket

    with tempfile.TemporaryDirectory(prefix="pyflom-bare-", dir="/tmp") as root:
        path = os.path.join(root, "sock")
        server = subprocess.Popen([sys.executable, "-c", BARE_SERVER, path], stdin=subprocess.PIPE)
        assert server.stdin is not None
        server.stdin.write(answer)
        server.stdin.close()
        while not os.path.exists(path):
            time.sleep(0.01)
        try:
            count = 0
            start = time.perf_counter()
            deadline = start + seconds
            while (now := time.perf_counter()) < deadline:
                for _ in range(100):
                    sock = socket.socket(socket.AF_UNIX)
                    sock.connect(path)
                    sock.sendall(request)
                    sock.recv(4096)
                    sock.sendall(unlock)
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(4096)
                    sock.close()
                count += 100
        finally:
            server.kill()
            server.wait()
    return count / (now - start)


def library_pairs_per_second(path: str, seconds: float, keep: bool) -> float:
    handle = pyflom.Handle("BenchRes", socket_name=path, keep_connection=keep)
    return pairs_per_second(handle, seconds)


def compare_metrics(seconds: float, rounds: int, loop: str) -> None:
    """Pairs per second with metrics off and on (two daemons, measured in turn)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    best: dict[tuple[str, bool], float] = {}
    with private_daemon() as off, private_daemon(f"--metrics=127.0.0.1:{port}") as on:
        for path in (off, on):
            library_pairs_per_second(path, 0.3, False)  # warm up
        for _ in range(rounds):
            for name, path in (("off", off), ("on", on)):
                for keep in (False, True):
                    rate = library_pairs_per_second(path, seconds, keep)
                    best[name, keep] = max(best.get((name, keep), 0.0), rate)
    print(f"daemon event loop: {loop}; best of {rounds} rounds of {seconds:g} s each")
    for keep, model in ((False, "connect per pair (FLoM's model)"), (True, "one kept connection")):
        off_rate, on_rate = best["off", keep], best["on", keep]
        print(
            f"{model:34} metrics off {off_rate:8.0f}  on {on_rate:8.0f} pairs/s  "
            f"(on/off {on_rate / off_rate:.3f})"
        )
    hooks_on, hooks_off = hook_cost_us()
    for keep in (False, True):
        per_pair = 1e6 / best["off", keep]
        print(
            f"in-process cost of the hooks per pair: on {hooks_on:.2f} us, off {hooks_off:.3f} us "
            f"= {hooks_on / per_pair:.1%} / {hooks_off / per_pair:.2%} of a pair "
            f"({per_pair:.0f} us, {'kept connection' if keep else 'FLoM model'})"
        )
    print(rerun_line("bench_pairs.py", f"--metrics --seconds {seconds:g} --rounds {rounds}"))


def hook_cost_us(pairs: int = 200_000) -> tuple[float, float]:
    """What the daemon's metrics hooks cost per lock/unlock pair, in this process (no
    I/O): with metrics on (the calls of daemon/server.py, in order) and off (the
    attribute tests)."""
    from pyflom.core.resource import Request
    from pyflom.core.table import Answer
    from pyflom.daemon.metrics import DaemonMetrics

    class Daemon:
        metrics: DaemonMetrics | None = None

    request = Request("BenchRes")
    grant = [Answer(7, 0, None, 1, request)]

    def run(daemon: Daemon) -> float:
        start = time.perf_counter()
        for _ in range(pairs):
            if daemon.metrics is not None:  # handle(): the lock request
                daemon.metrics.asked(7, "BenchRes", 5)
            if daemon.metrics is not None:  # dispatch(): the grant
                daemon.metrics.answered(grant)
            if daemon.metrics is not None:  # handle(): the unlock
                daemon.metrics.released(7)
            if daemon.metrics is not None:  # lost(): the connection ends
                daemon.metrics.gone(7)
        return (time.perf_counter() - start) / pairs * 1e6

    off, on = Daemon(), Daemon()
    on.metrics = DaemonMetrics()
    return min(run(on) for _ in range(3)), min(run(off) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--access-rules",
        metavar="FILE",
        help="start the daemon with these access rules (docs/access.md): the cost of the "
        "check (they must let this user lock BenchRes and _RESOURCE)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="compare a daemon without metrics and one with --metrics on a free loopback "
        "port (docs/service.md): rounds in turn, best of each, and their ratio",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --metrics (default 3)")
    args = parser.parse_args()
    loop = "plain asyncio" if os.environ.get("PYFLOM_NO_UVLOOP") else "uvloop when installed"
    if args.metrics:
        compare_metrics(args.seconds, args.rounds, loop)
        return
    rules = [] if args.access_rules is None else ["--access-rules", args.access_rules]
    with private_daemon(*rules) as path:
        library_pairs_per_second(path, 0.3, False)  # warm up
        flom_model = library_pairs_per_second(path, args.seconds, keep=False)
        kept = library_pairs_per_second(path, args.seconds, keep=True)
    bare = bare_pairs_per_second(args.seconds)
    print(f"daemon event loop: {loop} (PYFLOM_NO_UVLOOP=1 selects plain asyncio)")
    print(f"connect per pair (FLoM's model)   {flom_model:9.0f} pairs/s  (target >= 5000)")
    print(f"one kept connection (extension)   {kept:9.0f} pairs/s  ({kept / flom_model:.1f}x)")
    print(
        f"bare Python socket exchange        {bare:9.0f} pairs/s  "
        f"(FLoM's model reaches {flom_model / bare:.0%} of it)"
    )
    if args.access_rules is not None:
        print(f"access rules: {args.access_rules}")
    rerun = f"--seconds {args.seconds:g}" + "".join(f" {word}" for word in rules)
    print(rerun_line("bench_pairs.py", rerun))


if __name__ == "__main__":
    main()
