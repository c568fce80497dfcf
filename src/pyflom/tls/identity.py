"""Who the peer is: its certificate's fields and CN, and FLoM's peer-id check (level 3).

The check compares the unique id a peer *announces* in its messages with the CN of the
certificate it *presented*, exactly (case-sensitive), as FLoM does.  It proves that the
peer holds a CA-signed certificate made for the id it claims; it does not restrict
which ids may connect.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no runtime ``typing``: this module is on a TLS client's path
if TYPE_CHECKING:
    from typing import Any

    PeerCert = dict[str, Any]  # ssl.SSLSocket.getpeercert() / SSLObject.getpeercert()

# FLoM's FLM011I/FLM012I field order, with OpenSSL's short names.
_FIELDS = (
    ("C", "countryName"),
    ("ST", "stateOrProvinceName"),
    ("L", "localityName"),
    ("O", "organizationName"),
    ("OU", "organizationalUnitName"),
    ("emailAddress", "emailAddress"),
    ("CN", "commonName"),
)


def _names(cert: PeerCert, part: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for rdn in cert.get(part, ()):
        for key, value in rdn:
            names.setdefault(key, value)
    return names


def fields(cert: PeerCert, part: str = "subject") -> str:
    """``C=IT/ST={null}/.../CN=...`` of the certificate's ``subject`` or ``issuer``."""
    names = _names(cert, part)
    return "/".join(f"{short}={names.get(long, '{null}')}" for short, long in _FIELDS)


def describe_session(conn: Any) -> str:
    """Protocol version and cipher of an established ``SSLSocket`` or ``SSLObject``."""
    cipher = conn.cipher()
    return f"{conn.version()} {cipher[0] if cipher else '?'}"


def log_lines(cert: PeerCert) -> list[str]:
    """FLoM's FLM011I (issuer) and FLM012I (subject) lines for a peer certificate."""
    return [
        f"FLM011I X.509 peer certificate issuer fields are {fields(cert, 'issuer')}",
        f"FLM012I X.509 peer certificate fields are {fields(cert)}",
    ]


def common_name(cert: PeerCert | None) -> str | None:
    """The subject CN of a verified peer certificate (None when there is none)."""
    if not cert:
        return None
    return _names(cert, "subject").get("commonName")


def mismatch(announced: str, cn: str | None) -> str | None:
    """Why ``announced`` fails the peer-id check against ``cn``; None when it passes."""
    if cn is None:
        return "its certificate has no CN"
    if announced != cn:
        return f"it announced unique id '{announced}' but its certificate CN is '{cn}'"
    return None


HANDSHAKE = 22
CERTIFICATE = 11
TLS13 = 0x0304
PEER_CERTIFICATE_ATTR = "_pyflom_peer_der"


def remember_peer_certificate(
    conn: Any, direction: str, version: int, content_type: int, msg_type: int, data: bytes
) -> None:
    """An ``SSLContext._msg_callback``: keep the Certificate message the peer sent on
    ``conn``, so that a refused certificate can be described (its dates) after the
    handshake failed.  Parsed only then (:func:`certificate_dates`)."""
    if direction == "read" and content_type == HANDSHAKE and msg_type == CERTIFICATE:
        try:
            setattr(conn, PEER_CERTIFICATE_ATTR, (data, int(version) == TLS13))
        except AttributeError:
            pass


def certificate_dates(conn: Any) -> str | None:
    """ "CN=..., valid from ... to ... UTC" for the certificate the peer sent on ``conn``."""
    kept = getattr(conn, PEER_CERTIFICATE_ATTR, None)
    if kept is None:
        return None
    message, tls13 = kept
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        from .records import certificates

        chain = certificates(message[4:], tls13)  # the body, after the 4-byte header
        cert = x509.load_der_x509_certificate(chain[0])
    except (ImportError, ValueError, IndexError):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else "(no CN)"
    fmt = "%Y-%m-%d %H:%M:%S"
    return (
        f"CN={cn}, valid from {cert.not_valid_before_utc.strftime(fmt)} to "
        f"{cert.not_valid_after_utc.strftime(fmt)} UTC"
    )
