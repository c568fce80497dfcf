"""The daemon on uvloop, its default event loop where uvloop installs."""

from __future__ import annotations

import subprocess

import pytest

from conftest import FlomSandbox, wait_for

pytest.importorskip("uvloop")


def test_daemon_serves_on_uvloop(sandbox: FlomSandbox) -> None:
    env = sandbox.env
    env.pop("PYFLOM_NO_UVLOOP")
    subprocess.run(sandbox.args("-d", "-1", "--", "true"), env=env, check=True)
    pid = sandbox.remember_daemon()
    assert pid is not None
    with open(f"/proc/{pid}/maps") as maps:
        assert "uvloop" in maps.read()  # the daemon really runs on uvloop
    gate = sandbox.path("gate")
    holder = subprocess.Popen(
        sandbox.args("--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done"), env=env
    )
    sandbox.started.append(holder)  # type: ignore[arg-type]
    assert wait_for(lambda: sandbox.run("-o", "0", "--", "true").returncode == 98)
    bad = sandbox.run("-r", "1bad", "--", "true")
    assert bad.returncode == 99
    gate.touch()
    assert holder.wait(timeout=10) == 0
    assert sandbox.run("-o", "0", "--", "true").returncode == 0
