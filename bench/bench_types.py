"""Grants per second through the library for every resource type, one client.

Each type is measured with FLoM's model (connect, lock, unlock, disconnect per grant)
and with one kept connection; simple resources are the baseline of the same run.
"""

from __future__ import annotations

import argparse

import pyflom
from _common import pairs_per_second, private_daemon, rerun_line
from pyflom.names import resource_type

RESOURCES = (
    ("simple (baseline)", "BenchSimple", {}),
    ("numeric", "BenchPool[4]", {"quantity": 2}),
    ("set", "red.green.blue", {}),
    ("hierarchical", "/bench/a/b", {"lock_mode": "PR"}),
    ("sequence", "_s_bench[1]", {}),
    ("transactional sequence", "_S_bench[1]", {}),
    ("timestamp (µs grain)", "_t_%H%M%S#ffffff[1]", {}),
)


def grants_per_second(
    path: str, name: str, options: dict[str, object], keep: bool, seconds: float
) -> float:
    handle = pyflom.Handle(
        name,
        kind=resource_type(name),
        socket_name=path,
        keep_connection=keep,
        idle_lifespan=60,
        **options,  # type: ignore[arg-type]
    )
    return pairs_per_second(handle, seconds, batch=50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    rows = []
    with private_daemon() as path:
        for label, name, options in RESOURCES:
            grants_per_second(path, name, options, False, 0.2)  # warm up
            flom_model = grants_per_second(path, name, options, False, args.seconds)
            kept = grants_per_second(path, name, options, True, args.seconds)
            rows.append((label, name, flom_model, kept))
    base_flom, base_kept = rows[0][2], rows[0][3]
    print(f"{'type':24s} {'name':22s} {'connect/grant':>14s} {'kept conn':>10s}   vs simple")
    for label, name, flom_model, kept in rows:
        print(
            f"{label:24s} {name:22s} {flom_model:10.0f} g/s {kept:6.0f} g/s"
            f"   {flom_model / base_flom:4.2f}x / {kept / base_kept:4.2f}x"
        )
    print(rerun_line("bench_types.py", f"--seconds {args.seconds:g}"))


if __name__ == "__main__":
    main()
