"""Real X.509 material (CAs, node certificates, keys) for the TLS tests.

Everything is generated with ``cryptography`` into one directory and cached by name, so
asking twice for ``"ca1"`` or ``"peer1"`` costs nothing: files are ``<root>/<name>.crt``
(PEM certificate) and ``<root>/<name>.key`` (PEM PKCS#8 key). Node certificates are
accepted by strict verifiers (OpenSSL's ``VERIFY_X509_STRICT``): version 3, SKI and AKI,
critical basic constraints and key usage, a SAN for localhost, 127.0.0.1 and ::1.

Use from a test module (the tests directory is on ``sys.path``, as for ``conftest``)::

    from pki import Pki, pki_fixture, standard  # noqa: F401

    def test_something(pki: Pki) -> None:
        s = standard(pki, unique_id)
        ctx.load_cert_chain(s.peer1.cert, s.peer1.key)
        ctx.load_verify_locations(s.ca1.cert)

The fixture ``pki`` is session scoped (one per pytest-xdist worker).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

ORGANIZATION = "pyflom-tests"
WRONG_CN = "00112233445566778899aabbccddeeff"
"""CN of ``Standard.peer3``: a well-formed unique id that is not the machine's."""

_ONE_DAY = dt.timedelta(days=1)
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


@dataclass(frozen=True)
class CaFiles:
    """A certificate authority: PEM certificate and PEM key."""

    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class NodeFiles:
    """A leaf (daemon or client) certificate: PEM chain, PEM key and the subject CN."""

    name: str
    cert: Path
    key: Path
    cn: str


@dataclass(frozen=True)
class _Ca:
    files: CaFiles
    cert: x509.Certificate
    key: PrivateKey
    parent: str | None  # name of the issuing CA (None for self-signed ones)


