"""Lock+unlock pairs per second through the library, one client, on the UNIX socket.

Two models: FLoM's (connect, lock, unlock, disconnect for every pair) and pyflom's
kept connection (many pairs over one connection).  Target (issue 2): >= 5000 pairs/s
for FLoM's model.
"""

from __future__ import annotations

import argparse
import time

import pyflom
from _common import private_daemon, rerun_line


def pairs_per_second(path: str, seconds: float, keep: bool) -> float:
    handle = pyflom.Handle("BenchRes", socket_name=path, keep_connection=keep)
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            handle.lock()
            handle.unlock()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    handle.close()
    return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with private_daemon() as path:
        pairs_per_second(path, 0.3, False)  # warm up
        flom_model = pairs_per_second(path, args.seconds, keep=False)
        kept = pairs_per_second(path, args.seconds, keep=True)
    print(f"connect per pair (FLoM's model)   {flom_model:9.0f} pairs/s  (target >= 5000)")
    print(f"one kept connection (extension)   {kept:9.0f} pairs/s  ({kept / flom_model:.1f}x)")
    print(rerun_line("bench_pairs.py", f"--seconds {args.seconds:g}"))


if __name__ == "__main__":
    main()
