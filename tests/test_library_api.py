"""The library's API cannot be misused by accident (issue 17, items 1-4 and 8): kinds of
resource asked for explicitly, names and modes refused with the rule, one exception
base that is a TimeoutError, and what type checkers see."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import pyflom
import pyflom.aio
from conftest import FlomSandbox
from pyflom.lockmodes import LockMode
from pyflom.status import query_status

# ------------------------------------------------------------ 1. kinds are explicit


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("app.lock", ["set resource", "ONE of 'app' and 'lock'", "mode is ignored",
                      "kind='set'", "pyflom.one_of('app', 'lock')", "write 'applock'"]),
        ("pool[3]", ["numeric resource", "semaphore of 3 units", "pyflom.semaphore('pool', 3)",
                     "write 'pool3'"]),
        ("_s_ids[2]", ["sequence resource", "pyflom.sequence('ids', 2)"]),
        ("_S_ids[1]", ["pyflom.sequence('ids', 1, transactional=True)"]),
        ("_t_%H%M[1]", ["timestamp resource", "pyflom.timestamp('%H%M', 1)"]),
    ],
)  # fmt: skip
def test_a_name_never_changes_kind_by_its_shape(name: str, said: list[str]) -> None:
    for make in (
        lambda: pyflom.lock(name, mode="EX", start_daemon=False),
        lambda: pyflom.Handle(name, start_daemon=False),
        lambda: pyflom.aio.lock(name, start_daemon=False),
    ):
        with pytest.raises(pyflom.InvalidResourceName) as info:
            make()
        assert isinstance(info.value, ValueError)
        for words in said:
            assert words in str(info.value)


def test_the_property_follows_the_handle_kind() -> None:
    handle = pyflom.Handle("plain", start_daemon=False)
    with pytest.raises(pyflom.InvalidResourceName, match="would name a set resource"):
        handle.resource_name = "red.green"
    assert handle.resource_name == "plain"
    handle.resource_name = "/a/b"  # hierarchical: modes apply, allowed without kind
    handle.kind = "set"
    handle.resource_name = "red.green"
    assert (handle.kind, handle.resource_name) == ("set", "red.green")
    with pytest.raises(
        pyflom.InvalidResourceName, match=r"names a simple resource \(.*\), not a set one"
    ):
        handle.resource_name = "plain"
    handle.kind = None  # the name is checked again when locking
    with pytest.raises(pyflom.InvalidResourceName, match="would name a set resource"):
        handle.lock()
    assert handle.state is pyflom.HandleState.INIT
    with pytest.raises(ValueError, match="kind='bogus' is not a kind of resource"):
        pyflom.Handle("plain", kind="bogus", start_daemon=False)  # type: ignore[arg-type]
    with pytest.raises(pyflom.InvalidResourceName, match="a set resource is named by two"):
        pyflom.lock("app", kind="set", start_daemon=False)
    # A name given through the settings is held to the same rule.
    with pytest.raises(pyflom.InvalidResourceName, match="would name a set"):
        pyflom.Handle(settings=pyflom.Settings(resource_name="app.lock"))


def test_a_mode_for_a_kind_without_modes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"mode='PR' does not apply to 'red\.green', a set"):
        pyflom.lock("red.green", "PR", kind="set", start_daemon=False)
    pyflom.lock("red.green", "EX", kind="set", start_daemon=False)  # EX is what it does


def test_the_kind_helpers_lock_what_they_say(daemon: FlomSandbox) -> None:
    where: dict[str, Any] = {"socket_name": daemon.socket, "start_daemon": False}
    with (
        pyflom.one_of("app", "lock", **where) as first,
        pyflom.one_of("app", "lock", **where) as second,
    ):
        assert {first.locked_element, second.locked_element} == {"app", "lock"}
        with pytest.raises(pyflom.LockBusy), pyflom.one_of("app", "lock", timeout=0, **where):
            pass
    with pyflom.semaphore("pool", 2, **where) as a, pyflom.semaphore("pool", 2, **where) as b:
        assert a.resource_name == b.resource_name == "pool[2]"
        with pytest.raises(pyflom.LockBusy), pyflom.semaphore("pool", 2, timeout=0, **where):
            pass
    impossible = r"'pool\[2\]' can never grant .*3 units"
    with (
        pytest.raises(pyflom.LockImpossible, match=impossible),
        pyflom.semaphore("pool", 2, quantity=3, **where),
    ):
        pass
    numbers = []
    for _ in range(2):
        with pyflom.sequence("ids", idle_lifespan=30, **where) as h:
            numbers.append(h.locked_element)
    assert numbers == ["1", "2"]
    with pyflom.timestamp("%Y#fff", **where) as h:
        assert h.locked_element is not None and h.locked_element[4] == "."
    with pytest.raises(ValueError, match="two elements or more"):
        pyflom.one_of("alone")
    with pytest.raises(pyflom.InvalidResourceName, match="an element of one_of"):
        pyflom.one_of("a", "b-c")

    async def main() -> list[str | None]:
        async with (
            pyflom.aio.one_of("x", "y", **where) as h1,
            pyflom.aio.semaphore("apool", 1, **where),
            pyflom.aio.sequence("aids", **where) as h2,
        ):
            return [h1.locked_element, h2.locked_element]

    assert asyncio.run(main()) == ["x", "1"]


def test_the_command_keeps_flom_naming_rules(daemon: FlomSandbox) -> None:
    result = daemon.run("-r", "red.green", "-o", "0", "--", "echo")
    assert (result.returncode, result.stdout.strip()) == (0, "red")


# ------------------------------------------------------------ 2. names say the rule


@pytest.mark.parametrize(
    ("name", "fix"),
    [("my-lock", "mylock"), ("my_lock", "mylock"), ("job:42", "job42"),
     ("orders/123", "/orders/123"), ("/a//b", "/a/b"), ("1abc", "r1abc")],
)  # fmt: skip
def test_a_refused_name_says_the_rule_and_a_spelling_that_works(name: str, fix: str) -> None:
    with pytest.raises(pyflom.InvalidResourceName) as info:
        pyflom.Handle(name, start_daemon=False)
    text = str(info.value)
    assert text.startswith(f"'{name}' is not a valid name for a resource: ")
    assert "letters and digits" in text or "levels after '/'" in text
    assert f"write '{fix}'" in text
    assert pyflom.Handle(fix, start_daemon=False).resource_name == fix  # the fix works


def test_the_command_says_the_rule_on_stderr(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-r", "my-lock", "--", "true")
    assert result.returncode == 99
    assert result.stdout == "ERROR: 'my-lock' is not a valid name for a resource\n"  # FLoM's
    assert "flom: -r: a resource name is ASCII letters and digits" in result.stderr
    assert "write 'mylock'" in result.stderr


# ------------------------------------------------------------ 3. modes


def test_a_wrong_mode_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        pyflom.lock("R", mode="write", start_daemon=False)  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith("'write' is not a lock mode (for one writer write 'EX')")
    for short, long in (("NL", "NullLock"), ("PR", "ProtectedRead"), ("EX", "Exclusive")):
        assert f"{short} ({long}): " in text
    with pytest.raises(ValueError, match="7 is not a lock mode"):
        pyflom.Handle(lock_mode=7, start_daemon=False)  # type: ignore[arg-type]
    # What was accepted stays accepted at run time.
    assert pyflom.Handle(lock_mode="pr", start_daemon=False).lock_mode is LockMode.PR  # type: ignore[arg-type]
    assert pyflom.Handle(lock_mode="ProtectedWrite", start_daemon=False).lock_mode is LockMode.PW


# ------------------------------------------------------------ 4. exceptions


def test_busy_and_timeout_share_a_timeout_error_base_naming_resource_and_holder(
    daemon: FlomSandbox,
) -> None:
    assert issubclass(pyflom.LockBusy, pyflom.LockUnavailable)
    assert issubclass(pyflom.LockTimeout, pyflom.LockUnavailable)
    assert issubclass(pyflom.LockUnavailable, TimeoutError)
    assert issubclass(pyflom.LockUnavailable, pyflom.FlomError)
    with pyflom.lock("Busy", "PR", socket_name=daemon.socket):
        with (
            pytest.raises(TimeoutError) as info,
            pyflom.lock("Busy", timeout=0, socket_name=daemon.socket),
        ):
            pass
        busy = info.value
        assert isinstance(busy, pyflom.LockBusy) and busy.rc == 4  # FLoM's reason code
        assert "INFO:" not in str(busy) and "'Busy'" in str(busy)
        assert busy.resource == "Busy"
        # The message says who holds it (the blocking library asks on the first str()).
        assert f"; now held by localhost/ pid {os.getpid()} (PR, for " in str(busy), str(busy)
        assert busy.holders is not None
        assert [(h["pid"], h["mode"], h["name"]) for h in busy.holders] == [
            (os.getpid(), "PR", "Busy")
        ]
        # A request that may wait, from this thread, would wait on itself (SelfDeadlock):
        # the timeout is met from another thread.
        errors: list[BaseException] = []

        def wait_briefly() -> None:
            try:
                with pyflom.lock("Busy", timeout=0.2, socket_name=daemon.socket):
                    pass
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait_briefly)
        waiter.start()
        waiter.join(timeout=60)
        assert len(errors) == 1, errors
        late = errors[0]
        assert isinstance(late, pyflom.LockTimeout) and late.rc == 9
        assert late.resource == "Busy" and late.holders is not None and len(late.holders) == 1

        async def refused() -> BaseException:
            try:
                async with pyflom.aio.lock("Busy", timeout=0, socket_name=daemon.socket):
                    pass
            except TimeoutError as exc:
                return exc
            raise AssertionError("granted")

        error = asyncio.run(refused())
        assert isinstance(error, pyflom.LockBusy) and error.resource == "Busy"
        # asyncio: str() never blocks the loop on a query; once asked, it says who.
        assert "now held by" not in str(error)
        assert error.holders is not None and f"now held by localhost/ pid {os.getpid()}" in str(
            error
        )
    assert pyflom.LockBusy("x").holders is None  # not from a request: unknown
    copy = pickle.loads(pickle.dumps(busy))  # e.g. from a worker process
    assert (type(copy), str(copy), copy.resource, copy.holders) == (
        pyflom.LockBusy,
        str(busy),
        "Busy",
        busy.holders,
    )
    with pyflom.lock("Busy", socket_name=daemon.socket):
        with pytest.raises(pyflom.LockBusy) as info:
            pyflom.lock("Busy", timeout=0, socket_name=daemon.socket).__enter__()
        unread = pickle.loads(pickle.dumps(info.value))  # holders not asked for yet
    assert unread.resource == "Busy" and unread.holders is None


@pytest.mark.parametrize("answer", ["closes", "never answers"])
def test_holders_are_unknown_and_asked_quickly_where_the_daemon_does_not_tell(
    tmp_path: Path, answer: str
) -> None:
    """FLoM's C daemon closes the connection on a status query; a daemon that does not
    answer at all costs at most HOLDERS_TIMEOUT_S."""
    from pyflom.client import HOLDERS_TIMEOUT_S, holders_of

    path = str(tmp_path / "sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            if answer == "never answers":
                done.wait(10)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    begin = time.monotonic()
    try:
        assert holders_of(pyflom.Settings(socket_name=path, resource_name="R")) is None
        assert time.monotonic() - begin < HOLDERS_TIMEOUT_S + 1.0
    finally:
        done.set()
        server.join(10)
        listener.close()


def test_the_command_output_for_a_busy_resource_is_unchanged(daemon: FlomSandbox) -> None:
    with pyflom.lock("Held", socket_name=daemon.socket):
        result = daemon.run("-r", "Held", "-o", "0", "--", "true")
    assert result.returncode == 98
    assert result.stderr == "Resource already locked, the lock cannot be obtained\n"


# ------------------------------------------------------------ 8. typing, introspection


def test_dir_lists_the_public_names() -> None:
    names = dir(pyflom)
    for name in ("lock", "Handle", "Settings", "LockUnavailable", "semaphore", "one_of", "aio"):
        assert name in names
    with pytest.raises(AttributeError):
        pyflom.lokc  # type: ignore[attr-defined]  # noqa: B018


def test_settings_refuse_a_misspelt_setting_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match=r"no setting 'unicast_adress' \(did you mean "
                       r"'unicast_address'\?\)"):  # fmt: skip
        pyflom.Settings(unicast_adress="10.0.0.1")  # type: ignore[call-arg]


def test_the_generation_is_an_int_inside_the_block(daemon: FlomSandbox) -> None:
    with pyflom.lock("Fenced", socket_name=daemon.socket) as handle:
        generation = handle.generation
        assert isinstance(generation, int) and generation == handle.lock_generation
    with pytest.raises(pyflom.InvalidSequence, match="no lock is held"):
        handle.generation  # noqa: B018


def test_query_status_is_a_typed_dict_that_reads_as_before(daemon: FlomSandbox) -> None:
    with pyflom.lock("Seen", socket_name=daemon.socket):
        document = query_status(pyflom.Settings(socket_name=daemon.socket), "Seen")
    assert isinstance(document, dict) and document["pyflom_status"] == 1
    (resource,) = document["resources"]
    assert resource["holders"][0]["pid"] == os.getpid()


def test_a_duration_warning_points_at_the_callers_line() -> None:
    from pyflom.durations import DurationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        pyflom.lock("R", timeout=2000, start_daemon=False)
        pyflom.Handle("R", idle_lifespan=60000, start_daemon=False)
        pyflom.semaphore("P", 2, timeout=3000, start_daemon=False)
        pyflom.aio.lock("R", timeout=2000, start_daemon=False)
    assert [(w.category, w.filename, w.lineno) for w in caught] == [
        (DurationWarning, __file__, line + i) for i in range(4)
    ]


MISUSES = """\
import pyflom
import pyflom.aio
from pyflom.status import query_status


