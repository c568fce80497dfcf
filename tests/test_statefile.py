"""The state file module on its own: format, reload, torn tail, corruption, lock, rewrite."""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from pathlib import Path

import pytest

from pyflom.core.durable import DurableChanges, SequenceState
from pyflom.daemon import statefile
from pyflom.daemon.statefile import HEADER, StateFile, StateFileError

NOW = 1_700_000_000.0
NOW_US = 1_700_000_000_000_000
HEADER_LINE = json.dumps(HEADER) + "\n"


def write(path: Path, *records: object, tail: str = "") -> None:
    path.write_text(HEADER_LINE + "".join(json.dumps(r) + "\n" for r in records) + tail)


def seq(counter: int, *returned: int) -> dict[str, object]:
    return {"counter": counter, "returned": list(returned)}


def test_a_new_file_is_created_with_its_header_and_reserved_ceiling(tmp_path: Path) -> None:
    path = tmp_path / "state"
    with StateFile.open(str(path), NOW, reserve=1000) as state:
        assert state.durable.generations.last == NOW_US
        assert state.durable.generations.ceiling == NOW_US + 1000
        assert not state.durable.sequences
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == HEADER
    assert json.loads(lines[1]) == {"ceiling": NOW_US + 1000}


def test_recorded_changes_are_reloaded(tmp_path: Path) -> None:
    path = str(tmp_path / "state")
    with StateFile.open(path, NOW) as state:
        state.record(DurableChanges(None, {"_s_a[1]": SequenceState(1)}))
        state.record(DurableChanges(NOW_US + 5 * 10**9, {"_S_b[2]": SequenceState(4, deque([2]))}))
        state.record(DurableChanges(None, {"_s_a[1]": SequenceState(3)}))
    # a later start whose clock is behind the stored ceiling starts above the ceiling
    with StateFile.open(path, NOW - 3600) as state:
        durable = state.durable
        assert durable.generations.last == NOW_US + 5 * 10**9
        assert durable.sequences == {
            "_s_a[1]": SequenceState(3),
            "_S_b[2]": SequenceState(4, deque([2])),
        }
    # ... and one whose clock is past it starts at the clock
    with StateFile.open(path, NOW + 86400) as state:
        assert state.durable.generations.last == NOW_US + 86400 * 10**6


def test_an_existing_empty_file_refuses_until_removed(tmp_path: Path) -> None:
    """Only a file this module creates is new; it never leaves one empty."""
    path = tmp_path / "state"
    path.write_bytes(b"")
    with pytest.raises(StateFileError) as info:
        StateFile.open(str(path), NOW)
    assert str(info.value) == (
        f"state file '{path}' is empty: pyflom never leaves a state file empty, so the "
        "numbers it should hold may have been lost, and sequences would start again at 1, "
        "handing out numbers already given.  Restore it from a backup, or remove it to "
        "start every sequence afresh at 1"
    )
    assert path.read_bytes() == b""
    path.unlink()
    with StateFile.open(str(path), NOW) as state:
        assert not state.durable.sequences
    assert json.loads(path.read_text().splitlines()[0]) == HEADER


def test_a_torn_last_line_is_ignored_and_rewritten_away(tmp_path: Path) -> None:
    path = tmp_path / "state"
    write(path, {"sequences": {"_s_x[1]": seq(5)}}, tail='{"sequences":{"_s_x[1]":{"coun')
    with StateFile.open(str(path), NOW) as state:
        assert state.torn_line_ignored
        assert state.durable.sequences == {"_s_x[1]": SequenceState(5)}
    assert path.read_text().endswith("\n")
    with StateFile.open(str(path), NOW) as state:
        assert not state.torn_line_ignored


