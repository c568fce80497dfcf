"""Lock/unlock pairs on one simple resource while many other resources are alive.

Once a timestamp resource has been used, the daemon must not scan every live resource
on every request.  In one daemon: use a timestamp resource once, measure pairs/s on
``Simple`` (R = 0), then create R idle resources (long idle lifespan, so they stay
alive) and measure again.  Both client models are measured: FLoM's (connect per pair)
and a kept connection.  Target (issue 9, item 8): ratio near 1 (it was 0.4 -> 15 ms per
pair with R = 20000).
"""

from __future__ import annotations

import argparse
import socket

import pyflom
from _common import pairs_per_second, private_daemon, rerun_line
from pyflom import codec

LIFESPAN_MS = 3_600_000  # the idle resources outlive the run
BATCH = 200


def create_idle_resources(path: str, count: int) -> None:
    """Lock and unlock ``Idle0`` .. ``Idle{count-1}`` over one connection, pipelined."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    framer = codec.Framer()
    for start in range(0, count, BATCH):
        names = [f"Idle{i}" for i in range(start, min(start + BATCH, count))]
        payload = b"".join(
            codec.encode(codec.LockRequest("bench", name, False, True, LIFESPAN_MS, mode=5))
            + codec.encode(codec.UnlockRequest(name, False))
            for name in names
        )
        sock.sendall(payload)
        got = 0
        while got < len(names):
            for frame in framer.feed(sock.recv(65536)):
                answer = codec.decode(frame)
                assert isinstance(answer, codec.LockAnswer) and answer.rc == 0, answer
                got += 1
    sock.close()


def measure(path: str, seconds: float) -> tuple[float, float]:
    """(connect per pair, kept connection) pairs/s on ``Simple``."""
    flom_model = pairs_per_second(pyflom.Handle("Simple", socket_name=path), seconds, batch=20)
    kept = pairs_per_second(
        pyflom.Handle("Simple", socket_name=path, keep_connection=True), seconds, batch=20
    )
    return flom_model, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with private_daemon() as path:
        stamp = pyflom.Handle(
            "_t_%H%M%S#ffffff[1]", kind="timestamp", socket_name=path, idle_lifespan=LIFESPAN_MS
        )
        stamp.lock()
        stamp.close()
        measure(path, 0.3)  # warm up
        few = measure(path, args.seconds)
        create_idle_resources(path, args.resources)
        many = measure(path, args.seconds)
    print("one timestamp resource used; pairs/s on one simple resource")
    for label, zero, full in (
        ("connect per pair (FLoM's model)", few[0], many[0]),
        ("one kept connection", few[1], many[1]),
    ):
        print(
            f"{label:32s} R=0: {zero:7.0f} pairs/s   R={args.resources}: {full:7.0f} pairs/s"
            f"   ratio {full / zero:.2f}  (target near 1)"
        )
    print(
        rerun_line(
            "bench_many_resources.py", f"--resources {args.resources} --seconds {args.seconds:g}"
        )
    )


if __name__ == "__main__":
    main()
