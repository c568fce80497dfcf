"""The test PKI (tests/pki.py) makes material that real TLS stacks accept or reject as intended.

Every handshake is a real one: the stdlib ``ssl`` module (OpenSSL) on both ends of a
socketpair, one thread per end, socket timeouts instead of sleeps.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki import WRONG_CN, NodeFiles, Pki, Standard, pki_fixture, standard  # noqa: F401

UNIQUE_ID = "5c1c7b6f0e9d4d2a8f3b2a1c0d9e8f7a"
TIMEOUT = 10.0
VERSIONS = pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"]
)

# OpenSSL X509_V_ERR_* codes (x509_vfy.h)
CERT_NOT_YET_VALID = 9
CERT_HAS_EXPIRED = 10
SELF_SIGNED_CERT_IN_CHAIN = 19
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20


@pytest.fixture(name="std")
def std_fixture(pki: Pki) -> Standard:
    """The standard set for UNIQUE_ID (built once per session, then cached)."""
    return standard(pki, UNIQUE_ID)


# -- helpers ----------------------------------------------------------------------------


def server_context(
    node: NodeFiles, cafile: Path, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> ssl.SSLContext:
    """Daemon side: presents ``node``, requires a client certificate issued by ``cafile``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_cert_chain(node.cert, node.key)
    ctx.load_verify_locations(cafile)
    return ctx


