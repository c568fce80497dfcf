"""pyflom.daemonline.backend_mismatch: a client refuses a local daemon whose lock backend
differs from its own configuration, and only then."""

from __future__ import annotations

import subprocess
import sys
import time

from pyflom.daemonline import backend_mismatch
from pyflom.settings import Settings

ETCD = "etcd://127.0.0.1:2379"


def test_a_daemon_that_died_is_not_called_a_memory_daemon() -> None:
    """A gateway killed between a client's connect and its check leaves a zombie (or no
    process): its empty command line tells nothing, so no refusal naming "its memory"
    (seen in the fault-injection checker when gateways were SIGKILLed)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a zombie until reaped: empty cmdline
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        assert backend_mismatch(Settings(backend=ETCD), child.pid) is None
    finally:
        child.wait()


def test_a_memory_daemon_is_refused_to_an_etcd_client() -> None:
    """Any live process whose command line is not a pyflom daemon's keeps its locks in
    memory as far as the check can tell (FLoM's own daemon): refused."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                if b"time.sleep" in f.read():
                    break
            time.sleep(0.01)
        why = backend_mismatch(Settings(backend=ETCD), child.pid)
        assert why is not None and "keeps its locks in its memory" in why
        assert backend_mismatch(Settings(), child.pid) is None
    finally:
        child.kill()
        child.wait()
