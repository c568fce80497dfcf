"""The status file system (``flom -m DIR``): FLoM's tree on a real FUSE mount, its
contents for every resource type, permissions, changes as the state moves, unmounting on
every exit path, recovery of a killed daemon's mount, clear refusals.

Tests that mount need /dev/fuse, fusermount3 and mfusepy: they skip (saying what is
missing) without them, unless ``PYFLOM_REQUIRE_FUSE=1``: then they fail.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import FlomSandbox, process_alive, wait_for
from pyflom.daemon import vfs as vfs_module
from pyflom.daemon.vfs import FUSE_MISSING, StatusFs, status_tree
from pyflom.mounts import mounted_type

TIMEOUT = 30.0  # generous: two noisy cores


def _fuse_missing() -> str | None:
    """Why this machine cannot mount a FUSE file system (None: it can)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import mfusepy  # type: ignore[import-untyped]  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy is unusable: {exc}"
    return None


@dataclass
class Vfs:
    """A sandbox plus its own mount point, with helpers for lock holders."""

    box: FlomSandbox
    dir: Path

    @property
    def status(self) -> Path:
        return self.dir / "status"

    def mounted(self) -> bool:
        return mounted_type(str(self.dir)) == "fuse.flom"

    def hold(self, tag: str, *args: str) -> subprocess.Popen[str]:
        """``flom -m DIR ARGS`` running a command that writes the locked element (its last
        argument) to ``elem-TAG``, creates ``held-TAG``, and waits for ``release-TAG``."""
        script = (
            f'printf %s "$1" > elem-{tag}; touch held-{tag}; '
            f"while [ ! -e release-{tag} ]; do sleep 0.05; done"
        )
        return self.box.start("-m", str(self.dir), *args, "--", "sh", "-c", script, "sh")

    def wait_held(self, tag: str) -> str:
        assert wait_for(self.box.path(f"held-{tag}").exists, timeout=TIMEOUT), tag
        self.box.remember_daemon()
        return self.box.path(f"elem-{tag}").read_text()

    def release(self, tag: str, proc: subprocess.Popen[str]) -> None:
        self.box.path(f"release-{tag}").touch()
        assert proc.wait(timeout=TIMEOUT) == 0, proc.communicate()

    def lockers(self) -> list[Path]:
        return sorted(listing(self.status / "lockers"))

    def only_locker(self) -> Path:
        assert wait_for(lambda: len(self.lockers()) == 1, timeout=TIMEOUT)
        return self.lockers()[0]

    def entries(self, locker: Path, group: str, count: int) -> list[Path]:
        """The ``count`` entries of ``holders`` or ``waitings`` (waits for them)."""
        where = locker / group
        assert wait_for(lambda: len(listing(where)) == count, timeout=TIMEOUT), listing(where)
        return sorted(listing(where), key=lambda p: int(p.name))

    def stop_daemon_and_wait(self) -> None:
        pid = self.box.remember_daemon()
        assert pid is not None
        assert wait_for(lambda: not process_alive(pid), timeout=TIMEOUT)


def listing(directory: Path) -> list[Path]:
    """The entries of ``directory``, none while it does not exist (not mounted yet)."""
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def files(entry: Path) -> dict[str, str]:
    """The files of a directory (not its subdirectories) and their contents."""
    return {p.name: p.read_text() for p in sorted(entry.iterdir()) if p.is_file()}


@pytest.fixture
def vfs(sandbox: FlomSandbox) -> Iterator[Vfs]:
    reason = _fuse_missing()
    if reason is not None:
        if os.environ.get("PYFLOM_REQUIRE_FUSE") == "1":
            pytest.fail(f"PYFLOM_REQUIRE_FUSE=1 but FUSE is unavailable: {reason}")
        pytest.skip(f"FUSE is unavailable: {reason}")
    mount_point = sandbox.root / "vfs"
    mount_point.mkdir()
    setup = Vfs(sandbox, mount_point)
    try:
        yield setup
    finally:
        try:
            sandbox.cleanup()  # daemons first: they unmount
        finally:
            if mounted_type(str(mount_point)) is not None:  # never leave a mount behind
                subprocess.run(["fusermount3", "-uz", str(mount_point)], check=False)


