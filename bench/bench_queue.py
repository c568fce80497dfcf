"""A long queue on one EX resource: N clients wait, then are served one after another.

Every waiter is a real connection.  Measures the time from the first release until the
last waiter has been granted and has unlocked, and the daemon's RSS with the queue full.
Targets (issue 2): 5000 waiters served in < 4 s; RSS with 10000 waiters <= 128 MiB.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import time

from _common import (
    daemon_pid,
    hold_and_queue,
    private_daemon,
    raise_fd_limit,
    rerun_line,
    rss_mib,
    unlock_request,
)

UNLOCK = unlock_request("Queue")


def run(path: str, waiters: int) -> tuple[float, float]:
    # every waiter is queued (rc 1) before we measure
    holder, socks = hold_and_queue(path, "Queue", ["Queue"] * waiters)
    pid = daemon_pid(path)
    assert pid is not None
    rss = rss_mib(pid)
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    served = 0
    start = time.perf_counter()
    holder.sendall(UNLOCK)
    holder.close()
    while served < waiters:
        for key, _ in selector.select(timeout=30):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(4096)
            assert b'rc="0"' in data, data
            selector.unregister(sock)
            sock.setblocking(True)
            sock.sendall(UNLOCK)
            sock.close()
            served += 1
    return time.perf_counter() - start, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waiters", type=int, default=5000)
    parser.add_argument("--rss-waiters", type=int, default=10000)
    args = parser.parse_args()
    raise_fd_limit()
    with private_daemon() as path:
        small, _ = run(path, 100)
        elapsed, _ = run(path, args.waiters)
        _, rss = run(path, args.rss_waiters)
    per_small = small / 100 * 1e6
    per_big = elapsed / args.waiters * 1e6
    print(f"{args.waiters} waiters served one after another in {elapsed:.2f} s  (target < 4 s)")
    print(
        f"cost per grant: {per_big:.0f} us with {args.waiters} queued"
        f" vs {per_small:.0f} us with 100"
    )
    print(f"daemon RSS with {args.rss_waiters} waiters queued: {rss:.1f} MiB  (target <= 128)")
    print(
        rerun_line("bench_queue.py", f"--waiters {args.waiters} --rss-waiters {args.rss_waiters}")
    )


if __name__ == "__main__":
    main()
