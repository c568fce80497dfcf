"""The status file system (``-m DIR``): FLoM's read-only FUSE tree of the daemon's state.

::

    DIR/status/lockers/<locker uid>/{resource_name, resource_type,
                                      holders/<connection uid>/..., waitings/<...>/...}
    DIR/status/incubator/<connection uid>/{peer_name, resource_name, resource_type}

A thread of its own runs libfuse (through ``mfusepy``, imported only when a daemon is
started with a mount point).  The lock table lives on the asyncio loop: the FUSE thread
never reads it.  It asks the loop for a status document (:mod:`.status`) when the
daemon's ``state_version`` moved since the last one, and serves the tree made of it
(:func:`status_tree`) to every call until the next change.
"""

from __future__ import annotations

import concurrent.futures
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..lockmodes import LONG_NAMES, LockMode
from ..mounts import STATUS_FS_TYPE, VfsError, canonical, dead_status_mount, mounted_type
from ..names import ResourceType
from .log import DaemonLog

FUSE_MISSING = (
    "the status file system needs FUSE: pip install 'pyflom[vfs]' and the fuse3 package (libfuse3)"
)
SNAPSHOT_TIMEOUT_S = 2.0  # a FUSE call that waits longer for the loop fails with EIO
MOUNT_TIMEOUT_S = 10.0
UNMOUNT_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 5.0
LAZY_JOIN_TIMEOUT_S = 0.2
DIR_MODE = stat.S_IFDIR | 0o550
FILE_MODE = stat.S_IFREG | 0o440

Node = bytes | tuple[str, ...]  # a file's content, or a directory's entries
Tree = dict[str, Node]  # absolute path inside the mount ("/" is DIR itself) -> node


# -- the tree ---------------------------------------------------------------------------
def _entry_files(kind: str, entry: Mapping[str, Any], holder: bool) -> dict[str, str]:
    """The files of one holder or waiter (FLoM's names and contents)."""
    files = {"peer_name": f"{entry['peer']}\n"}
    if entry.get("mode") is not None:
        # FLoM writes the long mode name without a newline (quirk Q22): kept as is.
        files["lock_mode"] = LONG_NAMES[LockMode[entry["mode"]]]
    elif kind == ResourceType.NUMERIC:
        files["quantity"] = f"{entry['quantity']}\n"
    elif holder and kind == ResourceType.SEQUENCE:
        files["sequence_value"] = f"{entry['element']}\n"
    elif holder and kind == ResourceType.TIMESTAMP:
        files["timestamp_value"] = f"{entry['element']}\n"
    return files


def status_tree(document: Mapping[str, Any]) -> Tree:
    """The file system tree of a status document (:func:`.status.encode_status`, parsed)."""
    dirs: dict[str, list[str]] = {"/": []}
    files: dict[str, bytes] = {}

    def add(path: str, content: str | None = None) -> None:
        parent, _, name = path.rpartition("/")
        dirs[parent or "/"].append(name)
        if content is None:
            dirs[path] = []
        else:
            files[path] = content.encode()

    def add_dir(path: str, contents: Mapping[str, str]) -> None:
        add(path)
        for name, text in contents.items():
            add(f"{path}/{name}", text)

    add("/status")
    add("/status/lockers")
    for res in document["resources"]:
        base = f"/status/lockers/{res['id']}"
        kind = res["type"]
        add_dir(base, {"resource_name": f"{res['name']}\n", "resource_type": f"{kind}\n"})
        for group, key in (("holders", "holders"), ("waitings", "waiters")):
            add(f"{base}/{group}")
            for entry in res[key]:
                add_dir(
                    f"{base}/{group}/{entry['connection']}",
                    _entry_files(kind, entry, holder=key == "holders"),
                )
    add("/status/incubator")
    for entry in document["incubator"]:
        add_dir(
            f"/status/incubator/{entry['connection']}",
            {
                "peer_name": f"{entry['peer']}\n",
                "resource_name": f"{entry['name']}\n",
                "resource_type": f"{entry['type']}\n",
            },
        )
    tree: Tree = {path: tuple(names) for path, names in dirs.items()}
    tree.update(files)
    return tree