# -- FLoM's own test (vfs.at) --------------------------------------------------------------
def test_flom_vfs_scenario(vfs: Vfs) -> None:
    holder = vfs.hold("a", "-d", "1000", "-r", "foo[2]")
    vfs.wait_held("a")
    listing = subprocess.run(
        ["find", str(vfs.dir)], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    for name in ("incubator", "lockers", "holders", "waitings", "resource_name", "resource_type"):
        assert f"/{name}\n" in listing, listing
    vfs.release("a", holder)
    assert vfs.box.run("-x").returncode == 0
    vfs.stop_daemon_and_wait()
    vfs.dir.rmdir()  # unmounted: removable


# -- contents ------------------------------------------------------------------------------
def test_simple_holders_and_waiter_then_the_waiter_holds(vfs: Vfs) -> None:
    first = vfs.hold("pr1", "-r", "res", "-l", "PR")
    vfs.wait_held("pr1")
    second = vfs.hold("pr2", "-r", "res", "-l", "PR")
    vfs.wait_held("pr2")
    waiter = vfs.hold("ex", "-r", "res", "-l", "EX")
    locker = vfs.only_locker()
    assert int(locker.name) > 0
    assert files(locker) == {"resource_name": "res\n", "resource_type": "simple\n"}
    holders = vfs.entries(locker, "holders", 2)
    for holder in holders:
        # lock_mode has no trailing newline: FLoM's quirk Q22, kept.
        assert files(holder) == {"lock_mode": "ProtectedRead", "peer_name": "localhost/\n"}
    (waiting,) = vfs.entries(locker, "waitings", 1)
    assert files(waiting) == {"lock_mode": "Exclusive", "peer_name": "localhost/\n"}
    assert len({locker.name, waiting.name, *(h.name for h in holders)}) == 4  # one counter

    vfs.release("pr1", first)
    vfs.release("pr2", second)
    vfs.wait_held("ex")
    (now_holding,) = vfs.entries(locker, "holders", 1)
    assert now_holding.name == waiting.name  # the same connection moved
    assert files(now_holding)["lock_mode"] == "Exclusive"
    assert vfs.entries(locker, "waitings", 0) == []
    vfs.release("ex", waiter)


def test_numeric_quantities(vfs: Vfs) -> None:
    holder = vfs.hold("h", "-r", "cpu[3]", "-q", "2")
    vfs.wait_held("h")
    waiter = vfs.hold("w", "-r", "cpu[3]", "-q", "3")
    locker = vfs.only_locker()
    assert files(locker) == {"resource_name": "cpu[3]\n", "resource_type": "numeric\n"}
    (held,) = vfs.entries(locker, "holders", 1)
    assert files(held) == {"peer_name": "localhost/\n", "quantity": "2\n"}
    (waiting,) = vfs.entries(locker, "waitings", 1)
    assert files(waiting) == {"peer_name": "localhost/\n", "quantity": "3\n"}
    vfs.release("h", holder)
    vfs.wait_held("w")
    vfs.release("w", waiter)


@pytest.mark.parametrize(
    ("name", "kind", "value_file"),
    [
        ("_s_seq[1]", "sequence", "sequence_value"),
        ("_t_%s[1]", "timestamp", "timestamp_value"),
    ],
)
def test_element_of_sequence_and_timestamp_holders(
    vfs: Vfs, name: str, kind: str, value_file: str
) -> None:
    holder = vfs.hold("h", "-r", name)
    element = vfs.wait_held("h")
    assert element
    waiter = vfs.hold("w", "-r", name)
    locker = vfs.only_locker()
    assert files(locker) == {"resource_name": f"{name}\n", "resource_type": f"{kind}\n"}
    (held,) = vfs.entries(locker, "holders", 1)
    assert files(held) == {"peer_name": "localhost/\n", value_file: f"{element}\n"}
    (waiting,) = vfs.entries(locker, "waitings", 1)
    assert files(waiting) == {"peer_name": "localhost/\n"}
    vfs.release("h", holder)
    vfs.wait_held("w")
    vfs.release("w", waiter)


def test_hierarchical_and_set_holders(vfs: Vfs) -> None:
    hier = vfs.hold("hier", "-r", "/a/b", "-l", "CW")
    vfs.wait_held("hier")
    colours = vfs.hold("set", "-r", "red.green")
    assert vfs.wait_held("set") in ("red", "green")
    assert wait_for(lambda: len(vfs.lockers()) == 2, timeout=TIMEOUT)
    by_type = {(p / "resource_type").read_text(): p for p in vfs.lockers()}
    (held,) = vfs.entries(by_type["hierarchical\n"], "holders", 1)
    assert (by_type["hierarchical\n"] / "resource_name").read_text() == "/a/b\n"
    assert files(held) == {"lock_mode": "ConcurrentWrite", "peer_name": "localhost/\n"}
    (member,) = vfs.entries(by_type["set\n"], "holders", 1)
    assert files(member) == {"peer_name": "localhost/\n"}  # FLoM shows no set element
    vfs.release("hier", hier)
    vfs.release("set", colours)


def test_incubator(vfs: Vfs) -> None:
    waiter = vfs.hold("w", "-e", "no", "-r", "later")
    incubator = vfs.status / "incubator"
    assert wait_for(lambda: len(listing(incubator)) == 1, timeout=TIMEOUT)
    (entry,) = incubator.iterdir()
    assert files(entry) == {
        "peer_name": "localhost/\n",
        "resource_name": "later\n",
        "resource_type": "simple\n",
    }
    assert vfs.lockers() == []
    creator = vfs.hold("c", "-r", "later")  # creates the locker: the incubated request joins
    vfs.wait_held("c")
    assert wait_for(lambda: list(incubator.iterdir()) == [], timeout=TIMEOUT)
    locker = vfs.only_locker()
    assert [p.name for p in vfs.entries(locker, "waitings", 1)] == [entry.name]
    vfs.release("c", creator)
    vfs.wait_held("w")
    vfs.release("w", waiter)


def test_permissions_sizes_and_errors(vfs: Vfs) -> None:
    holder = vfs.hold("h", "-r", "perm")
    vfs.wait_held("h")
    locker = vfs.only_locker()
    (held,) = vfs.entries(locker, "holders", 1)
    for directory in (vfs.dir, vfs.status, locker, held):
        st = directory.stat()
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o550
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    for path, content in (
        (locker / "resource_name", b"perm\n"),
        (held / "lock_mode", b"Exclusive"),
    ):
        st = path.stat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o440
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert st.st_size == len(content) == len(path.read_bytes())
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(PermissionError):
            os.open(locker / "resource_name", flags)
    with pytest.raises(PermissionError):
        (locker / "new").write_text("x")
    with pytest.raises(PermissionError):
        (vfs.status / "new").mkdir()
    with pytest.raises(PermissionError):
        (locker / "resource_name").unlink()
    with pytest.raises(FileNotFoundError):
        (vfs.status / "lockers" / "999999").stat()
    with pytest.raises(FileNotFoundError):
        (locker / "missing").read_text()
    vfs.release("h", holder)


# -- unmounting ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["idle", "-x", "-X", "SIGTERM", "SIGINT"])
def test_unmounted_on_every_exit(vfs: Vfs, how: str) -> None:
    lifespan = "500" if how == "idle" else "-1"
    assert vfs.box.run("-d", lifespan, "-m", str(vfs.dir), "--", "true").returncode == 0
    pid = vfs.box.remember_daemon()
    assert pid is not None
    assert vfs.mounted()
    assert (vfs.status / "lockers").is_dir()
    if how in ("-x", "-X"):
        assert vfs.box.run(how).returncode == 0
    elif how.startswith("SIG"):
        os.kill(pid, getattr(signal, how))
    assert wait_for(lambda: not process_alive(pid), timeout=TIMEOUT)
    assert not vfs.mounted()
    vfs.dir.rmdir()


def test_busy_mount_is_detached_lazily(vfs: Vfs) -> None:
    trace = vfs.box.path("daemon.trace")
    assert (
        vfs.box.run("-d", "-1", "-t", str(trace), "-m", str(vfs.dir), "--", "true").returncode == 0
    )
    pid = vfs.box.remember_daemon()
    assert pid is not None
    # A process whose working directory is inside the mount keeps it busy.
    busy = subprocess.Popen(["sleep", "60"], cwd=vfs.status)
    try:
        assert vfs.box.run("-X").returncode == 0
        assert wait_for(lambda: not process_alive(pid), timeout=TIMEOUT)
        assert not vfs.mounted()
        assert f"with command '{shutil.which('fusermount3')} -uz {vfs.dir}'" in trace.read_text()
    finally:
        busy.kill()
        busy.wait()
    vfs.dir.rmdir()


def test_killed_daemons_mount_is_recovered_by_the_next_daemon(vfs: Vfs) -> None:
    assert vfs.box.run("-d", "-1", "-m", str(vfs.dir), "--", "true").returncode == 0
    pid = vfs.box.remember_daemon()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not process_alive(pid), timeout=TIMEOUT)
    with pytest.raises(OSError) as dead:
        os.stat(vfs.dir)
    assert dead.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    trace = vfs.box.path("daemon.trace")
    holder = vfs.hold("h", "-d", "-1", "-t", str(trace), "-r", "again")
    vfs.wait_held("h")
    assert files(vfs.only_locker())["resource_name"] == "again\n"
    log = trace.read_text()
    assert "FLM023I unmounting the status file system that a killed daemon left mounted," in log
    assert f"FLM022I mounting the status file system on '{vfs.dir}'" in log
    vfs.release("h", holder)


