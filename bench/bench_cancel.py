"""Waiters that give up while a lock is held: does the daemon keep anything of them?

One holder keeps an EX lock on ``Cancel``.  Then N cycles of: connect, send a waiting
lock request, read the "enqueued" answer (rc 1), close.  Every cycle leaves a waiter
that is cancelled when its connection closes.  Prints the daemon's RSS after a warm-up
and after the N cycles, and the growth.  Target (issue 9, item 7): no growth that scales
with N (it was 32 -> 77 MiB for 200000 cycles).
"""

from __future__ import annotations

import argparse
import time

from _common import ask, daemon_pid, lock_request, private_daemon, rerun_line, rss_mib

NAME = "Cancel"
REQUEST = lock_request(NAME)
PROBE = lock_request(NAME, wait=False)
WARM_UP = 5000


def cycles(path: str, count: int) -> None:
    for _ in range(count):
        sock, rc = ask(path, REQUEST)
        assert rc == 1, rc  # enqueued
        sock.close()


def settle(path: str) -> None:
    """One more round trip, so the daemon has handled the closes sent before it."""
    sock, rc = ask(path, PROBE)
    assert rc == 4, rc  # busy
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=120000)
    args = parser.parse_args()
    with private_daemon() as path:
        pid = daemon_pid(path)
        assert pid is not None
        holder, rc = ask(path, REQUEST)
        assert rc == 0, rc
        cycles(path, WARM_UP)
        settle(path)
        before = rss_mib(pid)
        start = time.perf_counter()
        cycles(path, args.cycles)
        elapsed = time.perf_counter() - start
        settle(path)
        after = rss_mib(pid)
        holder.close()
    print(
        f"{args.cycles} connect/wait/cancel cycles behind one holder in {elapsed:.1f} s"
        f" ({args.cycles / elapsed:.0f}/s)"
    )
    print(
        f"daemon RSS after {WARM_UP} warm-up cycles {before:.1f} MiB, after the run "
        f"{after:.1f} MiB: growth {after - before:+.1f} MiB"
        f" ({(after - before) * 2**20 / args.cycles:.0f} bytes per cycle)"
    )
    print(rerun_line("bench_cancel.py", f"--cycles {args.cycles}"))


if __name__ == "__main__":
    main()
