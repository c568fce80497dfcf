"""``flom-tls``: the CA and node certificates it makes, and the preflight ``check``.

Real files in ``tmp_path``; the tool runs in-process (``main``) and once as a
subprocess. Certificates that ``flom-tls`` would never make (intermediates, non-CA
"CAs", expired ones) are built here with ``cryptography``. EC keys keep it fast.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyflom import cmdline, uniqueid
from pyflom.tls import pki, tool
from pyflom.tls.preflight import Finding, check
from pyflom.tls.tool import SUBCOMMANDS, main

UID = "5c1c7b6f0e9d4d2a8f3b2a1c0d9e8f7a"
OTHER_UID = "00112233445566778899aabbccddeeff"
PASSWORD_ENV = "PYFLOM_TLS_KEY_PASSWORD"
ALL_CHECKS = [
    "CHECK-CERT-FILE",
    "CHECK-KEY-FILE",
    "CHECK-CA-FILE",
    "CHECK-KEY-PERMISSIONS",
    "CHECK-KEY-MISMATCH",
    "CHECK-CA-NOT-A-CA",
    "CHECK-CERT-PURPOSE",
    "CHECK-CHAIN",
    "CHECK-CERT-DATES",
    "CHECK-CA-DATES",
    "CHECK-CN-UNIQUE-ID",
]
TIMEOUT = 10.0


# -- helpers ----------------------------------------------------------------------------


class Node:
    """A node's three files."""

    def __init__(self, cert: Path, key: Path, ca: Path) -> None:
        self.cert, self.key, self.ca = cert, key, ca

    def check(self, **kwargs: Any) -> list[Finding]:
        kwargs.setdefault("unique_id", UID)
        return check(self.cert, self.key, self.ca, **kwargs)

    def args(self) -> list[str]:
        return ["--cert", str(self.cert), "--key", str(self.key), "--ca", str(self.ca)]


@pytest.fixture(autouse=True)
def _no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


@pytest.fixture
def fixed_uid(monkeypatch: pytest.MonkeyPatch) -> str:
    """This machine's unique id, as the tool sees it, is UID."""
    monkeypatch.setattr(uniqueid, "read_unique_id", lambda *args: UID)
    return UID


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Path, Path]:
    return pki.init_ca(tmp_path / "ca")


def make_node(ca: tuple[Path, Path], where: Path, cn: str = UID, name: str = "node") -> Node:
    cert, key = pki.issue(ca[0], ca[1], where, cn, name=name)
    return Node(cert, key, ca[0])


@pytest.fixture
def node(ca: tuple[Path, Path], tmp_path: Path) -> Node:
    return make_node(ca, tmp_path / "node")


def failed(findings: list[Finding]) -> set[str]:
    return {f.ident for f in findings if not f.ok}


def text_of(findings: list[Finding], ident: str) -> str:
    (finding,) = [f for f in findings if f.ident == ident]
    return finding.text


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def load_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), None)