# -- refusals --------------------------------------------------------------------------------
def test_non_empty_mount_point_is_refused(vfs: Vfs) -> None:
    (vfs.dir / "precious").write_text("keep me")
    result = vfs.box.run("-m", str(vfs.dir), "--", "true")
    assert result.returncode == 99
    assert f"mount point '{vfs.dir}' is not empty" in result.stderr
    assert vfs.box.remember_daemon() is None
    assert not vfs.mounted()


def test_mount_point_of_a_running_daemon_is_refused(vfs: Vfs) -> None:
    assert vfs.box.run("-d", "-1", "-m", str(vfs.dir), "--", "true").returncode == 0
    assert vfs.mounted()
    other = str(vfs.box.path("other.sock"))
    result = vfs.box.run("-s", other, "-m", str(vfs.dir), "--", "true", socket_name=False)
    assert result.returncode == 99
    assert f"mount point '{vfs.dir}' already has a file system mounted on it" in result.stderr
    assert not os.path.exists(other)
    assert (vfs.status / "lockers").is_dir()  # the first daemon's mount still serves


def test_missing_fuse_library_refuses_to_start(sandbox: FlomSandbox) -> None:
    """A real daemon whose ``import mfusepy`` fails (a shadowing module on PYTHONPATH)."""
    shadow = sandbox.path("shadow")
    shadow.mkdir()
    (shadow / "mfusepy.py").write_text("raise ImportError('No module named mfusepy')\n")
    mount_point = sandbox.path("vfs")
    mount_point.mkdir()
    env = dict(sandbox.env, PYTHONPATH=str(shadow))
    result = subprocess.run(
        sandbox.args("-m", str(mount_point), "--", "true"),
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
    )
    assert result.returncode == 99
    assert FUSE_MISSING in result.stderr
    assert sandbox.remember_daemon() is None
    assert not os.path.exists(sandbox.socket)


