"""Sequence grants per second with and without a state file (``--state-file``), same run.

With a state file every ``_s_`` grant appends one record and waits for fdatasync
before it is answered, so this measures the price of "a killed daemon never hands out
a number twice" on this machine's disk.  A simple resource is measured too: with a
state file it writes nothing (generations are reserved ~17 minutes of clock ahead), so
its rate should not move.  Each rate is FLoM's model (connect per grant) and one kept
connection; the ratio is with / without.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import pyflom
from _common import pairs_per_second, private_daemon, rerun_line
from pyflom.names import resource_type

CASES = (("sequence", "_s_bench[1]"), ("simple", "BenchSimple"))


def grants_per_second(path: str, name: str, keep: bool, seconds: float) -> float:
    handle = pyflom.Handle(
        name, kind=resource_type(name), socket_name=path, keep_connection=keep, idle_lifespan=60
    )
    return pairs_per_second(handle, seconds, batch=20)


def measure(extra: tuple[str, ...], seconds: float) -> dict[tuple[str, bool], float]:
    rates = {}
    with private_daemon(*extra) as path:
        for _, name in CASES:
            grants_per_second(path, name, False, 0.2)  # warm up
            for keep in (False, True):
                rates[name, keep] = grants_per_second(path, name, keep, seconds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument(
        "--dir", default=None, help="directory of the state file (default: a new one in /tmp)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyflom-bench-state-", dir=args.dir or "/tmp") as d:
        state = os.path.join(d, "state")
        without = measure((), args.seconds)
        with_file = measure(("--state-file", state), args.seconds)
        size = os.path.getsize(state)
    print(f"state file in {os.path.dirname(state)} ({size} bytes at the end)")
    print(f"{'resource':24s} {'model':14s} {'no file':>10s} {'state file':>12s}   ratio")
    for label, name in CASES:
        for keep in (False, True):
            before, after = without[name, keep], with_file[name, keep]
            model = "kept conn" if keep else "connect/grant"
            print(
                f"{label + ' ' + name:24s} {model:14s} {before:6.0f} g/s {after:8.0f} g/s"
                f"   {after / before:5.2f}x"
            )
    print(rerun_line("bench_statefile.py", f"--seconds {args.seconds:g}"))


if __name__ == "__main__":
    main()