# -- the FUSE operations ------------------------------------------------------------------
class StatusFs:
    """mfusepy operations serving the tree of the latest status document (read-only).

    ``version()`` is read on the FUSE thread (an int: safe under the GIL);
    ``document()`` runs on ``loop`` and returns the status document as JSON, which the
    FUSE thread parses: the loop does no more than encode it."""

    use_ns = True  # times in nanoseconds (mfusepy)

    def __init__(
        self,
        loop: Any,
        version: Callable[[], int],
        document: Callable[[], bytes],
    ) -> None:
        self._loop = loop
        self._version = version
        self._document = document
        self.closing = False  # set before unmounting: then nothing waits for the loop
        self.ready = threading.Event()  # set once mounted, or once mounting failed
        self.mounted = False  # the kernel talked to us
        self._seen: int | None = None
        self._tree: Tree = status_tree({"resources": [], "incubator": []})
        self._mtimes: dict[str, int] = dict.fromkeys(self._tree, time.time_ns())
        self._open: dict[int, bytes] = {}
        self._next_fh = 0
        self._uid, self._gid = os.getuid(), os.getgid()

    # The current tree ------------------------------------------------------------------
    def _current(self) -> Tree:
        if self.closing or self._seen == self._version():
            return self._tree
        future: concurrent.futures.Future[tuple[int, bytes]]
        future = concurrent.futures.Future()

        def build() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result((self._version(), self._document()))
                except Exception as exc:
                    future.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(build)
            version, document = future.result(SNAPSHOT_TIMEOUT_S)
        except Exception as exc:  # loop closed or busy, document failed
            future.cancel()
            raise OSError(errno.EIO, "the daemon did not answer") from exc
        self._install(version, status_tree(json.loads(document)))
        return self._tree

    def _install(self, version: int, tree: Tree) -> None:
        """Keep ``tree``; a node's mtime moves only when the node changed."""
        now = time.time_ns()
        old, mtimes = self._tree, self._mtimes
        self._mtimes = {
            path: mtimes[path] if old.get(path) == node else now for path, node in tree.items()
        }
        self._tree, self._seen = tree, version

    def _node(self, path: str) -> Node:
        node = self._current().get(path)
        if node is None:
            raise OSError(errno.ENOENT, path)
        return node

    # Operations --------------------------------------------------------------------------
    def init_with_config(self, conn: Any, config: Any) -> None:
        """Mounted: no kernel caching, the state changes under it."""
        if config is not None:
            config.entry_timeout = 0.0
            config.negative_timeout = 0.0
            config.attr_timeout = 0.0
            config.direct_io = 1  # reads go past a size the kernel may have cached
        self.mounted = True
        self.ready.set()

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """stat(2): 0550 directories, 0440 files, owned by the daemon's user."""
        node = self._node(path)
        mtime = self._mtimes.get(path, 0)
        attrs = {
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_atime": mtime,
            "st_mtime": mtime,
            "st_ctime": mtime,
        }
        if isinstance(node, tuple):
            attrs.update(st_mode=DIR_MODE, st_nlink=2, st_size=0)
        else:
            attrs.update(st_mode=FILE_MODE, st_nlink=1, st_size=len(node))
        return attrs

    def readdir(self, path: str, fh: Any) -> list[str]:
        """A directory's entries."""
        node = self._node(path)
        if not isinstance(node, tuple):
            raise OSError(errno.ENOTDIR, path)
        return [".", "..", *node]

    def open(self, path: str, flags: int) -> int:
        """Open for reading only (EACCES otherwise); the content is fixed at open."""
        if flags & (os.O_ACCMODE | os.O_TRUNC) != os.O_RDONLY:
            raise OSError(errno.EACCES, path)
        node = self._node(path)
        if isinstance(node, tuple):
            raise OSError(errno.EISDIR, path)
        self._next_fh += 1
        self._open[self._next_fh] = node
        return self._next_fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """Bytes of the content the file had when it was opened."""
        return self._open.get(fh, b"")[offset : offset + size]

    def release(self, path: str, fh: int) -> int:
        """Forget an open file."""
        self._open.pop(fh, None)
        return 0

    def _refuse(self, path: str, *args: Any) -> int:
        raise OSError(errno.EACCES, path)

    # Everything that would change the tree is refused as FLoM does: EACCES.
    create = mknod = mkdir = unlink = rmdir = symlink = rename = link = _refuse
    chmod = chown = truncate = utimens = write = setxattr = removexattr = _refuse


# -- mounting -----------------------------------------------------------------------------
def _fusermount(
    fusermount: str, mount_point: str, log: DaemonLog, why: str = ""
) -> tuple[bool, list[str]]:
    """Unmount with ``fusermount3 -u``, then lazily (``-uz``) if that failed (busy).
    Return whether it is unmounted, and what failed on the way."""
    failures: list[str] = []
    for flag in ("-u", "-uz"):
        command = [fusermount, flag, mount_point]
        shown = " ".join(command)
        after = f" (after {failures[-1]})" if failures else ""
        log.info(f"FLM023I unmounting the status file system{why} with command '{shown}'{after}")
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=UNMOUNT_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"'{shown}': {exc}")
            continue
        if result.returncode == 0:
            return True, failures
        failures.append(f"'{shown}' exited {result.returncode}: {result.stderr.strip()}")
    return False, failures


