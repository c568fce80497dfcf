"""Status of a long queue: one holder of ``Status`` and N waiters behind it.

Measures, with every waiter a real connection:

* the latency of a status query through the client library (``query_status``: the
  daemon builds and sends the document, the client decodes it), of the whole document
  and of ``-r Status`` (the queue's resource) and ``-r Probe`` (a small one), median
  and slowest of the queries made back to back for a few seconds;
* the daemon's own share: time to the first and the last byte of the raw answer;
* ``flom --status`` and ``flom --status=json`` as subprocesses (Python start included);
* the event loop's stall meanwhile: a probe process does lock/unlock pairs on
  ``Probe`` over a kept connection, during a quiet second and while the queries run;
  its slowest pair and its slowest grant (request sent to grant received);
* the size of the document (JSON) and of the answer on the wire (base64 in XML).

Target (issue 10): status of 10000 waiters in < 0.5 s; no probe pair much slower than
50 ms during a status query.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Callable

from _common import (
    FLOM,
    Probe,
    hold_and_queue,
    private_daemon,
    raise_fd_limit,
    rerun_line,
)
from pyflom import Settings, codec
from pyflom.status import query_status

NAME = "Status"
PROBE_NAME = "Probe"
TARGET_S = 0.5
STALL_TARGET_S = 0.050
WINDOWS = (
    "quiet second",
    "raw queries back to back (daemon alone)",
    "query_status back to back (+ client's CPU)",
)


def raw_status(path: str) -> tuple[float, float, int]:
    """(seconds to the first byte, seconds to the last byte, bytes) of one raw status
    query: the daemon's share, without the client's decoding."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    request = codec.encode(codec.StatusRequest("bench"))
    start = time.perf_counter()
    sock.sendall(request)
    data = sock.recv(1 << 20)
    first = time.perf_counter()
    size = len(data)
    while data:
        data = sock.recv(1 << 20)
        size += len(data)
    last = time.perf_counter()
    sock.close()
    return first - start, last - start, size


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def summary(label: str, seconds: list[float]) -> str:
    return (
        f"{label:40s} median {statistics.median(seconds) * 1e3:7.1f} ms"
        f"   max {max(seconds) * 1e3:7.1f} ms   ({len(seconds)} runs)"
    )


def check(document: dict[str, object], waiters: int) -> int:
    """The number of waiters ``document`` lists on ``Status`` (must be all of them)."""
    resources = document["resources"]
    assert isinstance(resources, list)
    (queue,) = (res for res in resources if res["name"] == NAME)
    assert len(queue["holders"]) == 1 and len(queue["waiters"]) == waiters
    return waiters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waiters", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cli-runs", type=int, default=3)
    args = parser.parse_args()
    raise_fd_limit()
    with private_daemon() as path:
        settings = Settings(socket_name=path)
        env = dict(os.environ, HOME=os.path.dirname(path))
        holder, socks = hold_and_queue(path, NAME, [NAME] * args.waiters)
        check(query_status(settings), args.waiters)  # warm up, and the document is right
        probe = Probe(path, PROBE_NAME)
        quiet_start = time.monotonic()
        time.sleep(1.0)  # the probe's noise floor
        quiet_end = raw_start = time.monotonic()
        raw: list[tuple[float, float, int]] = []
        while time.monotonic() < raw_start + 1.0 or len(raw) < 3:
            raw.append(raw_status(path))
        raw_end = busy_start = time.monotonic()
        queries: dict[str, tuple[Callable[[], object], list[float]]] = {
            "whole document": (lambda: query_status(settings), []),
            f"-r {NAME} (the queue)": (lambda: query_status(settings, NAME), []),
            f"-r {PROBE_NAME} (one holder)": (lambda: query_status(settings, PROBE_NAME), []),
        }
        while time.monotonic() < busy_start + args.seconds or len(queries["whole document"][1]) < 3:
            for action, seconds in queries.values():
                seconds.append(timed(action))
        busy_end = time.monotonic()
        windows = probe.finish(
            (quiet_start, quiet_end), (raw_start, raw_end), (busy_start, busy_end)
        )
        document = query_status(settings)
        json_bytes = len(json.dumps(document, separators=(",", ":")).encode())
        cli = {
            form: [
                timed(
                    lambda form=form: subprocess.run(  # type: ignore[misc]
                        [FLOM, "-s", path, form],
                        check=True,
                        env=env,
                        stdout=subprocess.DEVNULL,
                    )
                )
                for _ in range(args.cli_runs)
            ]
            for form in ("--status", "--status=json")
        }
        holder.close()
        for sock in socks:
            sock.close()
    print(f"status of 1 holder and {args.waiters} waiters on one resource")
    for label, (_, seconds) in queries.items():
        print(summary(f"query_status, {label}", seconds))
    print(summary("daemon: first byte of the answer", [r[0] for r in raw]))
    print(summary("daemon: last byte of the answer", [r[1] for r in raw]))
    for form, seconds in cli.items():
        print(summary(f"flom {form} (subprocess)", seconds))
    whole = max(queries["whole document"][1])
    print(
        f"slowest whole-document query {whole * 1e3:.1f} ms"
        f"  (target < {TARGET_S * 1e3:.0f} ms: {'met' if whole < TARGET_S else 'MISSED'})"
    )
    print(
        f"document {json_bytes} bytes of JSON ({json_bytes / args.waiters:.0f} a waiter),"
        f" {raw[0][2]} bytes on the wire (base64 in XML)"
    )
    print(f"probe doing lock/unlock pairs on {PROBE_NAME} (another resource), slowest:")
    for label, window in zip(WINDOWS, windows, strict=True):
        print(
            f"  {label:42s} pair {window.worst_pair * 1e3:6.1f} ms,"
            f" grant {window.worst_grant * 1e3:6.1f} ms ({window.pairs} pairs)"
        )
    print(f"  (target: no pair much slower than {STALL_TARGET_S * 1e3:.0f} ms)")
    print(
        rerun_line(
            "bench_status.py",
            f"--waiters {args.waiters} --seconds {args.seconds:g} --cli-runs {args.cli_runs}",
        )
    )


if __name__ == "__main__":
    main()
