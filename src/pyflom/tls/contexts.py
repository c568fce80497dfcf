"""``ssl`` contexts from a side's TLS files: built once, rebuilt when the files change.

Both sides verify the peer against the CA file (the daemon requires a client
certificate); no host name check, as FLoM: identity is the CA, plus the CN at level 3.
A file that cannot be used raises :class:`TlsSetupError` with FLoM's reason code and a
sentence that names the file, the cause and the fix.
"""

from __future__ import annotations

import os
import ssl

from .. import rc as _rc
from ..errors import ConnectionFailed
from .files import TlsFiles
from .identity import remember_peer_certificate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .trace import TlsTrace

KEY_PASSWORD_ENV = "PYFLOM_TLS_KEY_PASSWORD"  # for an encrypted private key (extension)
DER_FIRST_BYTE = 0x30  # an ASN.1 SEQUENCE: a DER certificate or key, not PEM text


class TlsSetupError(ConnectionFailed):
    """A TLS file cannot be used; ``rc`` is FLoM's (-400, -401, -403, -404), ``ident``
    the catalogue entry (:data:`pyflom.tls.diagnosis.CATALOGUE`)."""

    def __init__(self, message: str, rc: int, ident: str) -> None:
        super().__init__(f"{message} [{ident}]", rc=rc)
        self.ident = ident


def _sniff(path: str) -> tuple[str, str] | None:
    """(ident, reason) when ``path`` visibly cannot be a PEM file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return "TLS-FILE-UNREADABLE", f"it cannot be read ({exc.strerror})"
    if not head:
        return "TLS-FILE-UNREADABLE", "it is empty"
    if head[0] == DER_FIRST_BYTE:
        return "TLS-DER-NOT-PEM", (
            "it is in DER (binary) format, PEM text is expected: convert it with "
            f"'openssl x509 -inform DER -in {path} -out {path}.pem' (for a key: "
            "'openssl pkey -inform DER ...')"
        )
    if b"-----BEGIN" not in head:
        return "TLS-NOT-PEM", "it is not a PEM file (no '-----BEGIN' line)"
    return None


def _encrypted(path: str) -> bool:
    """True for a PEM key protected by a password."""
    try:
        with open(path, "rb") as f:
            return b"ENCRYPTED" in f.read(4096)
    except OSError:
        return False


def _key_password() -> bytes:
    password = os.environ.get(KEY_PASSWORD_ENV)
    if password is None:
        raise TlsSetupError(
            f"the private key is encrypted: set {KEY_PASSWORD_ENV} to its password, "
            "or store it unencrypted ('openssl pkey -in KEY -out KEY.plain')",
            rc=_rc.OPENSSL_ERRORS["SSL_CTX_use_PrivateKey_file"],
            ident="TLS-KEY-ENCRYPTED",
        )
    return password.encode()


def _load_identity(context: ssl.SSLContext, files: TlsFiles) -> None:
    for path, what, call in (
        (files.certificate, "certificate", "SSL_CTX_use_certificate_file"),
        (files.private_key, "private key", "SSL_CTX_use_PrivateKey_file"),
    ):
        problem = _sniff(path)
        if problem is not None:
            raise TlsSetupError(
                f"TLS {what} '{path}' cannot be used: {problem[1]}",
                rc=_rc.OPENSSL_ERRORS[call],
                ident=problem[0],
            )
    try:
        context.load_cert_chain(files.certificate, files.private_key, password=_key_password)
    except TlsSetupError as exc:
        raise TlsSetupError(
            f"TLS private key '{files.private_key}' cannot be used: {str(exc).rsplit(' [', 1)[0]}",
            rc=exc.rc,
            ident=exc.ident,
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or ""
        ident = "TLS-CERT-OR-KEY-UNUSABLE"
        if reason == "KEY_VALUES_MISMATCH":
            ident = "TLS-KEY-MISMATCH"
            message = (
                f"TLS private key '{files.private_key}' does not belong to certificate "
                f"'{files.certificate}': give the key that was generated with this "
                "certificate (compare 'openssl x509 -noout -pubkey -in CERT' with "
                "'openssl pkey -pubout -in KEY')"
            )
        elif _encrypted(files.private_key):
            ident = "TLS-KEY-PASSWORD"
            message = (
                f"TLS private key '{files.private_key}' is encrypted and the password in "
                f"{KEY_PASSWORD_ENV} does not open it"
            )
        else:
            message = (
                f"TLS certificate '{files.certificate}' or private key "
                f"'{files.private_key}' cannot be loaded: {exc.reason or exc}"
            )
        raise TlsSetupError(
            message, rc=_rc.OPENSSL_ERRORS["SSL_CTX_use_PrivateKey_file"], ident=ident
        ) from None


def _load_ca(context: ssl.SSLContext, files: TlsFiles) -> None:
    problem = _sniff(files.ca_certificate)
    if problem is None:
        try:
            context.load_verify_locations(cafile=files.ca_certificate)
            return
        except ssl.SSLError as exc:
            problem = ("TLS-CA-UNUSABLE", f"OpenSSL says {exc.reason or exc}")
    raise TlsSetupError(
        f"TLS CA certificate '{files.ca_certificate}' cannot be used: {problem[1]}",
        rc=_rc.OPENSSL_ERRORS["SSL_CTX_load_verify_locations"],
        ident=problem[0],
    )


def build_context(files: TlsFiles, server_side: bool) -> ssl.SSLContext:
    """A context that presents this side's certificate and requires the peer's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    _load_identity(context, files)
    _load_ca(context, files)
    if hasattr(context, "_msg_callback"):  # private in CPython 3.8+: used when present
        context._msg_callback = remember_peer_certificate
    if files.keylog_file:
        context.keylog_filename = files.keylog_file
    if files.trace_file:
        _trace_into(context, files.trace_file, "daemon" if server_side else "client")
    return context


TRACE_ATTR = "_pyflom_trace"


def _trace_into(context: ssl.SSLContext, path: str, side: str) -> None:
    from .trace import TlsTrace

    try:
        stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the context
    except OSError as exc:
        raise TlsSetupError(
            f"TLS trace file '{path}' cannot be opened: {exc.strerror}",
            rc=_rc.SYSCALL_ERRORS["open"],
            ident="TLS-FILE-UNREADABLE",
        ) from None
    tracer = TlsTrace(stream, side, "daemon" if side == "client" else "client")
    if tracer.install(context):
        setattr(context, TRACE_ATTR, tracer)


def trace_of(context: ssl.SSLContext) -> TlsTrace | None:
    """The record trace of ``context``, when ``--tls-trace`` asked for one."""
    return getattr(context, TRACE_ATTR, None)


class ContextCache:
    """One context per side and set of files, rebuilt when a file changes."""

    def __init__(self, server_side: bool) -> None:
        self.server_side = server_side
        self._entries: dict[TlsFiles, tuple[object, ssl.SSLContext]] = {}

    def get(self, files: TlsFiles) -> ssl.SSLContext:
        """The current context for ``files`` (raises :class:`TlsSetupError`)."""
        stamp = files.stamp()
        entry = self._entries.get(files)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        context = build_context(files, self.server_side)
        self._entries[files] = (stamp, context)
        return context

    def reload(self, files: TlsFiles) -> ssl.SSLContext:
        """Rebuild now, whatever the files' stamps say (SIGHUP)."""
        self._entries.pop(files, None)
        return self.get(files)


CLIENT_CONTEXTS = ContextCache(server_side=False)
