"""The ``flom`` console script (also ``python -m pyflom``): :func:`pyflom.cli.main`, then
a quick exit with its status.

One interpreter starts per command, so two costs of a short-lived process are skipped,
together a fifth of a ``flom -- true`` run (``bench/bench_cli.py``): the garbage
collector is off from the first import on (a run allocates little; its cycles go with
the process), and the interpreter's teardown is skipped once the standard streams are
flushed.  Nothing needs that teardown: :func:`~pyflom.cli.main` has released the lock
and closed its connection, the trace files are line-buffered and the TLS trace is
flushed per line, no thread is left running and no ``atexit`` hook is registered.
"""

from __future__ import annotations

import gc
import os


def run() -> None:
    """Run ``flom`` with ``sys.argv`` and exit with its status (never returns)."""
    gc.disable()
    from .cli import flush_output, main

    os._exit(flush_output(main()))


if __name__ == "__main__":
    run()
