"""``flom-tls`` end to end: init-ca, issue, check, then real locks at level 3; probe and
decode against real daemons and real handshakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import FlomSandbox
from pyflom.uniqueid import peer_id

FLOM_TLS = str(Path(sys.executable).with_name("flom-tls"))


def tool(box: FlomSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOM_TLS, *args], capture_output=True, text=True, env=box.env, cwd=box.root, timeout=60
    )


def make_node(box: FlomSandbox, name: str, *extra: str) -> list[str]:
    pki = box.path("pki")
    result = tool(
        box,
        "issue",
        "--ca-cert",
        str(pki / "flom-ca.crt"),
        "--ca-key",
        str(pki / "flom-ca.key"),
        "--dir",
        str(pki),
        "--name",
        name,
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return [
        f"--tls-certificate={pki / (name + '.crt')}",
        f"--tls-private-key={pki / (name + '.key')}",
        f"--tls-ca-certificate={pki / 'flom-ca.crt'}",
    ]


def test_init_ca_issue_check_then_lock_at_level_3(sandbox: FlomSandbox) -> None:
    assert peer_id(), "level 3 needs this machine's unique id"
    result = tool(sandbox, "init-ca", "--dir", str(sandbox.path("pki")))
    assert result.returncode == 0, result.stderr
    daemon_side = make_node(sandbox, "daemon")
    client_side = make_node(sandbox, "client")
    files = [arg.split("=", 1)[1] for arg in client_side]
    check = tool(sandbox, "check", "--cert", files[0], "--key", files[1], "--ca", files[2])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout
    level3 = ["--tls-check-peer-id=yes"]
    started = sandbox.run("-d", "-1", *daemon_side, *level3, "--", "true")
    assert started.returncode == 0, started.stderr
    locked = sandbox.run(*client_side, *level3, "--", "echo", "locked at level 3")
    assert locked.returncode == 0 and locked.stdout == "locked at level 3\n", locked.stderr
    # A node certificate made for another id is refused at level 3.
    stranger = make_node(sandbox, "stranger", "--cn", "0123456789abcdef0123456789abcdef")
    refused = sandbox.run(*stranger, "--", "echo", "never")
    assert refused.returncode == 99 and refused.stdout == ""
    check = tool(
        sandbox,
        "check",
        *(
            f"--{k}={v}"
            for k, v in zip(
                ("cert", "key", "ca"), (a.split("=", 1)[1] for a in stranger), strict=True
            )
        ),
    )
    assert check.returncode == 1
    assert "CHECK-CN-UNIQUE-ID" in check.stdout
