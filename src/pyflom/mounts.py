"""What is mounted where (from /proc/self/mountinfo): the status file system's checks."""

from __future__ import annotations

import contextlib
import errno
import os

STATUS_FS_TYPE = "fuse.flom"  # the type of the status file system (``-m DIR``)
# stat() on a FUSE mount whose server died: ENOTCONN, or ECONNABORTED on newer kernels.
DEAD_MOUNT_ERRORS = (errno.ENOTCONN, errno.ECONNABORTED)


class VfsError(Exception):
    """The status file system cannot be mounted; the text says why and what to do."""


def _unescape(field: str) -> str:
    """A path of /proc/self/mountinfo (spaces and the like are octal escapes)."""
    parts = field.split("\\")
    return parts[0] + "".join(chr(int(p[:3], 8)) + p[3:] for p in parts[1:])


def mounted_type(path: str) -> str | None:
    """The type of the file system mounted last on ``path`` (canonical), None if none."""
    found = None
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]) == path and " - " in line:
                found = line.split(" - ", 1)[1].split()[0]
    return found


def canonical(path: str) -> str:
    """``path`` without symlinks, not touching ``path`` itself (it may be a dead mount)."""
    path = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def dead_status_mount(path: str, error: OSError) -> bool:
    """True when ``error`` (from opening ``path``) means a killed daemon left its status
    file system mounted there: the next daemon started with ``-m`` unmounts it."""
    return error.errno in DEAD_MOUNT_ERRORS and mounted_type(canonical(path)) == STATUS_FS_TYPE