class StatusMount:
    """A mounted status file system and the thread serving it."""

    def __init__(
        self, fs: StatusFs, mount_point: str, fusermount: str, log: DaemonLog, fuse: Any
    ) -> None:
        self.fs = fs
        self.mount_point = mount_point
        self._fusermount = fusermount
        self._log = log
        self._failure: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(
            target=self._serve, args=(fuse,), name="flom-vfs", daemon=True
        )

    def _serve(self, fuse: Any) -> None:
        try:
            # foreground: libfuse must not fork; nothreads: one FUSE thread, this one.
            fuse(
                self.fs,
                self.mount_point,
                foreground=True,
                nothreads=True,
                fsname="flom",
                subtype="flom",
                default_permissions=True,
            )
        except BaseException as exc:
            self._failure = exc
        finally:
            self.fs.ready.set()

    def start(self) -> None:
        """Mount and start serving; raise :class:`VfsError` if the mount failed."""
        self._thread.start()
        if not self.fs.ready.wait(MOUNT_TIMEOUT_S) or not self.fs.mounted:
            reason = self._failure or f"no answer from the kernel within {MOUNT_TIMEOUT_S:g} s"
            self.unmount()
            raise VfsError(
                f"could not mount the status file system on '{self.mount_point}': {reason} "
                f"(try 'fusermount3 -uz {self.mount_point}' and check that /dev/fuse is "
                "usable by this user)"
            )

    def unmount(self) -> None:
        """Stop serving (callbacks stop waiting for the loop), unmount, join the thread."""
        if self._done:
            return
        self._done = True
        self.fs.closing = True
        wait = JOIN_TIMEOUT_S
        if mounted_type(self.mount_point) == STATUS_FS_TYPE:
            done, failures = _fusermount(self._fusermount, self.mount_point, self._log)
            if not done:
                self._log.warning(
                    f"FLM024W could not unmount the status file system on "
                    f"'{self.mount_point}' ({'; '.join(failures)}): unmount it manually with "
                    f"'fusermount3 -uz {self.mount_point}'"
                )
            if failures:
                # Detached lazily (or not at all): libfuse serves until the last user of
                # the mount leaves, or until this process exits and the kernel drops it.
                wait = LAZY_JOIN_TIMEOUT_S
        self._thread.join(wait)


def _check_mount_point(path: str, fusermount: str, log: DaemonLog) -> None:
    """Recover a mount a killed daemon left; refuse anything else but an empty directory."""
    try:
        os.stat(path)
    except OSError as exc:
        if not dead_status_mount(path, exc):
            raise VfsError(f"mount point '{path}': {exc.strerror}") from None
        why = " that a killed daemon left mounted,"
        done, failures = _fusermount(fusermount, path, log, why)
        if not done:
            raise VfsError(
                f"mount point '{path}' holds the dead status file system of a daemon that "
                f"was killed and it could not be unmounted ({'; '.join(failures)}): run "
                f"'fusermount3 -uz {path}'"
            ) from None
    if not os.path.isdir(path):
        raise VfsError(f"mount point '{path}' is not a directory")
    if mounted_type(path) is not None or os.path.ismount(path):
        raise VfsError(
            f"mount point '{path}' already has a file system mounted on it (another "
            "daemon's?): choose another directory"
        )
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise VfsError(f"mount point '{path}': {exc.strerror}") from None
    if entries:
        raise VfsError(
            f"mount point '{path}' is not empty: the status file system would hide its "
            "files; use an empty directory"
        )


def mount(
    mount_point: str,
    loop: Any,
    version: Callable[[], int],
    document: Callable[[], bytes],
    log: DaemonLog,
) -> StatusMount:
    """Mount the status file system on ``mount_point`` and serve it from a new thread.

    Raises :class:`VfsError` (saying why and what to do) when FUSE is missing or the
    directory cannot be used.  Run on the loop thread, with SIGTERM and SIGINT handled
    by the loop already: libfuse takes over the signals whose handler is the default."""
    try:
        import mfusepy  # type: ignore[import-untyped]  # no stubs
    except (ImportError, OSError) as exc:
        raise VfsError(f"{FUSE_MISSING} ({exc})") from None
    fusermount = shutil.which("fusermount3")
    if fusermount is None:
        raise VfsError(f"{FUSE_MISSING} (fusermount3 not found)")
    if not os.path.exists("/dev/fuse"):
        raise VfsError(f"{FUSE_MISSING} (/dev/fuse is missing: load the fuse kernel module)")
    mount_point = canonical(mount_point)
    _check_mount_point(mount_point, fusermount, log)
    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) == signal.SIG_DFL:
            raise VfsError(f"internal error: signal {signum} is not handled before mounting")
    log.info(f"FLM022I mounting the status file system on '{mount_point}'")
    mounted = StatusMount(
        StatusFs(loop, version, document), mount_point, fusermount, log, mfusepy.FUSE
    )
    mounted.start()
    return mounted