def test_a_complete_but_unterminated_last_line_is_ignored_too(tmp_path: Path) -> None:
    """Its write did not finish (the newline is part of it): nothing it said was used."""
    path = tmp_path / "state"
    write(path, {"sequences": {"_s_x[1]": seq(5)}}, tail=json.dumps({"ceiling": 1}))
    with StateFile.open(str(path), NOW) as state:
        assert state.torn_line_ignored
        assert state.durable.sequences == {"_s_x[1]": SequenceState(5)}


@pytest.mark.parametrize(
    ("lines", "cause"),
    [
        (["garbage"], "line 2: not JSON"),
        ([{"ceiling": 5, "colour": "red"}], "line 2: not a record"),
        (["[1, 2]"], "line 2: not a record"),
        ([{"ceiling": -1}], "line 2: the ceiling is -1"),
        ([{"ceiling": True}], "line 2: the ceiling is True"),
        ([{"ceiling": 2**63}], "line 2: the ceiling is"),
        ([{"ceiling": 9}, {"ceiling": 8}], "line 3: the generation ceiling goes back from 9 to 8"),
        ([{"sequences": []}], "line 2: 'sequences' is not an object"),
        ([{"sequences": {"plain": seq(1)}}], "line 2: 'plain' is not a sequence resource name"),
        ([{"sequences": {"_s_x[1]": {"counter": 1}}}], "not an object with 'counter'"),
        ([{"sequences": {"_s_x[1]": seq(1.5)}}], "the counter of '_s_x[1]' is 1.5"),
        ([{"sequences": {"_S_x[1]": seq(3, 4)}}], "returned values [4] do not fit 3"),
        ([{"sequences": {"_S_x[1]": seq(3, 2, 2)}}], "returned values [2, 2] do not fit 3"),
        ([{"sequences": {"_S_x[1]": seq(3, 0)}}], "a returned value of '_S_x[1]' is 0"),
        ([{"sequences": {"_S_x[1]": {"counter": 3, "returned": 2}}}], "'returned' is not a list"),
        (
            [{"sequences": {"_s_x[1]": seq(4)}}, {"sequences": {"_s_x[1]": seq(3)}}],
            "line 3: the counter of '_s_x[1]' goes back from 4 to 3",
        ),
        (["garbage", {"ceiling": 5}], "line 2: not JSON"),
    ],
)
def test_corruption_refuses_naming_file_line_and_cause(
    tmp_path: Path, lines: list[object], cause: str
) -> None:
    path = tmp_path / "state"
    text = HEADER_LINE + "".join(
        (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
    )
    path.write_text(text)
    with pytest.raises(StateFileError) as info:
        StateFile.open(str(path), NOW)
    message = str(info.value)
    assert message.startswith(f"state file '{path}' is corrupt at line ")
    assert cause in message
    assert path.read_text() == text  # never rewritten
    # the refusal released the lock: a fixed file can be used at once
    write(path)
    StateFile.open(str(path), NOW).close()


def test_undecodable_bytes_are_corruption(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(HEADER_LINE.encode() + b"\xff\xfe\n")
    with pytest.raises(StateFileError, match="corrupt at line 2: not JSON"):
        StateFile.open(str(path), NOW)


@pytest.mark.parametrize(
    "content", ["precious data\n", '{"format": "pyflom state file", "version": 2}\n', "no newline"]
)
def test_a_file_that_is_not_a_state_file_is_never_overwritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(content)
    with pytest.raises(StateFileError, match="is not a pyflom state file") as info:
        StateFile.open(str(path), NOW)
    assert str(path) in str(info.value)
    assert path.read_text() == content


def test_a_missing_directory_refuses(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "state"
    with pytest.raises(StateFileError) as info:
        StateFile.open(str(path), NOW)
    assert str(info.value) == (
        f"state file '{path}': its directory '{tmp_path / 'absent'}' does not exist"
    )


def test_a_directory_in_place_of_the_file_refuses(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir()
    with pytest.raises(StateFileError) as info:
        StateFile.open(str(path), NOW)
    assert str(info.value) == f"state file '{path}' is not a regular file but a directory"


def test_a_second_user_of_the_file_refuses_naming_the_owner(tmp_path: Path) -> None:
    path = str(tmp_path / "state")
    with StateFile.open(path, NOW):
        with pytest.raises(StateFileError) as info:
            StateFile.open(path, NOW)
        assert str(info.value) == (
            f"state file '{path}' is in use by another daemon (pid {os.getpid()}): two "
            "daemons must never share a state file (give each daemon its own)"
        )
    StateFile.open(path, NOW).close()  # released on close


def test_the_log_is_rewritten_once_it_grows_past_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statefile, "COMPACT_MIN_BYTES", 2000)
    path = tmp_path / "state"
    sizes = []
    with StateFile.open(str(path), NOW) as state:
        for counter in range(1, 101):
            state.durable.sequence("_s_x[1]").counter = counter
            state.record(DurableChanges(None, {"_s_x[1]": SequenceState(counter)}))
            sizes.append(path.stat().st_size)
    assert max(sizes) <= 2000 + 100  # the bound, plus the record that crossed it
    assert any(later < earlier for earlier, later in itertools.pairwise(sizes))  # rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "state.lock"]  # no temp file
    with StateFile.open(str(path), NOW) as state:
        assert state.durable.sequences == {"_s_x[1]": SequenceState(100)}


# -- other users: links, shared directories, ownership ------------------------------------

VICTIM = "the daemon user's precious file\n"


def plant_link(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A directory for the state file, where a symbolic link ``name`` points to a file of
    the daemon's user (as another user able to write there would plant it); the
    directory and the file."""
    directory = tmp_path / "dir"
    directory.mkdir(exist_ok=True)
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    (directory / name).symlink_to(victim)
    return directory, victim


def refusal(path: Path) -> str:
    """Why the state file at ``path`` cannot be opened."""
    with pytest.raises(StateFileError) as info:
        StateFile.open(str(path), NOW)
    return str(info.value)


def named(path: Path, name: str) -> str:
    """How a refusal names the file ``name`` beside the state file ``path``."""
    lock = "" if name == path.name else f": its lock file '{path.parent / name}'"
    return f"state file '{path}'{lock}"


@pytest.mark.parametrize("name", ["state", "state.lock"])
def test_a_symbolic_link_is_never_followed(tmp_path: Path, name: str) -> None:
    directory, victim = plant_link(tmp_path, name)
    path = directory / "state"
    assert refusal(path) == (
        f"{named(path, name)} is a symbolic link: refusing to follow it (another user may "
        "have pointed it at a file that would be overwritten); remove it, or give the real path"
    )
    assert victim.read_text() == VICTIM
    (directory / name).unlink()
    StateFile.open(str(path), NOW).close()  # works once the link is gone
    assert victim.read_text() == VICTIM


def test_a_link_at_the_old_temp_name_is_removed_not_written(tmp_path: Path) -> None:
    """Rewrites use a new file of a random name, never an existing one: a link left at
    a temp name (``FILE.tmp`` was the only one once) is harmless, and removed."""
    directory, victim = plant_link(tmp_path, "state.tmp")
    (directory / "state.tmp.0123abcd").write_text("left by a daemon killed while rewriting")
    with StateFile.open(str(directory / "state"), NOW) as state:
        state.compact()
    assert victim.read_text() == VICTIM
    assert sorted(p.name for p in directory.iterdir()) == ["state", "state.lock"]


def test_a_hard_linked_lock_file_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "state"
    victim = tmp_path / "victim"
    victim.write_text(VICTIM)
    os.link(victim, tmp_path / "state.lock")
    with pytest.raises(StateFileError, match=r"its lock file .* has 2 hard links") as info:
        StateFile.open(str(path), NOW)
    assert str(info.value).endswith(
        "it may be another file as well, which would be overwritten; remove it"
    )
    assert victim.read_text() == VICTIM


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702], ids=oct)
def test_a_directory_others_can_write_in_refuses(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(mode)
    path = directory / "state"
    assert refusal(path) == (
        f"state file '{path}': its directory '{directory}' is writable by other users "
        f"(mode {mode:o}), who could replace the state file or plant links in it: make it "
        f"writable by its owner only (chmod go-w '{directory}') or use another directory"
    )
    assert list(directory.iterdir()) == []  # not even the lock file
    directory.chmod(mode & ~0o022)
    StateFile.open(str(path), NOW).close()


def test_a_sticky_directory_like_tmp_is_accepted(tmp_path: Path) -> None:
    directory = tmp_path / "sticky"
    directory.mkdir()
    directory.chmod(0o1777)
    path = str(directory / "state")
    with StateFile.open(path, NOW) as state:
        state.record(DurableChanges(None, {"_s_x[1]": SequenceState(7)}))
    with StateFile.open(path, NOW) as state:
        assert state.durable.sequences == {"_s_x[1]": SequenceState(7)}


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="gives files to another user")
OTHER_UID = 54321


@needs_root
def test_a_directory_of_another_user_refuses(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir()
    os.chown(directory, OTHER_UID, OTHER_UID)
    path = directory / "state"
    assert refusal(path) == (
        f"state file '{path}': its directory '{directory}' belongs to another user "
        f"(uid {OTHER_UID}), who could replace the state file or plant links in it: use a "
        "directory of your own"
    )


@needs_root
@pytest.mark.parametrize("name", ["state", "state.lock"])
def test_in_a_sticky_directory_a_file_of_another_user_refuses(tmp_path: Path, name: str) -> None:
    directory = tmp_path / "sticky"
    directory.mkdir()
    directory.chmod(0o1777)
    path = directory / "state"
    planted = directory / name
    planted.write_text(HEADER_LINE + json.dumps({"sequences": {"_s_x[1]": seq(1)}}) + "\n")
    os.chown(planted, OTHER_UID, OTHER_UID)
    before = planted.read_text()
    assert refusal(path) == (
        f"{named(path, name)} belongs to another user (uid {OTHER_UID}) in a directory where "
        "anybody may create files: it is not this daemon's; remove it, or use a directory of "
        "your own"
    )
    assert planted.read_text() == before
    # the same file in a directory only its owner writes in was put there on purpose
    directory.chmod(0o755)
    StateFile.open(str(path), NOW).close()


def test_rewrites_keep_the_mode_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statefile, "COMPACT_MIN_BYTES", 2000)
    path = tmp_path / "state"
    write(path, {"sequences": {"_s_x[1]": seq(1)}})
    path.chmod(0o600)
    if os.geteuid() == 0:  # root may give the file to its user: a rewrite keeps that too
        os.chown(path, OTHER_UID, OTHER_UID)
    before = path.stat()
    sizes = []
    with StateFile.open(str(path), NOW) as state:
        for counter in range(2, 102):
            state.durable.sequence("_s_x[1]").counter = counter
            state.record(DurableChanges(None, {"_s_x[1]": SequenceState(counter)}))
            after = path.stat()
            sizes.append(after.st_size)
            assert (after.st_mode, after.st_uid, after.st_gid) == (
                before.st_mode,
                before.st_uid,
                before.st_gid,
            )
    assert any(later < earlier for earlier, later in itertools.pairwise(sizes))  # rewritten


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602], ids=oct)
def test_a_state_file_others_can_write_in_refuses(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "state"
    write(path, {"sequences": {"_s_x[1]": seq(3)}})
    path.chmod(mode)
    before = path.read_text()
    assert refusal(path) == (
        f"state file '{path}' is writable by other users (mode {mode:o}), who could change "
        f"the numbers it holds: chmod go-w '{path}'"
    )
    assert path.read_text() == before
    path.chmod(mode & ~0o022)
    with StateFile.open(str(path), NOW) as state:
        assert state.durable.sequences == {"_s_x[1]": SequenceState(3)}
