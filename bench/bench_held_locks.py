"""What the process's register of held locks (pyflom.held: self-deadlock checks, lost
locks) costs a lock/unlock pair, measured in one process by turning it off and on in
turns: the client's CPU time and the wall time per pair, on one kept connection (where
the register's share is the largest).  A busy machine moves both figures; the turns
share the noise."""

from __future__ import annotations

import argparse
import time

import pyflom
from _common import private_daemon
from pyflom.client import HandleCore


def per_pair(handle: pyflom.Handle, pairs: int) -> tuple[float, float]:
    """Client CPU and wall microseconds per lock/unlock pair."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(pairs):
        handle.lock()
        handle.unlock()
    return (
        (time.process_time() - cpu) / pairs * 1e6,
        (time.perf_counter() - wall) / pairs * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000, help="per turn")
    parser.add_argument("--turns", type=int, default=8)
    args = parser.parse_args()
    hold, unhold = HandleCore._hold, HandleCore._unhold
    off = (lambda self: None, lambda self: None)
    with private_daemon() as path:
        for keep, model in ((True, "one kept connection"), (False, "connect per pair")):
            handle = pyflom.Handle("BenchRes", socket_name=path, keep_connection=keep)
            per_pair(handle, 300)  # warm up
            runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for _ in range(args.turns):
                for on in (True, False):
                    HandleCore._hold, HandleCore._unhold = (hold, unhold) if on else off  # type: ignore[method-assign]
                    runs[on].append(per_pair(handle, args.pairs))
            HandleCore._hold, HandleCore._unhold = hold, unhold  # type: ignore[method-assign]
            handle.close()
            (cpu_on, wall_on), (cpu_off, wall_off) = (
                (min(c for c, _ in runs[on]), min(w for _, w in runs[on])) for on in (True, False)
            )
            print(
                f"{model:20s} with/without the register: client CPU {cpu_on:.1f}/{cpu_off:.1f} "
                f"us/pair ({cpu_on / cpu_off:.2f}x), wall {wall_on:.1f}/{wall_off:.1f} us/pair "
                f"({wall_on / wall_off:.2f}x)  (best turns)"
            )
    print(
        "rerun: .venv/bin/python bench/bench_held_locks.py "
        f"--pairs {args.pairs} --turns {args.turns}"
    )


if __name__ == "__main__":
    main()
