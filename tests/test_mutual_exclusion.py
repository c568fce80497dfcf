"""No two EX holders, ever: 16 concurrent `flom` clients around a detector that fails
when two commands are inside at once (mkdir is an atomic test-and-set)."""

from __future__ import annotations

import shlex
import subprocess

from conftest import FlomSandbox

CLIENTS = 16
ROUNDS = 4


def critical_section(box: FlomSandbox, hold: str) -> list[str]:
    inside = box.path("inside")
    log = box.path("log")
    return [
        "sh",
        "-c",
        f"mkdir {inside} 2>/dev/null || echo OVERLAP >> {log}; "
        f"echo run >> {log}; sleep {hold}; rmdir {inside} 2>/dev/null; true",
    ]


def run_clients(box: FlomSandbox, *options: str, hold: str) -> list[str]:
    script = " ; ".join(
        shlex.join([*box.args(*options), "--", *critical_section(box, hold)]) for _ in range(ROUNDS)
    )
    assert box.run("-d", "-1", "--", "true").returncode == 0
    clients = [
        subprocess.Popen(["sh", "-c", script], env=box.env, cwd=box.root) for _ in range(CLIENTS)
    ]
    for client in clients:
        assert client.wait(timeout=120) == 0
    return box.path("log").read_text().split()


def test_exclusive_lock_never_has_two_holders(sandbox: FlomSandbox) -> None:
    log = run_clients(sandbox, hold="0.01")
    assert log.count("run") == CLIENTS * ROUNDS
    assert "OVERLAP" not in log


def test_detector_catches_overlap_with_shared_mode(sandbox: FlomSandbox) -> None:
    # Control: the same clients in a shared mode do overlap, so the detector works.
    log = run_clients(sandbox, "-l", "CR", hold="0.3")
    assert log.count("run") == CLIENTS * ROUNDS
    assert "OVERLAP" in log
