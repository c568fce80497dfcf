"""Make the X.509 material of a pyflom network: one CA, and node certificates it signs.

Node certificates carry the node's unique id as subject CN (level 3) and the extensions
that strict verifiers (OpenSSL's ``X509_STRICT``, RFC 5280 checkers) require: critical
basicConstraints and keyUsage, extendedKeyUsage serverAuth+clientAuth (a node is both a
daemon and a client), subject and authority key identifiers, a subjectAltName.

Files are PEM: certificates world-readable, PKCS#8 private keys created with mode 0600
(never readable by others, not even for a moment). Existing files are never replaced
unless ``force`` is given. Expected failures raise :class:`PkiError` with a sentence.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_PASSWORD_ENV = "PYFLOM_TLS_KEY_PASSWORD"  # same as contexts.KEY_PASSWORD_ENV (no ssl here)
KEY_TYPES = ("ec", "rsa")
RSA_BITS = 3072
CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates are valid from this long before their creation (hosts' clocks differ)."""

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PkiError(Exception):
    """A CA or certificate cannot be made; the message says why and what to do."""


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    raise PkiError(f"unknown key type '{key_type}': use 'ec' (P-256) or 'rsa' ({RSA_BITS} bits)")


def _key_usage(*, sign: bool, encipher: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _name(cn: str) -> x509.Name:
    try:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    except ValueError:
        raise PkiError(f"CN '{cn}' is not usable: it must have 1 to 64 characters") from None


def _check_file_name(name: str) -> None:
    if not name or "/" in name or os.sep in name or name in (".", ".."):
        raise PkiError(f"'{name}' cannot be a file name: give --name without '/'")


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _refuse_existing(paths: Iterable[Path], force: bool) -> None:
    if not force:
        for path in paths:
            if os.path.lexists(path):
                raise PkiError(f"'{path}' already exists: remove it or pass --force to replace it")


def _create(path: Path, data: bytes, mode: int) -> None:
    """Create the new file ``path`` with permissions ``mode`` from the start (``os.open``)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise PkiError(f"'{path}' already exists: remove it or pass --force") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_all(files: list[tuple[Path, bytes, int]], force: bool) -> None:
    """Write each ``(path, data, mode)``, all or none. Without ``force`` an existing file
    is an error; with it, new files (with their own mode) are renamed over the old ones."""
    _refuse_existing([path for path, _, _ in files], force)
    if force:
        temporary = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path, _, _ in files]
        try:
            for tmp, (_, data, mode) in zip(temporary, files, strict=True):
                _create(tmp, data, mode)
            for tmp, (path, _, _) in zip(temporary, files, strict=True):
                os.replace(tmp, path)
        finally:
            for tmp in temporary:
                tmp.unlink(missing_ok=True)
        return
    written: list[Path] = []
    try:
        for path, data, mode in files:
            _create(path, data, mode)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def init_ca(
    directory: Path,
    name: str = "flom-ca",
    days: int = 3650,
    key_type: str = "ec",
    *,
    force: bool = False,
) -> tuple[Path, Path]:
    """Create a self-signed CA (subject ``CN=name``) valid ``days`` days; write
    ``<name>.crt`` and ``<name>.key`` in ``directory``; return (certificate, key) paths."""
    _check_file_name(name)
    if days < 1:
        raise PkiError(f"--days must be at least 1, not {days}")
    directory = Path(directory)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    _refuse_existing((cert_path, key_path), force)
    key = _new_key(key_type)
    subject = _name(name)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(sign=False, encipher=False, ca=True), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    _write_all(
        [
            (key_path, _pem_key(key), 0o600),
            (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644),
        ],
        force,
    )
    return cert_path, key_path


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"{what} '{path}' cannot be read: {exc.strerror or exc}") from None


def load_ca(ca_cert: Path, ca_key: Path) -> tuple[list[x509.Certificate], PrivateKey]:
    """The CA file's certificates (the signing CA first) and its private key, checked to
    belong together and to be a CA; an encrypted key is opened with $PYFLOM_TLS_KEY_PASSWORD."""
    data = _read(ca_cert, "CA certificate")
    try:
        if data[:1] == b"\x30":
            certs = [x509.load_der_x509_certificate(data)]
        else:
            certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise PkiError(f"CA certificate '{ca_cert}' holds no readable certificate") from None
    cert = certs[0]
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise PkiError(
            f"'{ca_cert}' is not a CA certificate (no basicConstraints CA:TRUE): "
            "make one with 'flom-tls init-ca'"
        )
    key_data = _read(ca_key, "CA private key")
    key = _load_key(key_data, ca_key)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"CA private key '{ca_key}' is not an EC or RSA key")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise PkiError(f"CA private key '{ca_key}' does not belong to CA certificate '{ca_cert}'")
    return certs, key


def _load_key(data: bytes, path: Path) -> object:
    der = data[:1] == b"\x30"
    load = serialization.load_der_private_key if der else serialization.load_pem_private_key
    try:
        return load(data, None)
    except TypeError:  # encrypted
        password = os.environ.get(KEY_PASSWORD_ENV)
        if password is None:
            raise PkiError(
                f"private key '{path}' is encrypted: set {KEY_PASSWORD_ENV} to its password"
            ) from None
        try:
            return load(data, password.encode())
        except (TypeError, ValueError):
            raise PkiError(
                f"private key '{path}' is encrypted and {KEY_PASSWORD_ENV} does not open it"
            ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise PkiError(f"'{path}' holds no readable private key") from None


def issue(
    ca_cert: Path,
    ca_key: Path,
    out_dir: Path,
    cn: str,
    name: str | None = None,
    days: int = 825,
    key_type: str = "ec",
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    *,
    force: bool = False,
) -> tuple[Path, Path]:
    """Issue a node certificate with subject ``CN=cn`` signed by the CA; write
    ``<name>.crt`` (default ``node-<cn>``; the CA's intermediates appended when the CA is
    not self-signed) and ``<name>.key`` in ``out_dir``; return (certificate, key) paths.

    The SAN holds ``dns_names`` and ``ip_addresses``, or DNS:localhost when both are empty.
    """
    name = f"node-{cn}" if name is None else name
    _check_file_name(name)
    if days < 1:
        raise PkiError(f"--days must be at least 1, not {days}")
    subject = _name(cn)
    sans: list[x509.GeneralName] = []
    for dns in dns_names:
        try:
            ascii_name = dns.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_name = ""
        if not ascii_name:
            raise PkiError(f"'{dns}' is not a valid DNS name")
        sans.append(x509.DNSName(ascii_name))
    for text in ip_addresses:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            raise PkiError(f"'{text}' is not an IPv4 or IPv6 address") from None
    if not sans:
        sans.append(x509.DNSName("localhost"))
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    _refuse_existing((cert_path, key_path), force)
    ca_certs, signing_key = load_ca(ca_cert, ca_key)
    ca = ca_certs[0]
    key = _new_key(key_type)
    try:
        ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(sign=True, encipher=isinstance(key, rsa.RSAPrivateKey), ca=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(aki, critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    chain = [cert, *(c for c in ca_certs if c.issuer != c.subject)]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_all(
        [
            (key_path, _pem_key(key), 0o600),
            (cert_path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain), 0o644),
        ],
        force,
    )
    return cert_path, key_path