def pem_key(key: Any, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    return data


def write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def build(
    cn: str,
    issuer: tuple[x509.Certificate, Any] | None,
    *,
    ca: bool,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    purposes: tuple[x509.ObjectIdentifier, ...] = (
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate made by hand: self-signed when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(hours=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(purposes)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def write_node(
    where: Path, cert: x509.Certificate, key: Any, ca: Path, *extra: x509.Certificate
) -> Node:
    where.mkdir(parents=True, exist_ok=True)
    cert_path = where / "hand.crt"
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *extra))
    )
    return Node(cert_path, write_private(where / "hand.key", pem_key(key)), ca)


def ca_pair(ca: tuple[Path, Path]) -> tuple[x509.Certificate, Any]:
    return load_cert(ca[0]), load_key(ca[1])


# -- init-ca, issue, check --------------------------------------------------------------


def test_init_issue_check_all_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixed_uid: str
) -> None:
    """The tool's whole flow: a CA, a node for this machine's id, a clean check."""
    assert main(["init-ca", "--dir", str(tmp_path / "ca")]) == 0
    out = capsys.readouterr().out
    ca_cert, ca_key = tmp_path / "ca" / "flom-ca.crt", tmp_path / "ca" / "flom-ca.key"
    assert f"CA certificate: {ca_cert}" in out
    assert f"CA private key: {ca_key}" in out
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600

    node_dir = tmp_path / "nodes"
    args = ["issue", "--ca-cert", str(ca_cert), "--ca-key", str(ca_key), "--dir", str(node_dir)]
    assert main(args) == 0
    out = capsys.readouterr().out
    cert, key = node_dir / f"node-{UID}.crt", node_dir / f"node-{UID}.key"
    assert f"CN: {fixed_uid}" in out
    assert f"--tls-certificate={cert}" in out
    assert f"--tls-private-key={key}" in out
    assert f"--tls-ca-certificate={ca_cert}" in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_cert(cert).subject.rfc4514_string() == f"CN={UID}"

    assert main(["check", "--cert", str(cert), "--key", str(key), "--ca", str(ca_cert)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ALL_CHECKS
    assert all(line.startswith("ok   CHECK-") for line in lines), lines
    assert f"certificate CN '{UID}' equals this machine's unique id" in lines[-1]


def test_extensions_and_dates(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """CA and node certificates carry the extensions strict verifiers require."""
    before = dt.datetime.now(dt.UTC)
    root = load_cert(ca[0])
    cert_path, _ = pki.issue(
        ca[0], ca[1], tmp_path, "n1", dns_names=["node1.example"], ip_addresses=["10.0.0.1"]
    )
    leaf = load_cert(cert_path)
    ext = root.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert (
        root.issuer
        == root.subject
        == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flom-ca")])
    )
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
        ski.digest
    )
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)

    ext = leaf.extensions
    constraints = ext.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
        ski.digest
    )
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest != ski.digest
    leaf.verify_directly_issued_by(root)
    skew = before - leaf.not_valid_before_utc
    assert dt.timedelta(minutes=4) < skew <= dt.timedelta(minutes=5, seconds=1)
    assert (leaf.not_valid_after_utc - before).days in (824, 825)
    # No SAN asked for: DNS:localhost.
    default = load_cert(pki.issue(ca[0], ca[1], tmp_path, "n2")[0])
    default_san = default.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert default_san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_rsa_node_key(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """An RSA node key is 3072 bits and its key usage adds keyEncipherment."""
    cert_path, key_path = pki.issue(ca[0], ca[1], tmp_path, UID, key_type="rsa")
    key = load_key(key_path)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    usage = load_cert(cert_path).extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert failed(Node(cert_path, key_path, ca[0]).check()) == set()


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> list[Any]:
    """Handshake and one round trip over a socketpair; each side's (peer cert, error)."""
    server_sock, client_sock = socket.socketpair()
    results: list[Any] = [None, None]

    def run(index: int, sock: socket.socket, ctx: ssl.SSLContext, server: bool) -> None:
        try:
            sock.settimeout(TIMEOUT)
            with ctx.wrap_socket(sock, server_side=server) as conn:
                if server:
                    assert conn.recv(4) == b"ping"
                    conn.sendall(b"pong")
                else:
                    conn.sendall(b"ping")
                    assert conn.recv(4) == b"pong"
                results[index] = (conn.getpeercert(), None)
        except BaseException as exc:
            results[index] = (None, exc)
        finally:
            sock.close()

    threads = [
        threading.Thread(target=run, args=(0, server_sock, server_ctx, True), daemon=True),
        threading.Thread(target=run, args=(1, client_sock, client_ctx, False), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
        assert not thread.is_alive(), "handshake hung"
    return results


def test_strict_mutual_tls_between_issued_nodes(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """Two issued nodes accept each other with OpenSSL's VERIFY_X509_STRICT on both sides."""
    daemon = make_node(ca, tmp_path, cn="daemon-node", name="daemon")
    client = make_node(ca, tmp_path, cn="client-node", name="client")
    contexts = []
    for node, protocol in ((daemon, ssl.PROTOCOL_TLS_SERVER), (client, ssl.PROTOCOL_TLS_CLIENT)):
        ctx = ssl.SSLContext(protocol)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        ctx.load_cert_chain(node.cert, node.key)
        ctx.load_verify_locations(node.ca)
        contexts.append(ctx)
    (server_peer, server_error), (client_peer, client_error) = _handshake(*contexts)
    assert server_error is None and client_error is None, (server_error, client_error)
    assert server_peer["subject"] == ((("commonName", "client-node"),),)
    assert client_peer["subject"] == ((("commonName", "daemon-node"),),)


def test_existing_files_are_kept_unless_forced(
    ca: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init-ca and issue refuse to overwrite; --force replaces, and the key stays 0600."""
    original = ca[0].read_bytes()
    assert main(["init-ca", "--dir", str(ca[0].parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flom-tls: ") and "already exists" in err and "--force" in err
    assert ca[0].read_bytes() == original
    ca[1].chmod(0o644)
    assert main(["init-ca", "--dir", str(ca[0].parent), "--force"]) == 0
    assert ca[0].read_bytes() != original
    assert stat.S_IMODE(ca[1].stat().st_mode) == 0o600
    capsys.readouterr()

    issue = ["issue", "--ca-cert", str(ca[0]), "--ca-key", str(ca[1]), "--dir", str(tmp_path)]
    assert main([*issue, "--cn", "x"]) == 0
    first = (tmp_path / "node-x.crt").read_bytes()
    assert main([*issue, "--cn", "x"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "node-x.crt").read_bytes() == first
    assert main([*issue, "--cn", "x", "--force"]) == 0
    assert (tmp_path / "node-x.crt").read_bytes() != first


# -- check: each failure class ----------------------------------------------------------


def test_key_mismatch(ca: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = make_node(ca, tmp_path, name="a"), make_node(ca, tmp_path, name="b")
    findings = Node(a.cert, b.key, a.ca).check()
    assert failed(findings) == {"CHECK-KEY-MISMATCH"}
    text = text_of(findings, "CHECK-KEY-MISMATCH")
    assert f"'{b.key}' does not belong to certificate '{a.cert}'" in text


def test_der_certificate_and_key(node: Node, tmp_path: Path) -> None:
    """DER files fail with the openssl command that converts them; the rest is checked."""
    der_cert = tmp_path / "node.der"
    der_cert.write_bytes(load_cert(node.cert).public_bytes(serialization.Encoding.DER))
    findings = Node(der_cert, node.key, node.ca).check()
    assert failed(findings) == {"CHECK-CERT-FILE"}
    assert f"'openssl x509 -inform DER -in {der_cert} -out {der_cert}.pem'" in text_of(
        findings, "CHECK-CERT-FILE"
    )
    der_key = write_private(
        tmp_path / "key.der",
        load_key(node.key).private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    findings = Node(node.cert, der_key, node.ca).check()
    assert failed(findings) == {"CHECK-KEY-FILE"}
    assert f"'openssl pkey -inform DER -in {der_key} -out {der_key}.pem'" in text_of(
        findings, "CHECK-KEY-FILE"
    )


def test_encrypted_key(node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encrypted key fails unless PYFLOM_TLS_KEY_PASSWORD opens it."""
    locked = write_private(tmp_path / "locked.key", pem_key(load_key(node.key), b"s3cret"))
    files = Node(node.cert, locked, node.ca)
    findings = files.check()
    assert failed(findings) == {"CHECK-KEY-FILE"}
    assert f"is encrypted and {PASSWORD_ENV} is not set" in text_of(findings, "CHECK-KEY-FILE")
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    findings = files.check()
    assert failed(findings) == {"CHECK-KEY-FILE"}
    assert "does not open it" in text_of(findings, "CHECK-KEY-FILE")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    findings = files.check()
    assert failed(findings) == set()
    assert f"encrypted: {PASSWORD_ENV} opens it" in text_of(findings, "CHECK-KEY-FILE")


def test_ca_file_that_is_not_a_ca(tmp_path: Path) -> None:
    """A self-signed non-CA certificate used as CA: the chain verifies, the CA check fails."""
    fake_ca = build("not-a-ca", None, ca=False)
    leaf, key = build(UID, fake_ca, ca=False)
    ca_path = tmp_path / "fake-ca.crt"
    ca_path.write_bytes(fake_ca[0].public_bytes(serialization.Encoding.PEM))
    findings = write_node(tmp_path, leaf, key, ca_path).check()
    assert failed(findings) == {"CHECK-CA-NOT-A-CA"}
    text = text_of(findings, "CHECK-CA-NOT-A-CA")
    assert "'CN=not-a-ca', which is not a CA (basicConstraints CA:TRUE is missing)" in text


def test_chain_through_intermediate(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """issue() with an intermediate CA appends it; without it the chain is incomplete."""
    inter_cert, inter_key = build("flom-intermediate", ca_pair(ca), ca=True)
    inter = (tmp_path / "inter.crt", write_private(tmp_path / "inter.key", pem_key(inter_key)))
    inter[0].write_bytes(inter_cert.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = pki.issue(inter[0], inter[1], tmp_path, UID)
    complete = Node(cert_path, key_path, ca[0])
    findings = complete.check()
    assert failed(findings) == set()
    assert "through 'CN=flom-intermediate'" in text_of(findings, "CHECK-CHAIN")

    leaf_only = tmp_path / "leaf-only.crt"
    leaf_only.write_bytes(load_cert(cert_path).public_bytes(serialization.Encoding.PEM))
    findings = Node(leaf_only, key_path, ca[0]).check()
    assert failed(findings) == {"CHECK-CHAIN"}
    text = text_of(findings, "CHECK-CHAIN")
    assert "incomplete chain" in text and "'CN=flom-intermediate' is in neither file" in text


def test_signed_by_another_ca(node: Node, tmp_path: Path) -> None:
    """Another CA with the same name: the chain check says the key differs."""
    other_ca, _ = pki.init_ca(tmp_path / "other")
    findings = Node(node.cert, node.key, other_ca).check()
    assert failed(findings) == {"CHECK-CHAIN"}
    assert "another key, another CA" in text_of(findings, "CHECK-CHAIN")


def test_dates(ca: tuple[Path, Path], node: Node) -> None:
    """Expired, not yet valid (node and CA), expiring soon; dates in UTC ISO format."""
    leaf = load_cert(node.cert)
    end = leaf.not_valid_after_utc
    later = end + dt.timedelta(days=1)
    findings = node.check(now=later)
    assert failed(findings) == {"CHECK-CERT-DATES"}
    assert f"expired on {end:%Y-%m-%dT%H:%M:%SZ} (now {later:%Y-%m-%dT%H:%M:%SZ})" in text_of(
        findings, "CHECK-CERT-DATES"
    )

    start = leaf.not_valid_before_utc
    early = start - dt.timedelta(hours=1)
    findings = node.check(now=early)
    assert failed(findings) == {"CHECK-CERT-DATES", "CHECK-CA-DATES"}
    assert f"is not valid before {start:%Y-%m-%dT%H:%M:%SZ}" in text_of(
        findings, "CHECK-CERT-DATES"
    )

    findings = node.check(now=end - dt.timedelta(days=10))
    assert failed(findings) == set()
    assert "expires soon" in text_of(findings, "CHECK-CERT-DATES")
    assert "expires soon" not in text_of(node.check(), "CHECK-CERT-DATES")

    ca_end = load_cert(ca[0]).not_valid_after_utc
    findings = node.check(now=ca_end + dt.timedelta(seconds=1))
    assert {"CHECK-CA-DATES", "CHECK-CERT-DATES"} == failed(findings)
    assert f"'CN=flom-ca' in '{ca[0]}' expired on" in text_of(findings, "CHECK-CA-DATES")


def test_expired_certificate_made_in_the_past(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """A certificate that expired yesterday fails at the current time (no ``now``)."""
    now = dt.datetime.now(dt.UTC)
    leaf, key = build(
        UID,
        ca_pair(ca),
        ca=False,
        not_before=now - dt.timedelta(days=10),
        not_after=now - dt.timedelta(days=1),
    )
    findings = write_node(tmp_path, leaf, key, ca[0]).check()
    assert failed(findings) == {"CHECK-CERT-DATES"}
    assert "expired on" in text_of(findings, "CHECK-CERT-DATES")


def test_cn_and_unique_id(node: Node) -> None:
    findings = node.check(unique_id=OTHER_UID)
    assert failed(findings) == {"CHECK-CN-UNIQUE-ID"}
    text = text_of(findings, "CHECK-CN-UNIQUE-ID")
    assert f"CN '{UID}' differs from this machine's unique id '{OTHER_UID}'" in text
    findings = node.check(unique_id=None)
    assert failed(findings) == set()
    assert "skipped" in text_of(findings, "CHECK-CN-UNIQUE-ID")


def test_key_readable_by_others(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    node.key.chmod(0o644)
    findings = node.check()
    assert failed(findings) == {"CHECK-KEY-PERMISSIONS"}
    assert "has mode 0644" in text_of(findings, "CHECK-KEY-PERMISSIONS")
    assert f"'chmod 600 {node.key}'" in text_of(findings, "CHECK-KEY-PERMISSIONS")
    assert main(["check", *node.args()]) == 1
    assert "FAIL CHECK-KEY-PERMISSIONS " in capsys.readouterr().out


def test_node_certificate_without_client_use(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """A server-only certificate cannot be a node's: flom also connects as a client."""
    leaf, key = build(UID, ca_pair(ca), ca=False, purposes=(ExtendedKeyUsageOID.SERVER_AUTH,))
    findings = write_node(tmp_path, leaf, key, ca[0]).check()
    assert failed(findings) == {"CHECK-CERT-PURPOSE"}
    assert "lacks clientAuth" in text_of(findings, "CHECK-CERT-PURPOSE")


def test_unusable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing, empty and non-certificate files fail without a traceback."""
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN NONSENSE-----\nAAAA\n-----END NONSENSE-----\n")
    missing = tmp_path / "missing.crt"
    assert main(["check", "--cert", str(missing), "--key", str(empty), "--ca", str(junk)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"FAIL CHECK-CERT-FILE certificate '{missing}' does not exist: give the right path"
    )
    assert out[1] == f"FAIL CHECK-KEY-FILE private key '{empty}' is empty"
    assert out[2].startswith(f"FAIL CHECK-CA-FILE CA file '{junk}' holds no readable certificate")


# -- the command ------------------------------------------------------------------------


def test_check_reads_the_configuration(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without files, check takes them from a flom config file; none at all: status 2."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(
        cmdline, "load_settings", functools.partial(cmdline.load_settings, system_files=())
    )
    assert main(["check"]) == 2
    assert "no TLS files to check (--cert, --key, --ca missing)" in capsys.readouterr().err
    config = tmp_path / "flom.conf"
    config.write_text(
        f"[TLS]\nTlsCertificate={node.cert}\nTlsPrivateKey={node.key}\nTlsCaCertificate={node.ca}\n"
    )
    monkeypatch.setattr(uniqueid, "read_unique_id", lambda *args: UID)
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"certificate '{node.cert}' chains to CA 'CN=flom-ca'" in out
    assert main(["check", "--config", str(tmp_path / "absent.conf")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / ".flom").write_text(config.read_text())  # ~/.flom is read by default
    assert main(["check"]) == 0


def test_usage_and_setup_errors(
    ca: tuple[Path, Path],
    node: Node,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Status 2 and one message on stderr, never a traceback."""

    def fails(args: list[str], message: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert "Traceback" not in err

    fails([], "required: COMMAND")
    fails(["check", "--bogus"], "unrecognized arguments: --bogus")
    fails(["issue", "--ca-key", str(ca[1])], "--ca-cert")
    issue = ["issue", "--dir", str(tmp_path / "out"), "--cn", "x"]
    missing = tmp_path / "nope.crt"
    fails(
        [*issue, "--ca-cert", str(missing), "--ca-key", str(ca[1])], f"'{missing}' cannot be read"
    )
    fails(
        [*issue, "--ca-cert", str(node.cert), "--ca-key", str(node.key)], "is not a CA certificate"
    )
    fails([*issue, "--ca-cert", str(ca[0]), "--ca-key", str(node.key)], "does not belong to CA")
    fails([*issue, "--ca-cert", str(ca[0]), "--ca-key", str(ca[1]), "--days", "0"], "--days")
    fails(
        [*issue, "--ca-cert", str(ca[0]), "--ca-key", str(ca[1]), "--ip", "300.1.1.1"], "300.1.1.1"
    )
    fails(["init-ca", "--dir", str(tmp_path / "x"), "--key-type", "dsa"], "invalid choice")

    def no_id(*args: object) -> str:
        raise uniqueid.NoUniqueId("no valid machine id found")

    monkeypatch.setattr(uniqueid, "read_unique_id", no_id)
    fails(["issue", "--ca-cert", str(ca[0]), "--ca-key", str(ca[1])], "give the CN with --cn")
    assert not (tmp_path / "out").exists()


def test_subcommand_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every subcommand is registered, in help order; one function adds a command."""
    assert list(SUBCOMMANDS) == ["init-ca", "issue", "check", "probe", "decode"]
    assert main(["probe", "--anything", "x"]) == 2  # unknown options are usage errors
    assert "unrecognized arguments" in capsys.readouterr().err
    monkeypatch.setattr(tool, "SUBCOMMANDS", dict(SUBCOMMANDS))

    @tool.subcommand("hello", "say hello", tool.arg("--to", default="world"))
    def _hello(args: Any) -> int:
        print(f"hello {args.to}")
        return 7

    assert main(["hello", "--to", "flom"]) == 7
    assert capsys.readouterr().out == "hello flom\n"


def test_key_password_variable_is_the_products() -> None:
    from pyflom.tls.contexts import KEY_PASSWORD_ENV

    assert pki.KEY_PASSWORD_ENV == KEY_PASSWORD_ENV == PASSWORD_ENV


def test_as_a_subprocess(ca: tuple[Path, Path], tmp_path: Path) -> None:
    """``python -m pyflom.tls.tool``: check output and status; an error without traceback.

    The CN is this machine's real unique id (the child reads it); without one the CN
    check is skipped, which is ok too."""
    try:
        machine_id: str | None = uniqueid.read_unique_id()
    except uniqueid.NoUniqueId:
        machine_id = None
    own = make_node(ca, tmp_path, cn=machine_id or "x", name="own")
    command = [sys.executable, "-m", "pyflom.tls.tool"]
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop(PASSWORD_ENV, None)
    done = subprocess.run(
        [*command, "check", *own.args()], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ALL_CHECKS
    assert all(line.startswith("ok   ") for line in lines)

    done = subprocess.run(
        [*command, "issue", "--ca-cert", str(tmp_path / "nope.crt"), "--ca-key", "nope.key"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("flom-tls: CA certificate ") and "cannot be read" in done.stderr
    assert "Traceback" not in done.stderr
