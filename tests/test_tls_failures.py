"""Every TLS failure class provoked for real, and named: cause, side, fix, stable id.

Each case runs real daemons and clients (or, where a pyflom client cannot produce the
condition, a raw ``ssl`` client against a real pyflom daemon) with certificates made by
the test, and checks what the client prints and what the daemon logs.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FLOM, FlomSandbox, daemon_pid, wait_for
from pki import NodeFiles, Pki, Standard, pki_fixture, standard  # noqa: F401
from pyflom.tls.diagnosis import diagnose
from pyflom.uniqueid import peer_id

EXPIRED = (dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
"""Validity of the expired certificates: the messages must show these dates."""


def tls(node: NodeFiles, ca_cert: Path, key: Path | None = None) -> list[str]:
    return [
        f"--tls-certificate={node.cert}",
        f"--tls-private-key={key or node.key}",
        f"--tls-ca-certificate={ca_cert}",
    ]


@pytest.fixture
def certs(pki: Pki) -> Standard:
    return standard(pki, peer_id() or "no-machine-id")


class Daemon:
    """A TLS daemon started directly with its own files (a client starting it would use
    the same files, and refuse a daemon certificate that is wrong on purpose), with a
    trace file holding its log."""

    def __init__(self, box: FlomSandbox, *tls_args: str, env: dict[str, str] | None = None) -> None:
        self.box = box
        self.trace = box.path("daemon.trc")
        argv = [sys.executable, "-m", "pyflom.daemon", "--socket-name", box.socket]
        argv += ["--lifespan", "-1", "--trace-file", str(self.trace)]
        argv += tls_args  # the daemon takes the same --tls-*=FILE options
        self.proc = subprocess.Popen(argv, env=env or box.env, stderr=subprocess.PIPE, text=True)
        box.started.append(self.proc)
        assert wait_for(lambda: daemon_pid(box.socket) is not None, timeout=15)

    def logged(self, text: str) -> bool:
        return wait_for(lambda: text in self.trace.read_text(), timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def client_fails(box: FlomSandbox, *args: str) -> str:
    result = box.run(*args, "--", "echo", "ran")
    assert result.returncode == 99
    assert result.stdout == ""
    return result.stderr


def raw_client(path: str, context: ssl.SSLContext) -> BaseException:
    """Connect a raw ``ssl`` client to the daemon's socket; return its failure."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(path)
    try:
        with context.wrap_socket(sock) as conn:
            conn.sendall(b"<msg/>")
            conn.recv(100)  # TLS 1.3 reports refusals on the first read
    except (ssl.SSLError, OSError) as exc:
        return exc
    raise AssertionError("the handshake should have failed")


