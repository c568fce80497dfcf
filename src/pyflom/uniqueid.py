"""This host's unique ID: the D-Bus machine id, as FLoM uses it (``flom --unique-id``)."""

from __future__ import annotations

MACHINE_ID_FILES = ("/var/lib/dbus/machine-id", "/etc/machine-id")


class NoUniqueId(Exception):
    """Neither machine-id file holds a valid id."""


def _valid(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def read_unique_id(files: tuple[str, ...] = MACHINE_ID_FILES) -> str:
    """Return the 32 hex digit machine id, or raise :class:`NoUniqueId` saying why."""
    problems = []
    for path in files:
        try:
            with open(path, "rb") as f:  # bytes: no codec lookup on the command's path
                text = f.read().decode("ascii", "replace").strip()
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        if _valid(text):
            return text
        problems.append(f"{path}: not 32 lowercase hex digits")
    raise NoUniqueId(
        "no valid machine id found ("
        + "; ".join(problems)
        + "); create one with 'systemd-machine-id-setup' or 'dbus-uuidgen --ensure'"
    )


_cached: str | None = None


def peer_id() -> str:
    """The id sent as ``peerid`` in requests; empty when the machine has none (FLoM
    aborts there, quirk Q11; the protocol allows an empty id)."""
    global _cached
    if _cached is None:
        try:
            _cached = read_unique_id()
        except NoUniqueId:
            _cached = ""
    return _cached
