"""Naming TLS failures: what failed, which side refused whom, the likely cause, the fix.

Built from what OpenSSL reports through ``ssl``: a *received alert*
(``TLSV1_ALERT_...``) means the peer refused us; ``CERTIFICATE_VERIFY_FAILED`` with a
verify code means we refused the peer.  Every diagnosis has a stable id
(``TLS-...``) so that logs, docs and tests can name it.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

from ..record import Record
from .files import TlsFiles
from .identity import certificate_dates


class Diagnosis(Record):
    """One named TLS failure, as a sentence for a person."""

    __slots__ = ("cause", "fix", "ident", "summary")
    ident: str
    summary: str
    cause: str
    fix: str

    def __init__(self, ident: str, summary: str, cause: str, fix: str) -> None:
        self.ident = ident
        self.summary = summary
        self.cause = cause
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.summary} [{self.ident}]. Likely cause: {self.cause}. Fix: {self.fix}."


def _peer(side: str) -> str:
    return "daemon" if side == "client" else "client"


def _ca(files: TlsFiles | None) -> str:
    return f"'{files.ca_certificate}'" if files else "the configured CA file"


def _verify_failure(
    exc: ssl.SSLCertVerificationError, side: str, files: TlsFiles | None, conn: object
) -> Diagnosis:
    peer = _peer(side)
    code, text = exc.verify_code, exc.verify_message
    refusal = f"this {side} refused the {peer}'s certificate (verify error {code}: {text})"
    if code in (2, 19, 20, 21):
        return Diagnosis(
            "TLS-UNTRUSTED-PEER",
            refusal,
            f"the {peer}'s certificate is not signed by the CA in {_ca(files)}, or the "
            f"{peer} does not send the intermediate certificates of its chain",
            f"give this {side} the CA certificate that signed the {peer}'s certificate, "
            f"or put the intermediates after the {peer}'s certificate in its file",
        )
    if code in (9, 10):
        when = "not valid yet" if code == 9 else "expired"
        dates = certificate_dates(conn)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        detail = f" ({dates}; now is {now} UTC here)" if dates else f" (now is {now} UTC here)"
        return Diagnosis(
            "TLS-PEER-CERT-DATES",
            refusal,
            f"the {peer}'s certificate is {when}{detail}, or a clock is wrong",
            f"issue the {peer} a certificate valid now, and check both hosts' clocks",
        )
    if code in (24, 79):
        return Diagnosis(
            "TLS-CA-NOT-A-CA",
            refusal,
            f"the certificate that signed the {peer}'s is not a CA certificate",
            "sign node certificates with a real CA (basicConstraints CA:TRUE), e.g. "
            "one made by 'flom-tls init-ca'",
        )
    return Diagnosis(
        "TLS-PEER-CERT-INVALID",
        refusal,
        f"the {peer}'s certificate is not acceptable",
        f"check it with 'openssl verify -CAfile {_ca(files)} CERT'",
    )


_REFUSED_BY_PEER = {
    "TLSV1_ALERT_UNKNOWN_CA": (
        "TLS-PEER-DISTRUSTS-US",
        "the {peer} refused this {side}'s certificate (alert unknown_ca)",
        "this {side}'s certificate is not signed by the CA the {peer} trusts",
        "use a certificate signed by the {peer}'s CA, or give the {peer} this CA",
    ),
    "TLSV1_ALERT_BAD_CERTIFICATE": (
        "TLS-PEER-DISTRUSTS-US",
        "the {peer} refused this {side}'s certificate (alert bad_certificate)",
        "this {side}'s certificate is not signed by the CA the {peer} trusts",
        "use a certificate signed by the {peer}'s CA, or give the {peer} this CA",
    ),
    "TLSV1_ALERT_CERTIFICATE_EXPIRED": (
        "TLS-OUR-CERT-DATES",
        "the {peer} refused this {side}'s certificate (alert certificate_expired)",
        "this {side}'s certificate is expired or not yet valid",
        "issue a new certificate and check both hosts' clocks",
    ),
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "TLS-NO-CLIENT-CERT",
        "the daemon requires a client certificate and this client sent none",
        "this client has no certificate configured",
        "set --tls-certificate, --tls-private-key and --tls-ca-certificate on the client",
    ),
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "TLS-HANDSHAKE-FAILURE",
        "the {peer} ended the handshake (alert handshake_failure)",
        "no cipher or protocol version in common, or (TLS 1.2) no client certificate",
        "compare both sides' TLS versions and key types; give the client a certificate",
    ),
    "TLSV1_ALERT_PROTOCOL_VERSION": (
        "TLS-VERSION-MISMATCH",
        "the {peer} refused this {side}'s TLS version (alert protocol_version)",
        "the two sides allow no TLS version in common",
        "allow a common version (TLS 1.2 or 1.3) on both sides",
    ),
    "TLSV1_ALERT_DECRYPT_ERROR": (
        "TLS-KEY-MISMATCH-PEER",
        "the {peer} could not verify this {side}'s handshake signature",
        "a certificate and private key that do not belong together",
        "check the certificate/key pair with 'flom-tls check'",
    ),
}

for _alias, _name in (
    ("SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_BAD_CERTIFICATE"),
    ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_BAD_CERTIFICATE"),
    ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "TLSV1_ALERT_CERTIFICATE_EXPIRED"),
):
    _REFUSED_BY_PEER[_alias] = _REFUSED_BY_PEER[_name]

_LOCAL_REASONS = {
    "WRONG_VERSION_NUMBER": (
        "TLS-PEER-NOT-TLS",
        "the {peer} does not speak TLS",
        "the {peer} runs without TLS (no --tls-* files) while this {side} uses TLS",
        "configure the same TLS files on both sides, or on neither",
    ),
    "HTTP_REQUEST": (
        "TLS-PEER-NOT-TLS",
        "the {peer} sent plain text where a TLS handshake was expected",
        "the {peer} runs without TLS while this {side} requires it",
        "configure the same TLS files on both sides, or on neither",
    ),
    "NO_SHARED_CIPHER": (
        "TLS-NO-SHARED-CIPHER",
        "no cipher in common with the {peer}",
        "the two sides' cipher lists or key types do not overlap, or this side has no "
        "usable certificate and key",
        "check both sides' certificates and keys with 'flom-tls check'",
    ),
    "UNSUPPORTED_PROTOCOL": (
        "TLS-VERSION-MISMATCH",
        "the {peer} offered a TLS version this {side} refuses",
        "the two sides allow no TLS version in common",
        "allow a common version (TLS 1.2 or 1.3) on both sides",
    ),
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": (
        "TLS-NO-CLIENT-CERT",
        "the client sent no certificate and this daemon requires one",
        "the client has no --tls-certificate/--tls-private-key configured",
        "configure the client with a certificate signed by this daemon's CA",
    ),
}


def diagnose(
    exc: BaseException, side: str, files: TlsFiles | None = None, conn: object = None
) -> Diagnosis:
    """Name the TLS failure ``exc`` seen by ``side`` ("client" or "daemon") on ``conn``
    (the ``SSLSocket``/``SSLObject``, which may carry the peer's certificate)."""
    peer = _peer(side)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _verify_failure(exc, side, files, conn)
    reason = getattr(exc, "reason", None) or ""
    for table in (_REFUSED_BY_PEER, _LOCAL_REASONS):
        if reason in table:
            ident, summary, cause, fix = table[reason]
            return Diagnosis(
                ident,
                summary.format(peer=peer, side=side),
                cause.format(peer=peer, side=side),
                fix.format(peer=peer, side=side),
            )
    if isinstance(exc, TimeoutError):
        return Diagnosis(
            "TLS-NO-ANSWER",
            f"no TLS answer from the {peer} in time",
            f"the {peer} does not use TLS (a FLoM C daemon without TLS waits forever), or "
            "it is overloaded",
            "configure the same TLS files on both sides, or on neither",
        )
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, EOFError)) or (
        reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        return Diagnosis(
            "TLS-CLOSED-IN-HANDSHAKE",
            f"the {peer} closed the connection during the TLS handshake",
            f"the {peer} does not use TLS (a plain pyflom daemon closes on a TLS "
            f"ClientHello), or it refused this {side} (see its log)",
            "configure the same TLS files on both sides, or on neither; read the "
            f"{peer}'s log for its reason",
        )
    return Diagnosis(
        "TLS-OTHER",
        f"TLS failed with the {peer}",
        f"OpenSSL reports {reason or exc}",
        "run 'flom-tls check' on both sides' files",
    )