def client_context(
    node: NodeFiles | None, cafile: Path, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> ssl.SSLContext:
    """Client side: presents ``node`` (if any), requires a server certificate from ``cafile``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.check_hostname = False  # FLoM checks the unique id in the CN, not a host name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if node is not None:
        ctx.load_cert_chain(node.cert, node.key)
    ctx.load_verify_locations(cafile)
    return ctx


@dataclass
class Side:
    """What one end of a handshake saw."""

    peer_cert: dict[str, Any] | None = None
    version: str | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.peer_cert is not None


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Side, Side]:
    """Handshake, then exchange one message each way; return (server, client) outcomes."""
    server_sock, client_sock = socket.socketpair()
    server, client = Side(), Side()

    def run(side: Side, sock: socket.socket, is_server: bool) -> None:
        ctx = server_ctx if is_server else client_ctx
        try:
            sock.settimeout(TIMEOUT)
            with ctx.wrap_socket(sock, server_side=is_server) as tls:
                side.peer_cert = tls.getpeercert()
                side.version = tls.version()
                # One round trip: with TLS 1.3 the client only learns here that the
                # server rejected its certificate.
                if is_server:
                    assert tls.recv(4) == b"ping"
                    tls.sendall(b"pong")
                else:
                    tls.sendall(b"ping")
                    assert tls.recv(4) == b"pong"
        except BaseException as exc:
            side.error = exc
        finally:
            sock.close()

    threads = [
        threading.Thread(target=run, args=(server, server_sock, True), daemon=True),
        threading.Thread(target=run, args=(client, client_sock, False), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
        assert not thread.is_alive(), "handshake hung"
    return server, client


def cn_of(peer_cert: dict[str, Any] | None) -> str:
    """The subject CN of a ``getpeercert()`` dict."""
    assert peer_cert is not None
    values = [value for rdn in peer_cert["subject"] for key, value in rdn if key == "commonName"]
    assert len(values) == 1, peer_cert["subject"]
    return str(values[0])


def verify_error(side: Side) -> ssl.SSLCertVerificationError:
    """The certificate verification error of ``side`` (fails if there is none)."""
    assert isinstance(side.error, ssl.SSLCertVerificationError), repr(side.error)
    return side.error


def load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


# -- the good path ----------------------------------------------------------------------


@VERSIONS
def test_mutual_tls_with_strict_verification(std: Standard, version: ssl.TLSVersion) -> None:
    """peer1 (daemon) and peer2 (client) of ca1 accept each other under X509_STRICT."""
    server, client = handshake(
        server_context(std.peer1, std.ca1.cert, version),
        client_context(std.peer2, std.ca1.cert, version),
    )
    assert server.ok, repr(server.error)
    assert client.ok, repr(client.error)
    assert server.version == client.version == version.name.replace("_", ".")
    assert cn_of(server.peer_cert) == cn_of(client.peer_cert) == UNIQUE_ID
    assert std.peer1.cn == std.peer2.cn == UNIQUE_ID


def test_standard_set(std: Standard, pki: Pki) -> None:
    """The standard set has the documented names, CNs, issuers and file layout."""
    ca1, ca2 = load(std.ca1.cert)[0], load(std.ca2.cert)[0]
    assert ca1.subject != ca2.subject
    assert ca1.public_key() != ca2.public_key()
    for node, issuer, cn in [
        (std.peer1, ca1, UNIQUE_ID),
        (std.peer2, ca1, UNIQUE_ID),
        (std.peer3, ca1, WRONG_CN),
        (std.other, ca2, UNIQUE_ID),
    ]:
        (cert,) = load(node.cert)
        assert node.cn == cn
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
            "pyflom-tests"
        )
        cert.verify_directly_issued_by(issuer)
        assert node.cert == pki.root / f"{node.name}.crt"
        assert node.key == pki.root / f"{node.name}.key"
        assert node.key.stat().st_mode & 0o077 == 0
    assert std.peer1.cert != std.peer2.cert
    assert load(std.peer1.cert)[0].public_key() != load(std.peer2.cert)[0].public_key()
    assert std.ca1.cert == pki.root / "ca1.crt"


def test_wrong_cn_peer_still_verifies(std: Standard) -> None:
    """peer3 is a valid ca1 certificate: only its CN (not the unique id) is wrong."""
    server, client = handshake(
        server_context(std.peer3, std.ca1.cert), client_context(std.peer1, std.ca1.cert)
    )
    assert server.ok and client.ok, (server.error, client.error)
    assert cn_of(client.peer_cert) == WRONG_CN != UNIQUE_ID


def test_cryptography_verifier_accepts_nodes(std: Standard) -> None:
    """The RFC 5280 verifier of ``cryptography`` (stricter than OpenSSL) accepts peer1."""
    store = verification.Store(load(std.ca1.cert))
    (leaf,) = load(std.peer1.cert)
    builder = verification.PolicyBuilder().store(store)
    chain = builder.build_server_verifier(x509.DNSName("localhost")).verify(leaf, [])
    assert chain[-1] == load(std.ca1.cert)[0]
    for ip in ("127.0.0.1", "::1"):
        by_ip = builder.build_server_verifier(x509.IPAddress(ipaddress.ip_address(ip)))
        assert by_ip.verify(leaf, [])[0] == leaf
    client = builder.build_client_verifier().verify(leaf, [])
    assert client.chain[0] == leaf
    other_store = verification.Store(load(std.ca2.cert))
    with pytest.raises(verification.VerificationError):
        verification.PolicyBuilder().store(other_store).build_client_verifier().verify(leaf, [])


# -- rejections -------------------------------------------------------------------------


@VERSIONS
def test_client_rejects_server_of_other_ca(std: Standard, version: ssl.TLSVersion) -> None:
    """A client trusting only ca2 refuses peer1 (issued by ca1)."""
    server, client = handshake(
        server_context(std.peer1, std.ca1.cert, version),
        client_context(std.other, std.ca2.cert, version),
    )
    assert verify_error(client).verify_code in (
        SELF_SIGNED_CERT_IN_CHAIN,
        UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    )
    assert not server.ok


@VERSIONS
def test_server_rejects_client_of_other_ca(std: Standard, version: ssl.TLSVersion) -> None:
    """A daemon trusting only ca1 refuses the client certificate ``other`` (issued by ca2)."""
    server, client = handshake(
        server_context(std.peer1, std.ca1.cert, version),
        client_context(std.other, std.ca1.cert, version),
    )
    assert verify_error(server).verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert not client.ok


def test_server_rejects_client_without_certificate(std: Standard) -> None:
    """Mutual TLS: a client presenting no certificate is refused by the daemon."""
    server, client = handshake(
        server_context(std.peer1, std.ca1.cert), client_context(None, std.ca1.cert)
    )
    assert isinstance(server.error, ssl.SSLError), repr(server.error)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(server.error)
    assert not client.ok


@pytest.mark.parametrize("include_chain", [True, False], ids=["chain", "leaf-only"])
def test_intermediate_ca(pki: Pki, std: Standard, include_chain: bool) -> None:
    """A node of an intermediate verifies against the root only if it sends the chain."""
    pki.ca("ica1", intermediate_of="ca1")
    name = "chained" if include_chain else "unchained"
    node = pki.node(name, UNIQUE_ID, ca="ica1", include_chain=include_chain)
    certs = load(node.cert)
    assert len(certs) == (2 if include_chain else 1)
    ica = load(pki.ca("ica1", intermediate_of="ca1").cert)[0]
    certs[0].verify_directly_issued_by(ica)
    ica.verify_directly_issued_by(load(std.ca1.cert)[0])
    assert ica.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0

    server, client = handshake(
        server_context(node, std.ca1.cert), client_context(std.peer2, std.ca1.cert)
    )
    if include_chain:
        assert certs[1] == ica
        assert client.ok and server.ok, (client.error, server.error)
        assert cn_of(client.peer_cert) == UNIQUE_ID
    else:
        assert verify_error(client).verify_code == UNABLE_TO_GET_ISSUER_CERT_LOCALLY


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "default-flags"])
def test_not_a_ca_is_rejected(pki: Pki, strict: bool) -> None:
    """A CA file holding a non-CA certificate does not validate the nodes it signed.

    The node's signature is genuine (checked below), so the refusal comes from the
    missing CA basic constraint; OpenSSL 3.0 reports "invalid CA certificate".
    """
    notca = pki.ca("notca", not_a_ca=True)
    node = pki.node("signed-by-notca", UNIQUE_ID, ca="notca")
    (notca_cert,) = load(notca.cert)
    assert not notca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not notca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    load(node.cert)[0].verify_directly_issued_by(notca_cert)

    client_ctx = client_context(None, notca.cert)
    if not strict:
        client_ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
    server_ctx = server_context(node, notca.cert)
    server_ctx.verify_mode = ssl.CERT_NONE
    server, client = handshake(server_ctx, client_ctx)
    error = verify_error(client)
    assert "invalid CA certificate" in error.verify_message, error.verify_message
    assert not server.ok


@pytest.mark.parametrize(
    ("days_before", "days_after", "code"),
    [(-10, -1, CERT_HAS_EXPIRED), (1, 30, CERT_NOT_YET_VALID)],
    ids=["expired", "not-yet-valid"],
)
def test_validity_period(
    pki: Pki, std: Standard, days_before: int, days_after: int, code: int
) -> None:
    """An expired node fails with code 10, a not-yet-valid one with code 9."""
    now = dt.datetime.now(dt.UTC)
    node = pki.node(
        f"validity{days_before}",
        UNIQUE_ID,
        ca="ca1",
        not_before=now + dt.timedelta(days=days_before),
        not_after=now + dt.timedelta(days=days_after),
    )
    server, client = handshake(
        server_context(node, std.ca1.cert), client_context(std.peer2, std.ca1.cert)
    )
    assert verify_error(client).verify_code == code
    assert not server.ok


# -- key and file formats ---------------------------------------------------------------


def test_encrypted_key(pki: Pki, std: Standard) -> None:
    """An encrypted key loads with its password only."""
    node = pki.node("encrypted", UNIQUE_ID, ca="ca1", encrypt_key_with=b"s3cret")
    assert node.key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(node.cert, node.key, password=b"s3cret")
    with pytest.raises(ssl.SSLError):
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            node.cert, node.key, password=b"wrong"
        )
    # and the decrypted key really goes with the certificate
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(std.ca1.cert)
    server, client = handshake(ctx, client_context(std.peer2, std.ca1.cert))
    assert server.ok and client.ok, (server.error, client.error)


def test_der_copy(pki: Pki, std: Standard) -> None:
    """DER copies hold the same objects, and ``ssl`` refuses them: it wants PEM."""
    cert_der = pki.der_copy(std.peer1.cert)
    key_der = pki.der_copy(std.peer1.key)
    assert cert_der != key_der
    assert cert_der.parent == key_der.parent == std.peer1.cert.parent
    assert cert_der.suffix == key_der.suffix == ".der"
    assert cert_der.read_bytes()[0] == key_der.read_bytes()[0] == 0x30  # ASN.1 SEQUENCE
    assert x509.load_der_x509_certificate(cert_der.read_bytes()) == load(std.peer1.cert)[0]
    # load_cert_chain reads PEM only: a DER certificate or key gives
    # ssl.SSLError(524297, '[SSL] PEM lib (_ssl.c:...)') (ERR_R_PEM_LIB) with OpenSSL 3.0.
    for cert, key in [(cert_der, std.peer1.key), (std.peer1.cert, key_der)]:
        with pytest.raises(ssl.SSLError, match="PEM lib"):
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)


@VERSIONS
def test_rsa_node(pki: Pki, std: Standard, version: ssl.TLSVersion) -> None:
    """An RSA-2048 node (signed by the EC CA) works as a daemon certificate."""
    node = pki.node("rsa", UNIQUE_ID, ca="ca1", key_type="rsa")
    (cert,) = load(node.cert)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    server, client = handshake(
        server_context(node, std.ca1.cert, version),
        client_context(std.peer2, std.ca1.cert, version),
    )
    assert server.ok and client.ok, (server.error, client.error)
    assert cn_of(client.peer_cert) == UNIQUE_ID


def test_ec_node_extensions(std: Standard) -> None:
    """EC nodes: P-256 key, no keyEncipherment, both EKUs, SAN, SKI and AKI."""
    (cert,) = load(std.peer1.cert)
    (ca,) = load(std.ca1.cert)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.issuer == ca.subject
    ca_usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ca_usage.critical and ca_usage.value.key_cert_sign and ca_usage.value.crl_sign
    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca


def test_cache(pki: Pki, std: Standard) -> None:
    """Same name, same files and bytes; same name with other parameters is an error."""
    before = std.peer1.cert.read_bytes()
    again = standard(pki, UNIQUE_ID)
    assert again == std
    assert std.peer1.cert.read_bytes() == before
    assert pki.ca("ca1") == std.ca1
    with pytest.raises(ValueError, match="other parameters"):
        pki.node(std.peer1.name, "another-cn", ca="ca1")
    with pytest.raises(ValueError, match="other parameters"):
        pki.ca("ca1", not_a_ca=True)
    with pytest.raises(ValueError, match="another kind"):
        pki.node("ca2", UNIQUE_ID, ca="ca1")