@dataclass(frozen=True)
class _Node:
    files: NodeFiles
    request: tuple[object, ...]  # arguments of the first call, to detect conflicting reuse


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Pki:
    """Generates and caches CAs and node certificates under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._keys: dict[str, PrivateKey] = {}
        self._cas: dict[str, _Ca] = {}
        self._nodes: dict[str, _Node] = {}

    def __repr__(self) -> str:
        return f"Pki({str(self.root)!r})"

    # -- keys ---------------------------------------------------------------------------

    def _key(self, name: str, key_type: str) -> PrivateKey:
        """The private key of ``name`` (generated once)."""
        key = self._keys.get(name)
        if key is None:
            if key_type == "ec":
                key = ec.generate_private_key(ec.SECP256R1())
            elif key_type == "rsa":
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            else:
                raise ValueError(f"unknown key_type {key_type!r} (expected 'ec' or 'rsa')")
            self._keys[name] = key
        return key

    def _check_new_name(self, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad name {name!r}")
        if name in self._cas or name in self._nodes:
            raise ValueError(f"{name!r} is already used by another kind of entry")

    # -- CAs ----------------------------------------------------------------------------

    def ca(
        self, name: str, *, intermediate_of: str | None = None, not_a_ca: bool = False
    ) -> CaFiles:
        """A root CA, an intermediate of ``intermediate_of``, or a self-signed non-CA.

        With ``not_a_ca`` the certificate is self-signed with BasicConstraints(ca=False)
        and no keyCertSign, yet it can still sign nodes (``node(..., ca=name)``).
        """
        with self._lock:
            cached = self._cas.get(name)
            if cached is not None:
                if (cached.parent, self._not_a_ca(cached.cert)) != (intermediate_of, not_a_ca):
                    raise ValueError(f"CA {name!r} already exists with other parameters")
                return cached.files
            if intermediate_of is not None and not_a_ca:
                raise ValueError("intermediate_of and not_a_ca are exclusive")
            self._check_new_name(name)
            key = self._key(name, "ec")
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"pyflom test CA {name}"),
                ]
            )
            if intermediate_of is None:
                issuer_name, issuer_key = subject, key
            else:
                parent = self._cas.get(intermediate_of)
                if parent is None:
                    raise KeyError(f"unknown CA {intermediate_of!r}: create it first")
                issuer_name, issuer_key = parent.cert.subject, parent.key
            now = _now()
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _ONE_DAY)
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                    critical=False,
                )
            )
            if not_a_ca:
                builder = builder.add_extension(
                    x509.BasicConstraints(ca=False, path_length=None), critical=True
                ).add_extension(_key_usage(digital_signature=True), critical=True)
            else:
                path_length = None if intermediate_of is None else 0
                builder = builder.add_extension(
                    x509.BasicConstraints(ca=True, path_length=path_length), critical=True
                ).add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            cert = builder.sign(issuer_key, hashes.SHA256())
            files = CaFiles(
                name=name, cert=self.root / f"{name}.crt", key=self.root / f"{name}.key"
            )
            _write(files.cert, cert.public_bytes(serialization.Encoding.PEM))
            _write(files.key, _key_pem(key, None), 0o600)
            self._cas[name] = _Ca(files, cert, key, intermediate_of)
            return files

    @staticmethod
    def _not_a_ca(cert: x509.Certificate) -> bool:
        return not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    def _chain_above(self, ca_name: str) -> Iterator[x509.Certificate]:
        """Certificates of ``ca_name`` and its ancestors, except the self-signed top."""
        ca = self._cas[ca_name]
        while ca.parent is not None:
            yield ca.cert
            ca = self._cas[ca.parent]

    # -- nodes --------------------------------------------------------------------------

    def node(
        self,
        name: str,
        cn: str,
        *,
        ca: str,
        key_type: str = "ec",
        encrypt_key_with: bytes | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        include_chain: bool = False,
    ) -> NodeFiles:
        """A leaf certificate with subject CN=``cn``, signed by CA ``ca``.

        Valid from now-1day to now+30days unless ``not_before``/``not_after`` say
        otherwise; ``include_chain`` appends the intermediate CAs to the certificate
        file; ``encrypt_key_with`` encrypts the PKCS#8 key with that password.
        """
        request = (cn, ca, key_type, encrypt_key_with, not_before, not_after, include_chain)
        with self._lock:
            cached = self._nodes.get(name)
            if cached is not None:
                if cached.request != request:
                    raise ValueError(f"node {name!r} already exists with other parameters")
                return cached.files
            self._check_new_name(name)
            issuer = self._cas.get(ca)
            if issuer is None:
                raise KeyError(f"unknown CA {ca!r}: create it first")
            key = self._key(name, key_type)
            now = _now()
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                ]
            )
            san = x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            )
            usage = _key_usage(digital_signature=True, key_encipherment=key_type == "rsa")
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _ONE_DAY if not_before is None else not_before)
                .not_valid_after(now + 30 * _ONE_DAY if not_after is None else not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(usage, critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    ),
                    critical=False,
                )
                .add_extension(san, critical=False)
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                    critical=False,
                )
                .sign(issuer.key, hashes.SHA256())
            )
            chain = [cert, *(self._chain_above(ca) if include_chain else ())]
            files = NodeFiles(
                name=name, cert=self.root / f"{name}.crt", key=self.root / f"{name}.key", cn=cn
            )
            _write(files.cert, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
            _write(files.key, _key_pem(key, encrypt_key_with), 0o600)
            self._nodes[name] = _Node(files, request)
            return files

    # -- formats ------------------------------------------------------------------------

    def der_copy(self, pem_path: Path) -> Path:
        """DER copy of the first PEM block of ``pem_path`` (certificate or key).

        Written next to it as ``<name>.<suffix>.der`` (``peer1.crt`` -> ``peer1.crt.der``,
        so that a certificate and its key do not collide).
        """
        pem_path = Path(pem_path)
        match = _PEM_BLOCK.search(pem_path.read_bytes())
        if match is None:
            raise ValueError(f"{pem_path} holds no PEM block")
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        out = pem_path.with_name(f"{pem_path.name}.der")
        _write(out, der, pem_path.stat().st_mode & 0o777)
        return out


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: PrivateKey, password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@dataclass(frozen=True)
class Standard:
    """FLoM's own test setup: two independent CAs and peers named after the unique id."""

    ca1: CaFiles
    ca2: CaFiles
    peer1: NodeFiles  # ca1, CN=unique id
    peer2: NodeFiles  # ca1, CN=unique id
    peer3: NodeFiles  # ca1, CN=WRONG_CN
    other: NodeFiles  # ca2, CN=unique id


def standard(pki: Pki, unique_id: str) -> Standard:
    """The standard set for ``unique_id`` (cached: cheap after the first call)."""
    return Standard(
        ca1=pki.ca("ca1"),
        ca2=pki.ca("ca2"),
        peer1=pki.node(f"peer1-{unique_id}", unique_id, ca="ca1"),
        peer2=pki.node(f"peer2-{unique_id}", unique_id, ca="ca1"),
        peer3=pki.node("peer3", WRONG_CN, ca="ca1"),
        other=pki.node(f"other-{unique_id}", unique_id, ca="ca2"),
    )


@pytest.fixture(scope="session", name="pki")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One Pki per test session (per xdist worker), in a temporary directory."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(name="certs")
def certs_fixture(pki: Pki) -> Standard:
    """The standard set named after this machine's unique id (skips without one)."""
    from pyflom.uniqueid import peer_id

    unique_id = peer_id()
    if not unique_id:
        pytest.skip("this machine has no unique id (/etc/machine-id): level 3 needs one")
    return standard(pki, unique_id)


def tls_options(node: NodeFiles, ca: CaFiles, *, check: bool = False) -> list[str]:
    """The ``flom`` options that give a side ``node``'s certificate and key and ``ca``'s
    certificate (``check``: and the peer-id check of level 3)."""
    args = [
        f"--tls-certificate={node.cert}",
        f"--tls-private-key={node.key}",
        f"--tls-ca-certificate={ca.cert}",
    ]
    return [*args, "--tls-check-peer-id=yes"] if check else args
