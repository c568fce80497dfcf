"""Check a node's TLS files before ``flom`` uses them: one finding per check.

Each :class:`Finding` has a stable id (``CHECK-...``), a verdict and one sentence: what
was checked, the result and, when not ok, the fix. The checks read the files with
``cryptography`` (no handshake): file format, key/certificate pair, CA file, chain to
the CA, validity dates, CN against this machine's unique id, key file permissions.
A check whose input could not be read is left out (its file's finding already fails).
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..record import Record
from .pki import KEY_PASSWORD_ENV

DER_FIRST_BYTE = 0x30  # an ASN.1 SEQUENCE: DER, not PEM text
EXPIRY_WARNING = dt.timedelta(days=30)
MAX_CHAIN = 10

Certificate = x509.Certificate


class Finding(Record):
    """The result of one check: ``ident`` (stable), ``ok``, ``text`` (one sentence)."""

    __slots__ = ("ident", "ok", "text")
    ident: str
    ok: bool
    text: str

    def __init__(self, ident: str, ok: bool, text: str) -> None:
        self.ident = ident
        self.ok = ok
        self.text = text

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.ident} {self.text}"


def _q(path: Path) -> str:
    return shlex.quote(str(path))


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject(cert: Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _spki(public_key: object) -> bytes:
    public_bytes = getattr(public_key, "public_bytes", None)
    if public_bytes is None:
        return b""
    data: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _describe_key(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPrivateKey):
        return f"DSA {key.key_size} bits"
    return type(key).__name__


# -- reading the files ------------------------------------------------------------------


def _read(path: Path, ident: str, what: str) -> tuple[bytes | None, Finding | None]:
    """The file's bytes, or a failed finding saying why it cannot be used."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, Finding(ident, False, f"{what} '{path}' does not exist: give the right path")
    except IsADirectoryError:
        return None, Finding(ident, False, f"{what} '{path}' is a directory, not a file")
    except PermissionError:
        return None, Finding(
            ident, False, f"{what} '{path}' cannot be read by this user: make it readable"
        )
    except OSError as exc:
        return None, Finding(ident, False, f"{what} '{path}' cannot be read: {exc.strerror}")
    if not data.strip():
        return None, Finding(ident, False, f"{what} '{path}' is empty")
    return data, None


def _der_finding(ident: str, what: str, path: Path, tool: str) -> Finding:
    return Finding(
        ident,
        False,
        f"{what} '{path}' is DER (binary) but PEM is required: convert it with "
        f"'openssl {tool} -inform DER -in {_q(path)} -out {_q(Path(f'{path}.pem'))}' "
        "and use the .pem file",
    )


def _load_certificates(
    path: Path, ident: str, what: str
) -> tuple[list[Certificate], Finding | None]:
    """The certificates in ``path`` (a DER one is loaded too, with a failed finding)."""
    data, problem = _read(path, ident, what)
    if data is None:
        assert problem is not None
        return [], problem
    if data[0] == DER_FIRST_BYTE:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            return [], Finding(ident, False, f"{what} '{path}' is binary but not a certificate")
        return certs, _der_finding(ident, what, path, "x509")
    if b"-----BEGIN" not in data:
        return [], Finding(ident, False, f"{what} '{path}' is not PEM (no '-----BEGIN' line)")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return [], Finding(
            ident,
            False,
            f"{what} '{path}' holds no readable certificate (a '-----BEGIN CERTIFICATE' "
            "block is expected)",
        )
    count = f"{len(certs)} certificates" if len(certs) > 1 else "1 certificate"
    return certs, Finding(ident, True, f"{what} '{path}' is PEM with {count}")


def _load_key(path: Path) -> tuple[object | None, Finding]:
    """The private key in ``path`` and the finding about the file."""
    ident, what = "CHECK-KEY-FILE", "private key"
    data, problem = _read(path, ident, what)
    if data is None:
        assert problem is not None
        return None, problem
    der = data[0] == DER_FIRST_BYTE
    if not der and b"-----BEGIN" not in data:
        return None, Finding(ident, False, f"{what} '{path}' is not PEM (no '-----BEGIN' line)")
    load = serialization.load_der_private_key if der else serialization.load_pem_private_key
    encrypted = False
    try:
        key: object = load(data, None)
    except TypeError:  # encrypted
        encrypted = True
        password = os.environ.get(KEY_PASSWORD_ENV)
        if password is None:
            return None, Finding(
                ident,
                False,
                f"{what} '{path}' is encrypted and {KEY_PASSWORD_ENV} is not set: set it to "
                f"the key's password, or decrypt the key with 'openssl pkey -in {_q(path)} "
                f"-out {_q(Path(f'{path}.plain'))}'",
            )
        try:
            key = load(data, password.encode())
        except (TypeError, ValueError, UnsupportedAlgorithm):
            return None, Finding(
                ident,
                False,
                f"{what} '{path}' is encrypted and the password in {KEY_PASSWORD_ENV} does "
                "not open it: set the right password",
            )
    except (ValueError, UnsupportedAlgorithm):
        return None, Finding(
            ident,
            False,
            f"{what} '{path}' holds no readable private key (a '-----BEGIN PRIVATE KEY' "
            "block is expected)",
        )
    kind = _describe_key(key)
    if der:
        return key, _der_finding(ident, what, path, "pkey")
    if encrypted:
        return key, Finding(
            ident, True, f"{what} '{path}' is PEM ({kind}), encrypted: {KEY_PASSWORD_ENV} opens it"
        )
    return key, Finding(ident, True, f"{what} '{path}' is PEM ({kind})")


