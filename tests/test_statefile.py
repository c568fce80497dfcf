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


def test_an_empty_file_is_a_new_state(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"")
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


def test_an_unreadable_path_refuses(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir()
    with pytest.raises(StateFileError, match=f"cannot read state file '{path}': Is a directory"):
        StateFile.open(str(path), NOW)


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
    assert not (tmp_path / "state.tmp").exists()
    with StateFile.open(str(path), NOW) as state:
        assert state.durable.sequences == {"_s_x[1]": SequenceState(100)}