def raw_context(ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(ca)
    return context


# (a) and (b): unknown CA, on each side ------------------------------------------------------


def test_a_client_does_not_trust_the_daemon_ca(sandbox: FlomSandbox, certs: Standard) -> None:
    daemon = Daemon(sandbox, *tls(certs.other, certs.ca2.cert))
    err = client_fails(sandbox, *tls(certs.peer1, certs.ca1.cert))
    assert "this client refused the daemon's certificate (verify error" in err
    assert "[TLS-UNTRUSTED-PEER]" in err
    assert "not signed by the CA in" in err and str(certs.ca1.cert) in err
    assert daemon.logged("the client refused this daemon's certificate")


def test_b_daemon_does_not_trust_the_client_ca(sandbox: FlomSandbox, certs: Standard) -> None:
    # TLS 1.3: the client's handshake "succeeds"; the refusal arrives on the first read.
    daemon = Daemon(sandbox, *tls(certs.peer1, certs.ca1.cert))
    err = client_fails(sandbox, *tls(certs.other, certs.ca1.cert))
    assert "the daemon refused this client's certificate" in err
    assert "[TLS-PEER-DISTRUSTS-US]" in err
    assert daemon.logged("FLM017E")
    assert daemon.logged("this daemon refused the client's certificate")
    # A refusal is final: the client does not try again (it would be refused again).
    assert daemon.trace.read_text().count("FLM017E") == 1


# (c) no client certificate; (d) no shared cipher, protocol version -------------------------


def test_c_client_presents_no_certificate(sandbox: FlomSandbox, certs: Standard) -> None:
    daemon = Daemon(sandbox, *tls(certs.peer1, certs.ca1.cert))
    failure = raw_client(sandbox.socket, raw_context(certs.ca1.cert))
    named = diagnose(failure, "client")
    assert named.ident == "TLS-NO-CLIENT-CERT"
    assert "requires a client certificate" in named.summary
    assert daemon.logged("[TLS-NO-CLIENT-CERT]")


def test_d_no_shared_cipher(sandbox: FlomSandbox, certs: Standard) -> None:
    daemon = Daemon(sandbox, *tls(certs.peer1, certs.ca1.cert))
    context = raw_context(certs.ca1.cert)
    context.load_cert_chain(certs.peer2.cert, certs.peer2.key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA")  # RSA key exchange: the daemon's key is EC
    named = diagnose(raw_client(sandbox.socket, context), "client")
    assert named.ident == "TLS-HANDSHAKE-FAILURE"
    assert daemon.logged("[TLS-NO-SHARED-CIPHER]")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
def test_d_protocol_version_mismatch(sandbox: FlomSandbox, certs: Standard) -> None:
    daemon = Daemon(sandbox, *tls(certs.peer1, certs.ca1.cert))
    context = raw_context(certs.ca1.cert)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
    failure = raw_client(sandbox.socket, context)
    assert diagnose(failure, "client").ident == "TLS-VERSION-MISMATCH"
    assert daemon.logged("[TLS-VERSION-MISMATCH]")


# (e), (f), (g): files that cannot be used ---------------------------------------------------


def test_e_certificate_and_key_do_not_match(sandbox: FlomSandbox, certs: Standard) -> None:
    err = client_fails(sandbox, *tls(certs.peer1, certs.ca1.cert, key=certs.peer2.key))
    assert "does not belong to certificate" in err and str(certs.peer2.key) in err


def test_f_encrypted_key_without_and_with_a_wrong_password(
    sandbox: FlomSandbox, pki: Pki, certs: Standard
) -> None:
    locked = pki.node("locked", "x", ca="ca1", encrypt_key_with=b"s3cret")
    err = client_fails(sandbox, *tls(locked, certs.ca1.cert))
    assert "is encrypted" in err and "PYFLOM_TLS_KEY_PASSWORD" in err
    wrong = sandbox.env | {"PYFLOM_TLS_KEY_PASSWORD": "guess"}
    result = subprocess.run(
        [FLOM, "-s", sandbox.socket, *tls(locked, certs.ca1.cert), "--", "true"],
        capture_output=True,
        text=True,
        env=wrong,
    )
    assert result.returncode == 99
    assert "does not open it" in result.stderr
    right = sandbox.env | {"PYFLOM_TLS_KEY_PASSWORD": "s3cret"}
    result = subprocess.run(
        [FLOM, "-s", sandbox.socket, *tls(locked, certs.ca1.cert), "--", "echo", "ok"],
        capture_output=True,
        text=True,
        env=right,
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


@pytest.mark.parametrize("which", ["certificate", "key", "ca"])
def test_g_der_where_pem_is_expected(
    sandbox: FlomSandbox, pki: Pki, certs: Standard, which: str
) -> None:
    node = certs.peer1
    cert, key, ca = node.cert, node.key, certs.ca1.cert
    if which == "certificate":
        cert = pki.der_copy(cert)
    elif which == "key":
        key = pki.der_copy(key)
    else:
        ca = pki.der_copy(ca)
    args = [f"--tls-certificate={cert}", f"--tls-private-key={key}", f"--tls-ca-certificate={ca}"]
    err = client_fails(sandbox, *args)
    assert "DER (binary) format, PEM text is expected" in err
    assert "openssl" in err and "-inform DER" in err


# (h) TLS and plain ---------------------------------------------------------------------------


def test_h_tls_client_to_a_plain_daemon(sandbox: FlomSandbox, certs: Standard) -> None:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    err = client_fails(sandbox, *tls(certs.peer1, certs.ca1.cert))
    assert "[TLS-CLOSED-IN-HANDSHAKE]" in err and "does not use TLS" in err


def test_h_plain_client_to_a_tls_daemon(sandbox: FlomSandbox, certs: Standard) -> None:
    daemon = Daemon(sandbox, *tls(certs.peer1, certs.ca1.cert))
    err = client_fails(sandbox)
    assert "ret_cod=-126" in err
    assert "[TLS-PEER-NOT-TLS]" in err and "give this client the same --tls-* files" in err
    assert daemon.logged("the client does not speak TLS [TLS-PEER-NOT-TLS]")


# (i) incomplete chain; (k) dates; (l) a CA file that is not a CA ----------------------------


def test_i_incomplete_chain(sandbox: FlomSandbox, pki: Pki, certs: Standard) -> None:
    pki.ca("mid1", intermediate_of="ca1")
    leaf = pki.node("leaf-no-chain", peer_id() or "x", ca="mid1")
    daemon = Daemon(sandbox, *tls(leaf, certs.ca1.cert))
    err = client_fails(sandbox, *tls(certs.peer2, certs.ca1.cert))
    assert "[TLS-UNTRUSTED-PEER]" in err
    assert "intermediate certificates" in err
    assert daemon.logged("the client refused this daemon's certificate")
    # With its intermediate in the certificate file, the same daemon is accepted.
    chained = pki.node("leaf-chain", peer_id() or "x", ca="mid1", include_chain=True)
    daemon.stop()
    Daemon(sandbox, *tls(chained, certs.ca1.cert))
    assert sandbox.run(*tls(certs.peer2, certs.ca1.cert), "--", "true").returncode == 0


@pytest.mark.parametrize("when", ["expired", "not yet valid"])
def test_k_certificate_dates(sandbox: FlomSandbox, pki: Pki, certs: Standard, when: str) -> None:
    now = dt.datetime.now(dt.UTC)
    if when == "expired":
        span = EXPIRED
    else:
        span = (now + dt.timedelta(days=10), now + dt.timedelta(days=20))
    dated = pki.node(f"dated-{when}", "x", ca="ca1", not_before=span[0], not_after=span[1])
    daemon = Daemon(sandbox, *tls(dated, certs.ca1.cert))
    err = client_fails(sandbox, *tls(certs.peer2, certs.ca1.cert))
    assert "[TLS-PEER-CERT-DATES]" in err
    assert f"is {when}" in err
    assert span[0].strftime("%Y-%m-%d %H:%M:%S") in err
    assert span[1].strftime("%Y-%m-%d %H:%M:%S") in err
    # The daemon names its own refusal from the other side; a client with such a
    # certificate is refused by a sound daemon, with the dates in the daemon's log.
    assert daemon.logged("the client refused this daemon's certificate")


def test_k_daemon_names_an_expired_client_certificate(
    sandbox: FlomSandbox, pki: Pki, certs: Standard
) -> None:
    old = pki.node("old-client", "x", ca="ca1", not_before=EXPIRED[0], not_after=EXPIRED[1])
    daemon = Daemon(sandbox, *tls(certs.peer1, certs.ca1.cert))
    err = client_fails(sandbox, *tls(old, certs.ca1.cert))
    assert "[TLS-OUR-CERT-DATES]" in err and "this client's certificate is expired" in err
    assert daemon.logged("[TLS-PEER-CERT-DATES]")
    assert daemon.logged("valid from 2020-01-01 00:00:00 to 2021-01-01 00:00:00 UTC")


def test_l_ca_file_that_is_not_a_ca(sandbox: FlomSandbox, pki: Pki, certs: Standard) -> None:
    fake = pki.ca("fake-ca", not_a_ca=True)
    signed = pki.node("signed-by-fake", "x", ca="fake-ca")
    Daemon(sandbox, *tls(signed, fake.cert))
    err = client_fails(sandbox, *tls(certs.peer2, fake.cert))
    assert "[TLS-CA-NOT-A-CA]" in err
    assert "is not a CA certificate" in err


def test_a_stalled_handshake_never_holds_up_others(sandbox: FlomSandbox, certs: Standard) -> None:
    Daemon(
        sandbox, *tls(certs.peer1, certs.ca1.cert), env=sandbox.env | {"PYFLOM_STALL_TIMEOUT": "1"}
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        context.wrap_bio(incoming, outgoing).do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    stalled = socket.socket(socket.AF_UNIX)
    stalled.connect(sandbox.socket)
    stalled.sendall(hello[:20])  # half a ClientHello, then silence
    served = sandbox.run(*tls(certs.peer2, certs.ca1.cert), "--", "echo", "served")
    assert served.returncode == 0 and served.stdout == "served\n", served.stderr
    stalled.settimeout(10)
    assert stalled.recv(100) == b""  # cut off by the daemon
    stalled.close()


def test_k_library_names_the_dates_on_every_attempt(
    sandbox: FlomSandbox, pki: Pki, certs: Standard
) -> None:
    # The certificate capture is switched on for each handshake: a process that connects
    # many times names the dates every time, not only the first.
    import pyflom
    from pyflom.errors import ConnectionFailed

    old = pki.node("old-daemon", "x", ca="ca1", not_before=EXPIRED[0], not_after=EXPIRED[1])
    Daemon(sandbox, *tls(old, certs.ca1.cert))
    settings = pyflom.Settings(
        socket_name=sandbox.socket,
        tls_certificate=str(certs.peer2.cert),
        tls_private_key=str(certs.peer2.key),
        tls_ca_certificate=str(certs.ca1.cert),
    )
    for _ in range(3):
        with pytest.raises(ConnectionFailed) as failure:
            pyflom.Handle("R", settings=settings).lock()
        assert "valid from 2020-01-01 00:00:00 to 2021-01-01 00:00:00 UTC" in str(failure.value)