# -- the checks -------------------------------------------------------------------------


def _check_permissions(path: Path) -> Finding | None:
    ident = "CHECK-KEY-PERMISSIONS"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o044:
        return Finding(
            ident,
            False,
            f"private key '{path}' has mode {mode:04o}, readable by group or others: "
            f"run 'chmod 600 {_q(path)}'",
        )
    return Finding(ident, True, f"private key '{path}' has mode {mode:04o}, private to its owner")


def _check_pair(cert: Certificate, cert_path: Path, key: object, key_path: Path) -> Finding:
    ident = "CHECK-KEY-MISMATCH"
    public_key = getattr(key, "public_key", None)
    if public_key is not None and _spki(public_key()) == _spki(cert.public_key()):
        return Finding(ident, True, f"private key '{key_path}' matches certificate '{cert_path}'")
    return Finding(
        ident,
        False,
        f"private key '{key_path}' does not belong to certificate '{cert_path}': use the key "
        "made with this certificate (compare 'openssl x509 -noout -pubkey -in CERT' with "
        "'openssl pkey -pubout -in KEY')",
    )


def _basic_constraints(cert: Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _not_a_ca(cert: Certificate) -> str | None:
    """Why ``cert`` cannot sign certificates (None when it can)."""
    constraints = _basic_constraints(cert)
    if constraints is None or not constraints.ca:
        return "basicConstraints CA:TRUE is missing"
    usage = _key_usage(cert)
    if usage is not None and not usage.key_cert_sign:
        return "its keyUsage lacks keyCertSign"
    return None


def _check_ca(certs: list[Certificate], path: Path) -> Finding:
    ident = "CHECK-CA-NOT-A-CA"
    for cert in certs:
        reason = _not_a_ca(cert)
        if reason is not None:
            return Finding(
                ident,
                False,
                f"CA file '{path}' holds '{_subject(cert)}', which is not a CA ({reason}): "
                "give the CA certificate that signed the nodes (e.g. from 'flom-tls init-ca'), "
                "not a node certificate",
            )
    names = ", ".join(f"'{_subject(cert)}'" for cert in certs)
    return Finding(ident, True, f"CA file '{path}' holds CA certificate {names}")


def _check_purpose(cert: Certificate, path: Path) -> Finding:
    """A node is a daemon and a client: its certificate must allow both uses."""
    ident = "CHECK-CERT-PURPOSE"
    constraints = _basic_constraints(cert)
    problems = []
    if constraints is not None and constraints.ca:
        problems.append("it is a CA certificate (basicConstraints CA:TRUE)")
    usage = _key_usage(cert)
    if usage is not None and not usage.digital_signature:
        problems.append("its keyUsage lacks digitalSignature")
    try:
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        purposes = None
    if purposes is not None:
        missing = [
            name
            for oid, name in (
                (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
                (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
            )
            if oid not in purposes
        ]
        if missing:
            problems.append(f"its extendedKeyUsage lacks {' and '.join(missing)}")
    if problems:
        return Finding(
            ident,
            False,
            f"certificate '{path}' cannot serve as a node (daemon and client) certificate: "
            f"{'; '.join(problems)}: issue one with 'flom-tls issue'",
        )
    return Finding(ident, True, f"certificate '{path}' allows TLS server and client use")


def _signed_by(cert: Certificate, issuer: Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _dates_problem(cert: Certificate, now: dt.datetime) -> str | None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        return f"is not valid before {_when(start)} (now {_when(now)})"
    if now > end:
        return f"expired on {_when(end)} (now {_when(now)})"
    return None


def _check_chain(
    leaf: Certificate,
    intermediates: list[Certificate],
    anchors: list[Certificate],
    cert_path: Path,
    ca_path: Path,
    now: dt.datetime,
) -> Finding:
    """Walk from the leaf through the file's intermediates to a self-signed CA of the CA
    file, as OpenSSL does (the trust anchor must be self-signed)."""
    ident = "CHECK-CHAIN"
    current = leaf
    used: list[Certificate] = []
    for _ in range(MAX_CHAIN):
        if current.issuer == current.subject and _signed_by(current, current):
            if current is leaf:
                return Finding(
                    ident,
                    False,
                    f"certificate '{cert_path}' is self-signed, not issued by the CA in "
                    f"'{ca_path}': issue one with 'flom-tls issue'",
                )
            if current in anchors:
                through = (
                    f" through {', '.join(repr(_subject(c)) for c in used[:-1])}"
                    if len(used) > 1
                    else ""
                )
                return Finding(
                    ident,
                    True,
                    f"certificate '{cert_path}' chains to CA '{_subject(current)}' of "
                    f"'{ca_path}'{through}",
                )
            return Finding(
                ident,
                False,
                f"certificate '{cert_path}' chains to CA '{_subject(current)}', which is not "
                f"in CA file '{ca_path}': use that CA's certificate as CA file",
            )
        issuer = next((c for c in anchors if _signed_by(current, c)), None)
        if issuer is None:
            issuer = next((c for c in intermediates if _signed_by(current, c)), None)
            if issuer is not None and issuer not in used:
                reason = _not_a_ca(issuer) or _dates_problem(issuer, now)
                if reason is not None:
                    return Finding(
                        ident,
                        False,
                        f"intermediate '{_subject(issuer)}' in '{cert_path}' cannot be "
                        f"used: {reason}",
                    )
        if issuer is None or issuer in used:
            missing = current.issuer.rfc4514_string() or "(empty name)"
            whose = "its issuer" if current is leaf else f"the issuer of '{_subject(current)}'"
            if any(c.subject == current.issuer for c in [*anchors, *intermediates]):
                return Finding(
                    ident,
                    False,
                    f"certificate '{cert_path}' does not chain to CA file '{ca_path}': "
                    f"{whose} is named '{missing}' but a certificate of that name there did "
                    "not sign it (another key, another CA): use the CA file of the CA that "
                    "issued it",
                )
            return Finding(
                ident,
                False,
                f"certificate '{cert_path}' does not chain to CA file '{ca_path}' (incomplete "
                f"chain): {whose} '{missing}' is in neither file: append that intermediate "
                f"to '{cert_path}' after the node certificate, or use the CA file of the CA "
                "that issued it",
            )
        used.append(issuer)
        current = issuer
    return Finding(ident, False, f"certificate '{cert_path}' has a chain longer than {MAX_CHAIN}")


def _check_dates(ident: str, what: str, cert: Certificate, path: Path, now: dt.datetime) -> Finding:
    problem = _dates_problem(cert, now)
    if problem is not None:
        return Finding(
            ident,
            False,
            f"{what} '{path}' {problem}: issue a new one, or fix this host's clock",
        )
    end = cert.not_valid_after_utc
    left = end - now
    if left < EXPIRY_WARNING:
        return Finding(
            ident,
            True,
            f"{what} '{path}' is valid but expires soon, on {_when(end)} "
            f"(in {left.days} days): renew it",
        )
    return Finding(
        ident,
        True,
        f"{what} '{path}' is valid from {_when(cert.not_valid_before_utc)} to {_when(end)}",
    )


def _check_cn(cert: Certificate, path: Path, unique_id: str | None) -> Finding:
    ident = "CHECK-CN-UNIQUE-ID"
    if unique_id is None:
        return Finding(
            ident,
            True,
            "CN check skipped: this machine has no unique id (/etc/machine-id), so level 3 "
            "(TlsCheckPeerId) cannot work here",
        )
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return Finding(
            ident,
            False,
            f"certificate '{path}' has no CN, this machine's unique id '{unique_id}' is "
            f"expected at level 3: issue one with 'flom-tls issue --cn {unique_id}'",
        )
    value = names[0].value
    cn = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if cn != unique_id:
        return Finding(
            ident,
            False,
            f"certificate CN '{cn}' differs from this machine's unique id '{unique_id}' "
            f"(level 3 peers refuse it): issue one with 'flom-tls issue --cn {unique_id}'",
        )
    return Finding(ident, True, f"certificate CN '{cn}' equals this machine's unique id")


def check(
    cert: Path,
    key: Path,
    ca: Path,
    *,
    unique_id: str | None,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """Check a node's certificate, private key and CA files (paths) at time ``now``
    (default: the current time; a naive time is UTC) against ``unique_id`` (None: this
    machine has none, the CN check is skipped). Returns the findings, in a fixed order."""
    cert, key, ca = Path(cert), Path(key), Path(ca)
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    findings: list[Finding] = []
    chain, cert_finding = _load_certificates(cert, "CHECK-CERT-FILE", "certificate")
    private_key, key_finding = _load_key(key)
    anchors, ca_finding = _load_certificates(ca, "CHECK-CA-FILE", "CA file")
    findings += [f for f in (cert_finding, key_finding, ca_finding) if f is not None]
    permissions = _check_permissions(key)
    if permissions is not None:
        findings.append(permissions)
    leaf = chain[0] if chain else None
    if leaf is not None and private_key is not None:
        findings.append(_check_pair(leaf, cert, private_key, key))
    if anchors:
        findings.append(_check_ca(anchors, ca))
    if leaf is not None:
        findings.append(_check_purpose(leaf, cert))
        if anchors:
            findings.append(_check_chain(leaf, chain[1:], anchors, cert, ca, now))
        findings.append(_check_dates("CHECK-CERT-DATES", "certificate", leaf, cert, now))
    for anchor in anchors:
        what = f"CA certificate '{_subject(anchor)}' in"
        findings.append(_check_dates("CHECK-CA-DATES", what, anchor, ca, now))
    if leaf is not None:
        findings.append(_check_cn(leaf, cert, unique_id))
    return findings
