"""contrib/systemd/flom.service: a valid unit whose ExecStart runs a foreground daemon that
clients reach with ``-s PATH -d 0``, and that SIGTERM stops cleanly; and its etcd gateway
variant, contrib/systemd/flom-etcd.service, alike on a real etcd cluster."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FLOM, FlomSandbox, daemon_pid, process_alive, wait_for

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "contrib" / "systemd" / "flom.service"
GATEWAY_UNIT = ROOT / "contrib" / "systemd" / "flom-etcd.service"
SERVICE_SOCKET = "/run/flom/flom.sock"


def _service_settings(unit: Path = UNIT) -> dict[str, str]:
    """``Key=Value`` lines of the unit's [Service] section (each key once)."""
    settings: dict[str, str] = {}
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            assert key not in settings, f"{key} twice"
            settings[key] = value
    return settings


@pytest.mark.parametrize("unit", [UNIT, GATEWAY_UNIT], ids=lambda p: p.name)
def test_unit_file_verifies(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    check = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and check.stderr == "", check.stderr


def test_unit_settings() -> None:
    service = _service_settings()
    argv = shlex.split(service["ExecStart"])
    assert argv[:4] == ["/usr/bin/env", "python3", "-m", "pyflom.daemon"]
    assert argv[argv.index("--socket-name") + 1] == SERVICE_SOCKET
    assert argv[argv.index("--lifespan") + 1] == "-1"
    assert "--ready-fd" not in argv  # the daemon stays in the foreground: Type=exec
    assert service["Type"] == "exec"
    assert service["RuntimeDirectory"] == Path(SERVICE_SOCKET).parent.name
    # the socket must not be in a private /tmp: clients could not see it
    assert not SERVICE_SOCKET.startswith(("/tmp/", "/var/tmp/"))
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert "docs/service.md" in UNIT.read_text()
    assert SERVICE_SOCKET in (ROOT / "docs" / "service.md").read_text()


@contextlib.contextmanager
def _exec_start(sandbox: FlomSandbox, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run exactly the unit's ExecStart (with a private socket path, plus ``extra``) under
    its UMask; yield the daemon once it listens, and its socket path."""
    service = _service_settings()
    path = str(sandbox.root / "flom.sock")
    argv = [path if word == SERVICE_SOCKET else word for word in shlex.split(service["ExecStart"])]
    env = sandbox.env
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', os.defpath)}"  # our python3
    log = sandbox.path("daemon.log").open("w+")
    daemon = subprocess.Popen(
        [*argv, *extra],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        cwd=sandbox.root,
        umask=int(service["UMask"], 8),
        text=True,
    )
    try:
        assert wait_for(lambda: daemon_pid(path) is not None, timeout=30), "daemon not listening"
        assert daemon_pid(path) == daemon.pid  # no fork: systemd watches the daemon itself
        yield daemon, path
        if not os.path.exists("/dev/log"):  # no syslog here: the log went to stderr
            log.seek(0)
            assert "FLM003N" in log.read()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
        log.close()
        assert not process_alive(daemon.pid)


def _client(sandbox: FlomSandbox, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOM, "-s", path, "-d", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=sandbox.env,
        cwd=sandbox.root,
    )


def test_exec_start_serves_locks_and_stops_cleanly_on_sigterm(sandbox: FlomSandbox) -> None:
    with _exec_start(sandbox) as (daemon, path):
        # UMask=0007: the socket is shared with the group, closed to others
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o770
        locked = _client(sandbox, path, "-r", "svc", "-l", "EX", "--", "sh", "-c", "echo locked")
        assert (locked.returncode, locked.stdout) == (0, "locked\n"), locked.stderr
        status = _client(sandbox, path, "--status")
        assert status.returncode == 0 and f"daemon pid {daemon.pid}" in status.stdout
        assert daemon.poll() is None  # lifespan -1: still there when idle

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        assert not os.path.exists(path)
        if not os.path.exists("/dev/log"):  # no syslog here: the log went to stderr
            log = sandbox.path("daemon.log").read_text()
            assert "FLM050I granted 'svc'" in log
        # -d 0: with the service stopped, a client fails instead of starting a daemon
        refused = _client(sandbox, path, "--", "true")
        assert refused.returncode == 99
        assert not os.path.exists(path)


METRICS_LINE = "#   --metrics 127.0.0.1:9100"
"""The units' commented-out metrics option (docs/service.md, "Metrics")."""


@pytest.mark.parametrize("unit", [UNIT, GATEWAY_UNIT], ids=lambda p: p.name)
def test_units_show_the_metrics_option(unit: Path) -> None:
    assert METRICS_LINE in unit.read_text().splitlines()
    docs = (ROOT / "docs" / "service.md").read_text()
    assert "--metrics 127.0.0.1:9100" in docs and "'pyflom[metrics]'" in docs


def test_exec_start_with_the_metrics_option_serves_metrics(sandbox: FlomSandbox) -> None:
    """The unit's ExecStart with its commented --metrics option (on a free port)."""
    option, address = METRICS_LINE.lstrip("# ").split()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = address.replace(":9100", f":{port}")
    with _exec_start(sandbox, option, address) as (daemon, path):
        locked = _client(sandbox, path, "-r", "svc", "--", "true")
        assert locked.returncode == 0, locked.stderr
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert 'flom_grants_total{mode="EX",type="simple"} 1.0' in text
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


def test_gateway_unit_settings() -> None:
    """The etcd variant: flom.service's socket, user and hardening, plus a backend and a
    lease TTL that the lease rule accepts for the grace it gives."""
    from pyflom.etcd.config import lease_ttl_error

    plain, gateway = _service_settings(), _service_settings(GATEWAY_UNIT)
    argv = shlex.split(gateway["ExecStart"])
    assert argv[:4] == ["/usr/bin/env", "python3", "-m", "pyflom.daemon"]
    assert argv[argv.index("--socket-name") + 1] == SERVICE_SOCKET
    assert argv[argv.index("--lifespan") + 1] == "-1"
    assert argv[argv.index("--backend") + 1].startswith("etcd://")
    ttl = int(argv[argv.index("--etcd-lease-ttl") + 1])
    assert lease_ttl_error(ttl, int(argv[argv.index("--lock-loss-grace") + 1])) is None
    same = {k: v for k, v in plain.items() if k != "ExecStart"}
    assert {k: gateway.get(k) for k in same} == same
    text = (ROOT / "docs" / "service.md").read_text()
    assert GATEWAY_UNIT.name in text and "docs/service.md" in GATEWAY_UNIT.read_text()


def test_gateway_exec_start_on_etcd(sandbox: FlomSandbox, etcd_shared: Any) -> None:
    """Runs the gateway unit's ExecStart on a real cluster (its endpoints, a key prefix
    of this test's own, a private socket): a client with the same backend locks through
    it with -d 0, and SIGTERM stops it cleanly."""
    import uuid

    path = str(sandbox.root / "flom.sock")
    backend = "etcd://" + ",".join(etcd_shared.endpoints)
    argv = []
    for word in shlex.split(_service_settings(GATEWAY_UNIT)["ExecStart"]):
        argv.append(
            path if word == SERVICE_SOCKET else backend if word.startswith("etcd://") else word
        )
    prefix = f"/svc-{uuid.uuid4().hex[:8]}/"
    argv += ["--etcd-key-prefix", prefix]
    grace = argv[argv.index("--lock-loss-grace") + 1]
    env = sandbox.env
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', os.defpath)}"
    log = sandbox.path("gateway.log").open("w+")
    gateway = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=sandbox.root
    )
    try:
        assert wait_for(lambda: daemon_pid(path) is not None, timeout=60), "not listening"
        assert daemon_pid(path) == gateway.pid

        client = [FLOM, "-s", path, "-d", "0", "--backend", backend, "--lock-loss-grace", grace]
        client += ["--etcd-key-prefix", prefix]  # the host's clients share the gateway's

        def flom(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*client, *args],
                capture_output=True,
                text=True,
                timeout=60,
                env=sandbox.env,
                cwd=sandbox.root,
            )

        locked = flom("-r", "svc", "--", "sh", "-c", 'echo "gen $FLOM_LOCK_GENERATION"')
        assert locked.returncode == 0 and locked.stdout.startswith("gen "), locked.stderr
        assert int(locked.stdout.split()[1]) > 0  # an etcd revision
        status = flom("--status")
        assert status.returncode == 0 and "gateway" in status.stdout, status.stdout
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=30) == 0
        assert not os.path.exists(path)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(timeout=30)
        log.close()