# -- without FUSE: the tree and the snapshot cache ---------------------------------------------
def _document() -> dict[str, Any]:
    def entry(conn: int, **fields: Any) -> dict[str, Any]:
        base = {"connection": conn, "peer": "10.0.0.1/4000", "mode": None, "quantity": None}
        return base | fields

    return {
        "resources": [
            {
                "id": 1,
                "name": "res",
                "type": "simple",
                "holders": [entry(2, mode="PR", element=None)],
                "waiters": [entry(3, mode="EX")],
            },
            {
                "id": 4,
                "name": "n[5]",
                "type": "numeric",
                "holders": [entry(5, quantity=2, element=None)],
                "waiters": [entry(6, quantity=4)],
            },
            {
                "id": 7,
                "name": "_S_q[2]",
                "type": "sequence",
                "holders": [entry(8, element="12")],
                "waiters": [entry(9)],
            },
            {
                "id": 10,
                "name": "_t_%s[1]",
                "type": "timestamp",
                "holders": [entry(11, element="1795318896")],
                "waiters": [],
            },
            {
                "id": 12,
                "name": "a.b",
                "type": "set",
                "holders": [entry(13, element="a")],
                "waiters": [entry(14)],
            },
        ],
        "incubator": [
            {"connection": 15, "peer": "localhost/", "name": "x/y", "type": "hierarchical"}
        ],
    }


