"""The sans-IO side of what outlives a daemon: generations that follow the clock, the
durable generation ceiling, and sequence counters kept (and reported) by DurableState."""

from __future__ import annotations

import itertools
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from pyflom.core import LockTable, Request
from pyflom.core.durable import (
    DurableState,
    GenerationCounter,
    SequenceState,
    clock_us,
)


def granted(table: LockTable, conn: int, name: str, now: float = 0.0) -> tuple[str | None, int]:
    (answer,) = table.lock(conn, Request(name), now)
    assert answer.rc == 0 and answer.generation is not None
    return answer.element, answer.generation


# -- generations without configuration ------------------------------------------------


def test_generation_follows_the_clock_and_never_goes_back() -> None:
    counter = GenerationCounter()
    assert counter.next(100.0) == 100_000_000
    assert counter.next(100.0) == 100_000_001  # same microsecond: previous + 1
    assert counter.next(50.0) == 100_000_002  # clock set back: still increasing
    assert counter.next(200.5) == 200_500_000
    assert counter.ceiling is None and not counter.ceiling_changed


def test_a_table_started_later_continues_above_an_earlier_one() -> None:
    """A daemon restart, sans-IO: the second table knows nothing of the first."""
    first = LockTable()
    gens = [granted(first, conn, f"R{conn}", 1_700_000_000.0)[1] for conn in range(3)]
    second = LockTable()
    gens.append(granted(second, 1, "R0", 1_700_000_000.001)[1])
    assert all(a < b for a, b in itertools.pairwise(gens))


# -- the durable ceiling ----------------------------------------------------------------


def test_ceiling_is_reserved_ahead_and_each_move_reported_once() -> None:
    durable = DurableState(generation_floor=5_000_000, reserve=1000)
    table = LockTable(durable=durable)
    assert durable.generations.ceiling == 5_001_000  # written when the file is opened
    assert granted(table, 1, "R", 0.0)[1] == 5_000_001
    assert table.pending_changes() is None  # under the ceiling: nothing to write
    table.unlock(1, "R", False, 0.0)
    assert granted(table, 2, "R", 5.002)[1] == 5_002_000
    changes = table.pending_changes()
    assert changes is not None and changes.ceiling == 5_003_000 and not changes.sequences
    assert table.pending_changes() is None


@settings(max_examples=200, deadline=None)
@given(
    floor=st.integers(0, 10**7),
    reserve=st.integers(1, 5000),
    nows=st.lists(st.floats(0, 20.0, allow_nan=False), min_size=1, max_size=50),
)
def test_no_generation_ever_passes_the_durable_ceiling(
    floor: int, reserve: int, nows: list[float]
) -> None:
    durable = DurableState(generation_floor=floor, reserve=reserve)
    table = LockTable(durable=durable)
    written = durable.generations.ceiling  # what the file says after opening
    assert written is not None
    last = floor
    for conn, now in enumerate(nows):
        generation = granted(table, conn, "R", now)[1]
        table.unlock(conn, "R", False, now)
        changes = table.pending_changes()  # the daemon writes these before answering
        if changes is not None and changes.ceiling is not None:
            assert changes.ceiling > written
            written = changes.ceiling
        assert last < generation <= written
        assert generation >= clock_us(now)
        last = generation


# -- sequences ---------------------------------------------------------------------------


def test_sequence_changes_are_reported_for_the_daemon_to_write() -> None:
    durable = DurableState(generation_floor=0, reserve=10**12)
    table = LockTable(durable=durable)
    assert granted(table, 1, "_S_x[1]")[0] == "1"
    changes = table.pending_changes()
    assert changes is not None and changes.ceiling is None
    assert changes.sequences == {"_S_x[1]": SequenceState(1, deque())}
    assert table.unlock(1, "_S_x[1]", True, 0) == []  # rolled back: 1 waits to go again
    changes = table.pending_changes()
    assert changes is not None and changes.sequences == {"_S_x[1]": SequenceState(1, deque([1]))}
    assert granted(table, 2, "_S_x[1]")[0] == "1"
    changes = table.pending_changes()
    assert changes is not None and changes.sequences == {"_S_x[1]": SequenceState(1, deque())}
    table.unlock(2, "_S_x[1]", False, 0)  # committed: nothing to write
    assert table.pending_changes() is None
    granted(table, 3, "R")
    assert table.pending_changes() is None  # other types write nothing


def test_reported_changes_are_copies() -> None:
    durable = DurableState(generation_floor=0, reserve=10**12)
    table = LockTable(durable=durable)
    granted(table, 1, "_s_x[2]")
    changes = table.pending_changes()
    granted(table, 2, "_s_x[2]")
    assert changes is not None and changes.sequences["_s_x[2]"].counter == 1


def test_without_durable_state_a_sequence_restarts_once_expired() -> None:
    """FLoM's behaviour, unchanged when there is no state file."""
    table = LockTable()
    assert granted(table, 1, "_s_x[1]")[0] == "1"
    table.unlock(1, "_s_x[1]", False, 0)
    table.tick(100.0)
    assert not table.resources
    assert granted(table, 2, "_s_x[1]", 100.0)[0] == "1"
    assert table.pending_changes() is None


def test_durable_sequence_outlives_its_resource() -> None:
    table = LockTable(durable=DurableState(generation_floor=0, reserve=10**12))
    assert granted(table, 1, "_S_x[1]")[0] == "1"
    table.unlock(1, "_S_x[1]", False, 0)
    assert granted(table, 2, "_S_x[1]")[0] == "2"
    table.disconnect(2, 0)  # lost its client: 2 is rolled back
    table.tick(100.0)
    assert not table.resources
    assert granted(table, 3, "_S_x[1]", 100.0)[0] == "2"
    table.unlock(3, "_S_x[1]", False, 100.0)
    assert granted(table, 4, "_S_x[1]", 100.0)[0] == "3"


def test_loaded_sequences_continue_with_rolled_back_values_first() -> None:
    durable = DurableState(
        generation_floor=0,
        sequences={"_S_x[2]": SequenceState(7, deque([3, 5])), "_s_y[1]": SequenceState(4)},
    )
    table = LockTable(durable=durable)
    assert [granted(table, c, "_S_x[2]")[0] for c in (1, 2)] == ["3", "5"]
    table.unlock(1, "_S_x[2]", False, 0)
    assert granted(table, 3, "_S_x[2]")[0] == "8"
    assert granted(table, 4, "_s_y[1]")[0] == "5"
    assert granted(table, 5, "_s_z[1]")[0] == "1"


def test_snapshot_is_the_whole_state_without_unused_sequences() -> None:
    durable = DurableState(
        generation_floor=10, reserve=100, sequences={"_s_a[1]": SequenceState(2)}
    )
    table = LockTable(durable=durable)
    table.lock(1, Request("_s_never[0]", wait=False), 0)  # created, never granted
    granted(table, 2, "_S_b[1]")
    table.pending_changes()
    snapshot = durable.snapshot()
    assert snapshot.ceiling == 110
    assert snapshot.sequences == {"_S_b[1]": SequenceState(1), "_s_a[1]": SequenceState(2)}
