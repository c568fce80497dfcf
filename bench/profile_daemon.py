"""Where pyflom's daemon spends its time per lock/unlock pair (FLoM's model).

Runs ``python -m pyflom.daemon`` under cProfile (as a client would start it: default log
level, stdio on /dev/null, uvloop unless ``PYFLOM_NO_UVLOOP=1``), drives it with the C
load generator of :mod:`bench_vs_flomc` (libflom, connect per pair) and prints the top
functions by own time plus the pairs done.  cProfile inflates Python code against
system calls; read the split, not the absolute figures.  Needs FLoM C (``make flomc``, or
``FLOM_C_PREFIX``) and gcc, else says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time

from _common import flom_c_prefix, rerun_line
from bench_vs_flomc import build_generator, run_clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    prefix = flom_c_prefix()
    if prefix is None:
        print("FLoM C (`make flomc`, or set FLOM_C_PREFIX) not found: profile_daemon skipped")
        return
    with tempfile.TemporaryDirectory(prefix="pyflom-prof-", dir="/tmp") as root:
        gen = build_generator(prefix, root)
        path, out = os.path.join(root, "sock"), os.path.join(root, "daemon.prof")
        argv = [sys.executable, "-m", "cProfile", "-o", out, "-m", "pyflom.daemon"]
        argv += ["--socket-name", path, "--lifespan", "1000"]  # exits 1 s after the load
        daemon = subprocess.Popen(
            argv, env=dict(os.environ, HOME=root), stderr=subprocess.DEVNULL, cwd=root
        )
        while not os.path.exists(path):
            time.sleep(0.02)
        rate = run_clients(gen, "lib", path, args.clients, args.seconds)
        daemon.wait(timeout=60)
        pairs = rate * args.seconds
        print(f"{pairs:.0f} pairs ({rate:.0f}/s under cProfile), {args.clients} client(s)")
        stats = pstats.Stats(out)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumtime").print_stats(args.top)
    print(rerun_line("profile_daemon.py", f"--seconds {args.seconds:g} --clients {args.clients}"))


if __name__ == "__main__":
    main()
