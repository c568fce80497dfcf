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


class Entry(Record):
    """One failure class of the troubleshooting guide."""

    __slots__ = ("fix", "meaning", "seen_as", "title")
    title: str
    seen_as: str
    meaning: str
    fix: str

    def __init__(self, title: str, seen_as: str, meaning: str, fix: str) -> None:
        self.title = title
        self.seen_as = seen_as
        self.meaning = meaning
        self.fix = fix


CATALOGUE: dict[str, Entry] = {
    "TLS-UNTRUSTED-PEER": Entry(
        "The peer's certificate is not signed by our CA",
        "`this client refused the daemon's certificate (verify error 19/20/2/21 ...)` on "
        "the client; the daemon logs `the client refused this daemon's certificate`.  "
        "On the daemon: `FLM017E ... this daemon refused the client's certificate`.",
        "The side that refuses verified the peer's certificate against its "
        "`--tls-ca-certificate` and found no path to it: another CA signed it, or the "
        "peer sends its certificate without the intermediate CA certificates between "
        "it and the root (incomplete chain, verify error 20).",
        "Give both sides the CA that signed every node (`flom-tls issue` with one CA); "
        "for a chain, append the intermediates to the node's certificate file; check with "
        "`flom-tls check`.",
    ),
    "TLS-PEER-DISTRUSTS-US": Entry(
        "The peer refused our certificate",
        "`the daemon refused this client's certificate (alert unknown_ca)`; with TLS 1.3 "
        "this comes on the first read after a handshake that looked successful.",
        "A received alert names the *peer's* verdict: our certificate is not signed by a "
        "CA the peer trusts.",
        "Use a certificate signed by the peer's CA, or give the peer our CA.",
    ),
    "TLS-PEER-CERT-DATES": Entry(
        "The peer's certificate is expired or not valid yet",
        "`verify error 10: certificate has expired` or `9: certificate is not yet "
        "valid`, followed by the certificate's CN, its validity dates and the time here.",
        "The certificate's validity period does not contain the current time of the side "
        "that checks it — or one of the two clocks is wrong.",
        "Issue a new certificate (`flom-tls issue`); check both hosts' clocks.",
    ),
    "TLS-OUR-CERT-DATES": Entry(
        "The peer refused our certificate's dates",
        "`the daemon refused this client's certificate (alert certificate_expired)`.",
        "Our certificate is expired or not valid yet for the peer's clock.",
        "Issue a new certificate; check both hosts' clocks.",
    ),
    "TLS-CA-NOT-A-CA": Entry(
        "The CA file is not a CA certificate",
        "`verify error 79: invalid CA certificate` (or 24).",
        "The certificate used as CA has no `basicConstraints CA:TRUE` / `keyCertSign`: "
        "a node certificate was given as `--tls-ca-certificate`, or the CA was made "
        "without CA extensions.",
        "Make a real CA with `flom-tls init-ca` and re-issue the nodes' certificates.",
    ),
    "TLS-PEER-CERT-INVALID": Entry(
        "The peer's certificate is refused for another reason",
        "`verify error N: ...` with another code.",
        "OpenSSL refused the certificate; the code says why.",
        "Check it with `openssl verify -CAfile CA CERT` and `flom-tls check`.",
    ),
    "TLS-NO-CLIENT-CERT": Entry(
        "The client presented no certificate",
        "Client: `alert certificate_required` (TLS 1.3) or `handshake_failure` (TLS 1.2); "
        "daemon: `the client sent no certificate`.",
        "A TLS daemon requires a client certificate (levels 2 and 3); the client has "
        "none configured.",
        "Give the client `--tls-certificate`, `--tls-private-key` and `--tls-ca-certificate`.",
    ),
    "TLS-HANDSHAKE-FAILURE": Entry(
        "The peer ended the handshake",
        "`the daemon ended the handshake (alert handshake_failure)`.",
        "No cipher or TLS version in common, or — TLS 1.2 only — the client sent no "
        "certificate: the alert cannot tell which; the peer's log can.",
        "Compare both sides' TLS versions and key types; read the peer's log.",
    ),
    "TLS-NO-SHARED-CIPHER": Entry(
        "No cipher in common",
        "Daemon: `no cipher in common with the client`.",
        "The cipher suites the peer offers do not match this side's key type or list, or "
        "this side has no usable certificate and key.",
        "Use the default ciphers on both sides; check the files with `flom-tls check`.",
    ),
    "TLS-VERSION-MISMATCH": Entry(
        "No TLS version in common",
        "`alert protocol_version` on one side, `unsupported protocol` on the other.",
        "One side allows only versions the other refuses (pyflom: TLS 1.2 and 1.3).",
        "Allow TLS 1.2 or 1.3 on both sides.",
    ),
    "TLS-KEY-MISMATCH-PEER": Entry(
        "The peer could not verify our handshake signature",
        "`alert decrypt_error`.",
        "Our certificate and private key do not belong together (a peer sees it).",
        "Check the pair with `flom-tls check`.",
    ),
    "TLS-PEER-NOT-TLS": Entry(
        "The peer does not speak TLS",
        "Daemon: `the client does not speak TLS`; a client without TLS: `the daemon "
        "probably uses TLS (it ends a client without TLS this way)`, with the options to "
        "give; a TLS client: `wrong version number`.",
        "One side has the `--tls-*` files and the other does not: plain text met a TLS handshake.",
        "Configure the same TLS files on both sides, or on neither.",
    ),
    "TLS-CLOSED-IN-HANDSHAKE": Entry(
        "The peer closed the connection during the handshake",
        "`the daemon closed the connection during the TLS handshake`.",
        "A plain pyflom daemon closes a connection that starts with a TLS ClientHello; a "
        "TLS daemon may also close after refusing us (its log says why).",
        "Configure TLS on both sides; read the daemon's log.",
    ),
    "TLS-NO-ANSWER": Entry(
        "No TLS answer in time",
        "`no TLS answer from the daemon in time` after 10 s.",
        "The peer does not answer TLS: a FLoM C daemon without TLS waits forever for the "
        "rest of what it takes for an XML message.",
        "Configure TLS on both sides, or on neither.",
    ),
    "TLS-CLOSED-BY-DAEMON": Entry(
        "The daemon closed the TLS connection without answering",
        "`the daemon closed the TLS connection without answering`.",
        "It refused this client after the handshake: its certificate (TLS 1.3 reports "
        "that late), or — with `--tls-check-peer-id` on the daemon — the unique id the "
        "client announced differs from its certificate's CN.",
        "Read the daemon's log: FLM017E or FLM013E says which.",
    ),
    "TLS-PEER-ID-MISMATCH": Entry(
        "The unique id does not match the certificate CN (level 3)",
        "`FLM013E ... announced unique id 'X' but its certificate CN is 'Y'`; the client "
        "exits 99 with reason code -23.",
        "With `--tls-check-peer-id=yes` each side compares the id the peer announces "
        "(`flom --unique-id` on the peer's host) with the CN of the certificate it "
        "presented; they must be equal, character for character.",
        "Issue the node a certificate whose CN is its id: `flom-tls issue` on that host, "
        "or `--cn ID` with the id that host prints.",
    ),
    "TLS-FILE-UNREADABLE": Entry(
        "A TLS file cannot be read",
        "`TLS certificate 'F' cannot be used: it cannot be read (...)` or `it is empty`.",
        "The path is wrong, the file is empty, or this user may not read it.",
        "Fix the path or the permissions (the key: readable by its owner only).",
    ),
    "TLS-DER-NOT-PEM": Entry(
        "A DER file where PEM is expected",
        "`... it is in DER (binary) format, PEM text is expected`.",
        "FLoM and pyflom read PEM (text with `-----BEGIN` lines); this file is binary DER.",
        "Convert it: `openssl x509 -inform DER -in F -out F.pem` (keys: `openssl pkey`).",
    ),
    "TLS-NOT-PEM": Entry(
        "A file that is not PEM",
        "`... it is not a PEM file (no '-----BEGIN' line)`.",
        "The file is neither a PEM certificate nor a PEM key.",
        "Give the right file; `flom-tls check` tells what each one contains.",
    ),
    "TLS-KEY-ENCRYPTED": Entry(
        "An encrypted private key and no password",
        "`the private key is encrypted: set PYFLOM_TLS_KEY_PASSWORD ...`.",
        "The key is protected by a password and none was given.",
        "Set `PYFLOM_TLS_KEY_PASSWORD`, or store the key unencrypted with mode 600.",
    ),
    "TLS-KEY-PASSWORD": Entry(
        "The password does not open the private key",
        "`... is encrypted and the password in PYFLOM_TLS_KEY_PASSWORD does not open it`.",
        "The password given is not the key's.",
        "Give the right password.",
    ),
    "TLS-KEY-MISMATCH": Entry(
        "The private key does not belong to the certificate",
        "`TLS private key 'K' does not belong to certificate 'C'` (reason code -404).",
        "The certificate's public key is not the key pair of the private key given.",
        "Give the key generated with this certificate; compare "
        "`openssl x509 -noout -pubkey -in C` with `openssl pkey -pubout -in K`.",
    ),
    "TLS-CERT-OR-KEY-UNUSABLE": Entry(
        "The certificate or key cannot be loaded",
        "`... cannot be loaded: <OpenSSL's reason>`.",
        "OpenSSL refused the files for the reason given.",
        "Check them with `flom-tls check`.",
    ),
    "TLS-CA-UNUSABLE": Entry(
        "The CA file cannot be loaded",
        "`TLS CA certificate 'F' cannot be used: ...` (reason code -401).",
        "The CA file is unreadable or contains no certificate.",
        "Give the PEM certificate of the CA (never its key).",
    ),
    "TLS-OTHER": Entry(
        "Another TLS failure",
        "`TLS failed with the daemon: OpenSSL reports ...`.",
        "A failure this catalogue does not know yet; OpenSSL's reason is quoted.",
        "Run `flom-tls check` on both sides' files and `flom-tls probe HOST:PORT`.",
    ),
}


def troubleshooting_markdown() -> str:
    """The troubleshooting guide (docs/tls-troubleshooting.md), from :data:`CATALOGUE`."""
    lines = [
        "# TLS troubleshooting",
        "",
        "Generated from `pyflom.tls.diagnosis.CATALOGUE` "
        "(`python -m pyflom.tls.diagnosis > docs/tls-troubleshooting.md`); a test keeps "
        "this file and the code in step.  Every TLS failure pyflom reports ends with one "
        "of these ids in brackets, wherever it is reported: the `flom` command, the "
        "daemon's log, the debug features, the library's exceptions.",
        "",
        "Rule of thumb: a *received alert* (`alert unknown_ca`, `certificate_required`, "
        "...) is the peer's verdict on us; a `verify error` is our verdict on the peer.",
        "",
    ]
    for ident, entry in CATALOGUE.items():
        lines += [
            f"## {ident}: {entry.title}",
            "",
            f"* **What you see:** {entry.seen_as}",
            f"* **What it means:** {entry.meaning}",
            f"* **Fix:** {entry.fix}",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(troubleshooting_markdown(), end="")