async def main(settings: pyflom.Settings) -> None:
    pyflom.lokc
    with pyflom.aio.lock("R"):
        pass
    pyflom.Settings(unicast_adress="10.0.0.1")
    pyflom.lock("R", mode="write")
    pyflom.Handle("R", kind="sets")
    with pyflom.lock("R") as handle:
        fencing: int = handle.lock_generation
    query_status(settings)["resourcez"]
"""

GOOD_USES = """\
import pyflom
import pyflom.aio
from pyflom.status import query_status


async def main(settings: pyflom.Settings) -> None:
    with pyflom.lock("R", mode="PR", timeout=2) as handle:
        fencing: int = handle.generation
    async with pyflom.aio.lock("R", "EX", kind="simple") as ahandle:
        other: int = ahandle.generation
    with pyflom.one_of("a", "b", timeout=0), pyflom.semaphore("p", 3, quantity=2):
        pass
    with pyflom.sequence("s", 2, transactional=True, idle_lifespan=60):
        pass
    pyflom.Settings(unicast_address="10.0.0.1", unicast_port=28015)
    held: float = query_status(settings)["resources"][0]["holders"][0]["held_s"]
    mode: pyflom.ModeName = "EX"
    kind: pyflom.ResourceKind = "set"
    print(dir(pyflom), fencing, other, held, mode, kind, pyflom.LockUnavailable)
"""


def test_type_checkers_refuse_the_misuses(tmp_path: Path) -> None:
    (tmp_path / "misuses.py").write_text(MISUSES)
    (tmp_path / "good_uses.py").write_text(GOOD_USES)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", "--hide-error-context", "misuses.py", "good_uses.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if not e.startswith("misuses.py:")], result.stdout
    lines = sorted({int(e.split(":")[1]) for e in errors})
    wrong = {n + 1: text for n, text in enumerate(MISUSES.splitlines())}
    expected = [7, 8, 10, 11, 12, 14, 15]
    assert lines == expected, "\n".join(
        [result.stdout, *(f"{n}: {wrong[n]}" for n in sorted(set(lines) ^ set(expected)))]
    )
    assert "[attr-defined]" in result.stdout and "[call-arg]" in result.stdout
    assert '"lokc"' in result.stdout and "unicast_adress" in result.stdout
