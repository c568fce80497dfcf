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


def standard_files(box: FlomSandbox) -> tuple[list[str], list[str]]:
    """(daemon side, client side) TLS options from a fresh CA."""
    assert tool(box, "init-ca", "--dir", str(box.path("pki"))).returncode == 0
    return make_node(box, "daemon"), make_node(box, "client")


def file_options(args: list[str]) -> list[str]:
    names = ("--cert", "--key", "--ca")
    return [f"{name}={arg.split('=', 1)[1]}" for name, arg in zip(names, args, strict=True)]


def test_probe_names_the_verdict(sandbox: FlomSandbox) -> None:
    daemon_side, client_side = standard_files(sandbox)
    assert sandbox.run("-d", "-1", *daemon_side, "--", "true").returncode == 0
    ok = tool(sandbox, "probe", sandbox.socket, *file_options(client_side))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verdict: OK" in ok.stdout
    assert "client_hello(1)" in ok.stdout and "server_hello(2)" in ok.stdout
    assert "established TLSv1.3" in ok.stdout and "AUTH=BOTH" in ok.stdout
    # A client from another CA: the daemon's refusal arrives after the handshake (TLS 1.3).
    other = sandbox.path("other")
    assert tool(sandbox, "init-ca", "--dir", str(other), "--name", "other-ca").returncode == 0
    issued = tool(
        sandbox,
        "issue",
        "--ca-cert",
        str(other / "other-ca.crt"),
        "--ca-key",
        str(other / "other-ca.key"),
        "--dir",
        str(other),
        "--name",
        "stranger",
    )
    assert issued.returncode == 0, issued.stderr
    refused = tool(
        sandbox,
        "probe",
        sandbox.socket,
        f"--cert={other / 'stranger.crt'}",
        f"--key={other / 'stranger.key'}",
        f"--ca={client_side[2].split('=', 1)[1]}",
    )
    assert refused.returncode == 1
    assert "verdict: FAIL" in refused.stdout
    assert "[TLS-PEER-DISTRUSTS-US]" in refused.stdout
    assert "probably an encrypted alert" in refused.stdout or "unknown_ca(48)" in refused.stdout


def test_tls_trace_of_a_real_lock(sandbox: FlomSandbox) -> None:
    daemon_side, client_side = standard_files(sandbox)
    daemon_trace, client_trace = sandbox.path("daemon.tls"), sandbox.path("client.tls")
    started = sandbox.run(
        "-d",
        "-1",
        *daemon_side,
        f"--tls-trace={daemon_trace}",
        "--tls-check-peer-id=yes",
        "--",
        "true",
    )
    assert started.returncode == 0, started.stderr
    result = sandbox.run(*client_side, f"--tls-trace={client_trace}", "--", "true")
    assert result.returncode == 0, result.stderr
    client_lines = client_trace.read_text()
    assert "client#1 -> daemon" in client_lines and "client#1 <- daemon" in client_lines
    assert "certificate_request(13)" in client_lines  # double authentication
    assert "certificate(11)" in client_lines
    assert "established TLSv1.3" in client_lines and "AUTH=BOTH" in client_lines
    assert "peer-id check: off" in client_lines
    daemon_lines = daemon_trace.read_text()
    assert "established TLSv1.3" in daemon_lines and "peer-id check: on" in daemon_lines


def test_keylog_for_wireshark(sandbox: FlomSandbox) -> None:
    daemon_side, client_side = standard_files(sandbox)
    keys = sandbox.path("keys.log")
    assert sandbox.run("-d", "-1", *daemon_side, "--", "true").returncode == 0
    assert sandbox.run(*client_side, f"--tls-keylog={keys}", "--", "true").returncode == 0
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text()


def test_decode_a_captured_client_hello(sandbox: FlomSandbox) -> None:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    dump = sandbox.path("hello.hex")
    dump.write_text("> " + hello.hex(" ") + "\n")
    result = tool(sandbox, "decode", str(dump))
    assert result.returncode == 0, result.stderr
    assert "handshake(22)" in result.stdout and "client_hello(1)" in result.stdout
    plain = sandbox.path("plain.hex")
    plain.write_text(b'<?xml version="1.0"'.hex())
    refused = tool(sandbox, "decode", str(plain))
    assert refused.returncode == 2
    assert "not TLS" in refused.stderr
