"""``make demo-ha`` (contrib/demo_ha.py) ends 0 and leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from etcd_cluster import require_etcd

ROOT = Path(__file__).resolve().parents[1]


def test_demo_ha_runs_and_cleans_up() -> None:
    env = dict(os.environ, PYFLOM_ETCD_BIN=require_etcd(), PYFLOM_NO_UVLOOP="1")
    demo = subprocess.run(
        [sys.executable, str(ROOT / "contrib" / "demo_ha.py")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "holder on A ended with exit status 0" in out  # through the leader's SIGKILL
    assert "holder on A ended with exit status 99" in out  # its gateway SIGKILLed
    assert out.count("waiter on B granted") == 2
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    assert len(pids) >= 5  # 3 etcd members, gateways, commands
    for pid in pids:  # every etcd member, gateway and flom named its work dir
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        assert b"pyflom-demo-ha-" not in cmdline, f"pid {pid} left running: {cmdline!r}"
