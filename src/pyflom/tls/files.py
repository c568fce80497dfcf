"""The TLS files of one side and its peer-id check (FLoM's ``[TLS]`` settings)."""

from __future__ import annotations

import os

from ..record import Record
from ..settings import Settings


class TlsFiles(Record):
    """Certificate, private key and CA certificate (PEM paths); ``check_peer_id``: compare
    the peer's announced unique id with the CN of its certificate (level 3)."""

    __slots__ = ("ca_certificate", "certificate", "check_peer_id", "private_key")
    certificate: str
    private_key: str
    ca_certificate: str
    check_peer_id: bool

    def __init__(
        self, certificate: str, private_key: str, ca_certificate: str, check_peer_id: bool
    ) -> None:
        self.certificate = certificate
        self.private_key = private_key
        self.ca_certificate = ca_certificate
        self.check_peer_id = check_peer_id

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
        )
    return None
