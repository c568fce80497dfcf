"""Run every benchmark in turn (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

BENCHMARKS = (
    "bench_cli.py",
    "bench_pairs.py",
    "bench_queue.py",
    "bench_types.py",
    "bench_cancel.py",
    "bench_many_resources.py",
    "bench_hier_drain.py",
    "bench_status.py",
    "bench_network.py",
    "bench_tls.py",
    "bench_statefile.py",
    "bench_aio.py",
    # FLoM C from `make flomc` (or $FLOM_C_PREFIX) and gcc; says "skipped" without them
    "bench_vs_flomc.py",
)


def main() -> None:
    for script in BENCHMARKS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE.parent)


if __name__ == "__main__":
    main()