def test_status_tree_of_a_document() -> None:
    tree = status_tree(_document())
    assert tree["/"] == ("status",)
    assert tree["/status"] == ("lockers", "incubator")
    assert tree["/status/lockers"] == ("1", "4", "7", "10", "12")
    assert tree["/status/lockers/1"] == ("resource_name", "resource_type", "holders", "waitings")
    expected_files = {
        "/status/lockers/1/resource_name": b"res\n",
        "/status/lockers/1/resource_type": b"simple\n",
        "/status/lockers/1/holders/2/peer_name": b"10.0.0.1/4000\n",
        "/status/lockers/1/holders/2/lock_mode": b"ProtectedRead",
        "/status/lockers/1/waitings/3/lock_mode": b"Exclusive",
        "/status/lockers/4/resource_type": b"numeric\n",
        "/status/lockers/4/holders/5/quantity": b"2\n",
        "/status/lockers/4/waitings/6/quantity": b"4\n",
        "/status/lockers/7/holders/8/sequence_value": b"12\n",
        "/status/lockers/10/holders/11/timestamp_value": b"1795318896\n",
        "/status/incubator/15/peer_name": b"localhost/\n",
        "/status/incubator/15/resource_name": b"x/y\n",
        "/status/incubator/15/resource_type": b"hierarchical\n",
    }
    for path, content in expected_files.items():
        assert tree[path] == content, path
    assert tree["/status/lockers/7/waitings/9"] == ("peer_name",)
    assert tree["/status/lockers/12/holders/13"] == ("peer_name",)
    assert tree["/status/lockers/12/waitings/14"] == ("peer_name",)
    assert tree["/status/lockers/10/waitings"] == ()
    empty = status_tree({"resources": [], "incubator": []})
    assert set(empty) == {"/", "/status", "/status/lockers", "/status/incubator"}


class _Loop:
    """Runs what the FUSE thread hands to the loop on a thread of its own."""

    def __init__(self) -> None:
        self.calls = 0

    def call_soon_threadsafe(self, callback: Any) -> None:
        self.calls += 1
        threading.Thread(target=callback).start()


def test_snapshot_is_rebuilt_only_when_the_state_moved() -> None:
    loop, state = _Loop(), {"version": 1}
    document = _document()
    fs = StatusFs(loop, lambda: state["version"], lambda: json.dumps(document).encode())
    for _ in range(50):
        fs.getattr("/status/lockers/1/holders/2/lock_mode")
        assert fs.readdir("/status/lockers", None)[2:] == ["1", "4", "7", "10", "12"]
    assert loop.calls == 1
    before = fs.getattr("/status/lockers/1")["st_mtime"]
    unchanged = fs.getattr("/status/lockers/4")["st_mtime"]
    document["resources"][0]["waiters"] = []
    state["version"] = 2
    assert fs.readdir("/status/lockers/1/waitings", None) == [".", ".."]
    assert loop.calls == 2
    assert fs.getattr("/status/lockers/1/waitings")["st_mtime"] >= before
    assert fs.getattr("/status/lockers/4")["st_mtime"] == unchanged
    fh = fs.open("/status/lockers/1/resource_name", os.O_RDONLY)
    assert fs.read("/status/lockers/1/resource_name", 100, 1, fh) == b"es\n"
    fs.release("/status/lockers/1/resource_name", fh)
    with pytest.raises(OSError) as refused:
        fs.open("/status/lockers/1/resource_name", os.O_WRONLY)
    assert refused.value.errno == errno.EACCES
    with pytest.raises(OSError) as missing:
        fs.getattr("/status/nothing")
    assert missing.value.errno == errno.ENOENT
    fs.closing = True  # unmounting: served from the last snapshot, no wait for the loop
    state["version"] = 3
    fs.getattr("/status")
    assert loop.calls == 2


def test_a_loop_that_does_not_answer_gives_eio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vfs_module, "SNAPSHOT_TIMEOUT_S", 0.05)
    loop = asyncio.new_event_loop()  # never run: nothing it is given ever happens
    try:
        fs = StatusFs(loop, lambda: 1, bytes)
        with pytest.raises(OSError) as failed:
            fs.getattr("/status")
        assert failed.value.errno == errno.EIO
    finally:
        loop.close()
