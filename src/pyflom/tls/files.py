"""The TLS files of one side and its peer-id check (FLoM's ``[TLS]`` settings)."""

from __future__ import annotations

import os

from ..record import Record
from ..settings import Settings

TRACE_ENV = "PYFLOM_TLS_TRACE"  # trace file, when no --tls-trace is given
KEYLOG_ENV = "SSLKEYLOGFILE"  # the usual variable of TLS libraries for NSS key logs


class TlsFiles(Record):
    """Certificate, private key and CA certificate (PEM paths); ``check_peer_id``: compare
    the peer's announced unique id with the CN of its certificate (level 3);
    ``trace_file``/``keylog_file``: where to write the record trace and the key log."""

    __slots__ = (
        "ca_certificate",
        "certificate",
        "check_peer_id",
        "keylog_file",
        "private_key",
        "trace_file",
    )
    certificate: str
    private_key: str
    ca_certificate: str
    check_peer_id: bool
    trace_file: str | None
    keylog_file: str | None

    def __init__(
        self,
        certificate: str,
        private_key: str,
        ca_certificate: str,
        check_peer_id: bool,
        trace_file: str | None = None,
        keylog_file: str | None = None,
    ) -> None:
        self.certificate = certificate
        self.private_key = private_key
        self.ca_certificate = ca_certificate
        self.check_peer_id = check_peer_id
        self.trace_file = trace_file
        self.keylog_file = keylog_file

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        """What changes when any of the files is rewritten or replaced."""
        stamps = []
        for path in (self.certificate, self.private_key, self.ca_certificate):
            try:
                st = os.stat(path)
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append((0, 0, 0))
        return tuple(stamps)


def tls_files(settings: Settings) -> TlsFiles | None:
    """The settings' TLS files when all three are set (FLoM: TLS is on only then)."""
    if settings.tls_certificate and settings.tls_private_key and settings.tls_ca_certificate:
        return TlsFiles(
            settings.tls_certificate,
            settings.tls_private_key,
            settings.tls_ca_certificate,
            settings.tls_check_peer_id,
            settings.tls_trace_file or os.environ.get(TRACE_ENV) or None,
            settings.tls_keylog_file or os.environ.get(KEYLOG_ENV) or None,
        )
    return None
