"""`flom -- true` against a warm daemon vs `python -c "import socket"`, same interpreter.

Both commands are run alternately, so machine noise hits both alike; the figure is the
ratio of the medians.  Target (issue 2): at most 1.3.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _common import FLOM, private_daemon, rerun_line

# Installed packages have their bytecode compiled; PYTHONDONTWRITEBYTECODE would have an
# editable install recompile every pyflom module on every run, and the standard library
# (compiled) not: the ratio would measure the compiler.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    baseline = [sys.executable, "-c", "import socket"]
    with private_daemon() as path:
        command = [FLOM, "-s", path, "--", "true"]
        for _ in range(5):  # warm the page cache
            timed(command)
            timed(baseline)
        flom_times, base_times = [], []
        for _ in range(args.runs):
            flom_times.append(timed(command))
            base_times.append(timed(baseline))
    flom_ms = statistics.median(flom_times) * 1e3
    base_ms = statistics.median(base_times) * 1e3
    print(f"flom -- true (warm daemon)        median {flom_ms:7.2f} ms over {args.runs} runs")
    print(f'python -c "import socket"         median {base_ms:7.2f} ms over {args.runs} runs')
    print(f"ratio flom / baseline             {flom_ms / base_ms:7.2f}  (target <= 1.30)")
    print(rerun_line("bench_cli.py", f"--runs {args.runs}"))


if __name__ == "__main__":
    main()
