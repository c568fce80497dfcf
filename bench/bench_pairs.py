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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--access-rules",
        metavar="FILE",
        help="start the daemon with these access rules (docs/access.md): the cost of the "
        "check (they must let this user lock BenchRes and _RESOURCE)",
    )
    args = parser.parse_args()
    loop = "plain asyncio" if os.environ.get("PYFLOM_NO_UVLOOP") else "uvloop when installed"
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
