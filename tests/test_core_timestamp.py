"""Timestamp resources ``_t_FORMAT[N]`` (reference 5.7), driven with explicit times."""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pyflom import rc
from pyflom.core import Answer, LockTable, Request, Verdict
from pyflom.core import table as table_module
from pyflom.core.resource import ResourceInitError
from pyflom.core.table import register_resource_class
from pyflom.core.timestamp import MAX_WIDTH, TimestampFormat, TimestampResource
from pyflom.names import ResourceType, resource_type
from pyflom.settings import GrantPolicy

US = 1_000_000
T0 = 1795318896  # 2026-11-22 03:41:36 UTC, the reference's example instant
MINUTE0 = T0 - 36  # 03:41:00
HOUR0 = T0 - 41 * 60 - 36  # 03:00:00
CET = "CET-1CEST,M3.5.0,M10.5.0/3"  # Central Europe, with daylight saving time
FALL_BACK = 1792890000  # 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET
SPRING_FORWARD = 1774746000  # 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST


def set_tz(tz: str | None) -> None:
    if tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = tz
    time.tzset()


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    saved = os.environ.get("TZ")
    set_tz("UTC")
    yield
    set_tz(saved)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    saved = table_module._RESOURCE_CLASSES.get(ResourceType.TIMESTAMP)
    register_resource_class(ResourceType.TIMESTAMP, TimestampResource)
    yield
    if saved is None:
        del table_module._RESOURCE_CLASSES[ResourceType.TIMESTAMP]
    else:
        register_resource_class(ResourceType.TIMESTAMP, saved)


def req(name: str, wait: bool = True) -> Request:
    return Request(name=name, wait=wait)


def rcs(answers: list[Answer]) -> list[tuple[object, int, str | None]]:
    return [(a.conn, a.rc, a.element) for a in answers]


def grant(resource: TimestampResource, now: float, conn: object = None) -> str | None:
    verdict, granted = resource.acquire(conn, req(resource.name), now)
    assert verdict is Verdict.GRANTABLE and granted is not None
    return granted.element


# -- formats ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "now", "value"),
    [
        ("_t_%H:%M:%S#fff[1]", T0 + 0.801, "03:41:36.801"),
        ("_t_%s[1]", T0 + 0.999999, "1795318896"),
        ("_t_%Y%m%d%H%M%S#ffffff[1]", T0 + 2.017369, "20261122034138.017369"),
        ("_t_%S#f#ff[1]", T0 + 2.03, "38.0.03"),
        ("_t_tmstmp%S#f[1]", T0 + 0.25, "tmstmp36.2"),
        ("_t_%c[1]", T0, "Sun Nov 22 03:41:36 2026"),
        ("_t_%r[1]", T0, "03:41:36 AM"),
        ("_t_%T[1]", T0, "03:41:36"),
        ("_t_%R[1]", T0, "03:41"),
        ("_t_%I[1]", T0, "03"),
    ],
)
def test_reference_examples(name: str, now: float, value: str) -> None:
    assert resource_type(name) == ResourceType.TIMESTAMP
    assert grant(TimestampResource(name=name), now) == value


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("%#fff%S", "%.01736"),  # fractions are found first: a literal % then .017
        ("#x%S", "#x36"),  # a # not followed by f is literal
        ("##fffffff%S", "#.017369f36"),  # at most 6 digits; the 7th f is literal
        ("%%S#f", "%S.0"),  # %% is a literal %
        ("%S.:\\", "36.:\\"),
        ("%#Z%S", "utc36"),  # glibc flags work inside conversions
        ("%10s%S", "179531889636"),
        ("%S%", "36%"),  # a % that starts no conversion is literal
        ("%:z%S", "%:z36"),
    ],
)
def test_literal_text_and_fractions(fmt: str, value: str) -> None:
    assert TimestampFormat.parse(fmt).render(T0, 17369) == value


@pytest.mark.parametrize(
    ("fmt", "grain_us"),
    [
        ("%S#f", 100_000),
        ("%M#ff", 10_000),
        ("%H#fff", 1_000),
        ("%S#ffff", 100),
        ("%S#fffff", 10),
        ("#ffffff", 1),
        ("%Y#f#ffff", 100),  # the finest fraction wins
        ("a%S", US),
        ("%c", US),
        ("%r", US),
        ("%s", US),
        ("%T", US),
        ("%X", US),
        ("%S%M%H", US),
        ("%M", 60 * US),
        ("%R", 60 * US),
        ("%M%H", 60 * US),
        ("%H", 3600 * US),
        ("%I", 3600 * US),
        ("%Y%m%d%H", 3600 * US),
        ("%0S%H", 3600 * US),  # like FLoM, only the plain form of a specifier counts
    ],
)
def test_grain_classes(fmt: str, grain_us: int) -> None:
    assert TimestampFormat.parse(fmt).grain_us == grain_us
    table = LockTable()
    assert table.lock(1, req(f"_t_{fmt}[1]"), T0)[0].rc == rc.OK


SLOW = "%a%A%b%B%C%d%D%e%F%g%G%h%j%m%u%U%V%w%W%x%y%Y%z%Z%n%t%p"


@pytest.mark.parametrize(
    "fmt", ["abc", "%Y%m%d", SLOW, "%%S", "%%%%M", "%0S", "%OS", "%EX", "%k%l", "%", "a#b"]
)
def test_formats_without_a_time_grain_are_refused(fmt: str) -> None:
    name = f"_t_{fmt}[1]"
    assert resource_type(name) == ResourceType.TIMESTAMP
    with pytest.raises(ResourceInitError) as info:
        TimestampResource(name=name)
    assert info.value.rc == rc.INVALID_TIMESTAMP_FORMAT == -25
    assert fmt in str(info.value) and "%S" in str(info.value)
    table = LockTable()
    assert table.lock("c", req(name), T0) == [Answer("c", rc.INVALID_TIMESTAMP_FORMAT)]
    assert table.idle and not table.involves("c")


def test_slow_format_with_a_fraction_is_valid() -> None:
    table = LockTable()
    answer = table.lock("c", req(f"_t_{SLOW}#f[1]"), T0 + 0.5)[0]
    assert answer.rc == rc.OK and answer.element is not None
    assert answer.element.endswith("UTC\n\tAM.5")


def test_huge_field_width_is_refused() -> None:
    TimestampFormat.parse(f"%S%{MAX_WIDTH}s")
    with pytest.raises(ResourceInitError) as info:
        TimestampFormat.parse(f"%S%{MAX_WIDTH + 1}s")
    assert info.value.rc == rc.INVALID_TIMESTAMP_FORMAT
    table = LockTable()
    assert table.lock("c", req("_t_%99999S%s[1]"), T0) == [Answer("c", -25)]


def test_malformed_name_is_refused() -> None:
    with pytest.raises(ResourceInitError) as info:
        TimestampResource(name="_t_%S")
    assert info.value.rc == rc.INVALID_RESOURCE_NAME


def test_resource_attributes() -> None:
    resource = TimestampResource(name="_t_%S[007]")
    assert resource.slots == 7 and resource.fmt.text == "%S"
    assert TimestampResource.timed and resource.class_key(req("_t_%S[007]")) is None
    assert resource.next_deadline() is None and not resource.in_use


# -- grains and queueing ----------------------------------------------------------------
def test_two_requests_in_one_second() -> None:
    name = "_t_%s[2]"
    table = LockTable()
    assert rcs(table.lock("a", req(name), T0 + 0.1)) == [("a", rc.OK, str(T0))]
    assert table.next_deadline() is None  # nobody waits
    assert rcs(table.lock("b", req(name, wait=False), T0 + 0.5)) == [("b", rc.LOCK_BUSY, None)]
    assert not table.involves("b")
    assert rcs(table.lock("c", req(name), T0 + 0.6)) == [("c", rc.LOCK_ENQUEUED, None)]
    assert table.next_deadline() == T0 + 1
    assert table.tick(T0 + 0.999999) == []
    assert rcs(table.tick(T0 + 1)) == [("c", rc.OK, str(T0 + 1))]
    assert table.next_deadline() is None
    # Both slots are held; a new grain alone is not enough.
    assert rcs(table.lock("d", req(name), T0 + 5)) == [("d", rc.LOCK_ENQUEUED, None)]
    assert table.next_deadline() is None  # only a release can help
    assert rcs(table.unlock("a", name, False, T0 + 6)) == [("d", rc.OK, str(T0 + 6))]


@pytest.mark.parametrize(
    ("fmt", "start", "grain"),
    [
        ("%S#f", T0 + 0.2, 0.1),
        ("%S#fff", T0 + 0.2, 0.001),
        ("#ffffff", T0 + 0.2, 0.000001),
        ("%T", T0, 1),
        ("%M", MINUTE0, 60),
        ("%H", HOUR0, 3600),
    ],
)
def test_one_value_per_grain(fmt: str, start: float, grain: float) -> None:
    resource = TimestampResource(name=f"_t_{fmt}[3]")
    first = grant(resource, start + grain * 0.1, "a")
    late_in_grain = start + grain * 0.4  # instants are rounded to the microsecond
    assert resource.verdict(req(resource.name), late_in_grain) is Verdict.NOT_NOW
    verdict, _ = resource.acquire("b", req(resource.name), late_in_grain)
    assert verdict is Verdict.NOT_NOW
    deadline = resource.next_deadline()
    assert deadline is not None and abs(deadline - (start + grain)) < 1e-6
    assert resource.tick(late_in_grain) == []
    (granted,) = resource.tick(deadline)
    assert granted.conn == "b" and granted.element != first


def test_n_holders_at_most() -> None:
    name = "_t_%s#ffffff[3]"
    table = LockTable()
    got = [table.lock(c, req(name), T0 + c / 10)[0] for c in range(5)]
    assert [a.rc for a in got] == [rc.OK] * 3 + [rc.LOCK_ENQUEUED] * 2
    assert len({a.element for a in got[:3]}) == 3
    assert table.next_deadline() is None
    assert rcs(table.unlock(1, name, False, T0 + 1)) == [(3, rc.OK, f"{T0 + 1}.000000")]
    assert rcs(table.disconnect(0, T0 + 2)) == [(4, rc.OK, f"{T0 + 2}.000000")]
    assert len(table.resources[name].holders) == 3


def test_release_in_the_same_grain_leaves_the_waiter_to_the_deadline() -> None:
    name = "_t_%M[1]"
    table = LockTable()
    table.lock("a", req(name), MINUTE0 + 1)
    assert rcs(table.lock("b", req(name), MINUTE0 + 2)) == [("b", rc.LOCK_ENQUEUED, None)]
    assert table.unlock("a", name, False, MINUTE0 + 3) == []  # same minute: not yet
    assert table.next_deadline() == MINUTE0 + 60
    assert rcs(table.tick(MINUTE0 + 60)) == [("b", rc.OK, "42")]


def test_cancelled_waiter_clears_the_deadline() -> None:
    name = "_t_%s[1]"
    table = LockTable()
    table.lock("a", req(name), T0)
    table.unlock("a", name, False, T0 + 0.1)
    table.lock("b", req(name), T0 + 0.2)
    resource = table.resources[name]
    assert resource.next_deadline() == T0 + 1
    table.disconnect("b", T0 + 0.3)
    assert resource.next_deadline() is None


@pytest.mark.parametrize("policy", [GrantPolicy.FLOM, GrantPolicy.FIFO])
def test_zero_slots_is_busy_forever(policy: str) -> None:
    name = "_t_%s[0]"
    table = LockTable(policy)
    assert rcs(table.lock("a", req(name, wait=False), T0)) == [("a", rc.LOCK_BUSY, None)]
    assert rcs(table.lock("b", req(name), T0)) == [("b", rc.LOCK_ENQUEUED, None)]
    assert table.resources[name].next_deadline() is None
    assert table.tick(T0 + 86400) == []
    assert table.involves("b") and not table.resources[name].holders


def test_clock_set_back_never_repeats_a_value() -> None:
    resource = TimestampResource(name="_t_%s[1]")
    assert grant(resource, T0 + 10, "a") == str(T0 + 10)
    resource.release("a", False, T0 + 10)
    assert resource.verdict(req(resource.name), T0 + 5) is Verdict.NOT_NOW
    resource.acquire("b", req(resource.name), T0 + 5)
    assert resource.next_deadline() == T0 + 11


def test_resource_state_dies_with_the_locker() -> None:
    name = "_t_%M[1]"
    table = LockTable()
    table.lock("a", req(name), MINUTE0 + 1)
    table.unlock("a", name, False, MINUTE0 + 1)
    assert rcs(table.lock("b", req(name, wait=False), MINUTE0 + 2)) == [("b", rc.LOCK_BUSY, None)]
    table.tick(MINUTE0 + 4)  # unused for 2 s: the resource and its history are gone
    assert name not in table.resources
    assert rcs(table.lock("c", req(name), MINUTE0 + 5)) == [("c", rc.OK, "41")]


# -- time zones (Q19): grains follow the local wall clock ---------------------------------
def test_hour_grain_is_aligned_to_local_time() -> None:
    set_tz("IST-5:30")  # India, +05:30
    resource = TimestampResource(name="_t_%H[1]")
    local_1029 = HOUR0 + 3600 + 59 * 60  # 04:59 UTC = 10:29 IST
    assert grant(resource, local_1029, "a") == "10"
    resource.release("a", False, local_1029)
    # 05:01 UTC is a new hour since the epoch but still 10 h local: FLoM would hand out
    # "10" again.
    assert resource.verdict(req(resource.name), local_1029 + 120) is Verdict.NOT_NOW
    resource.acquire("b", req(resource.name), local_1029 + 120)
    assert resource.next_deadline() == local_1029 + 31 * 60  # 11:00 IST
    assert [g.element for g in resource.tick(local_1029 + 31 * 60)] == ["11"]


def test_end_of_daylight_saving_time_waits_instead_of_repeating() -> None:
    set_tz(CET)
    resource = TimestampResource(name="_t_%H:%M:%S[1]")
    assert grant(resource, FALL_BACK - 0.5, "a") == "02:59:59"
    resource.release("a", False, FALL_BACK)
    # Local time now reads 02:00:00 again: those values were handed out an hour ago.
    assert resource.verdict(req(resource.name), FALL_BACK + 0.5) is Verdict.NOT_NOW
    resource.acquire("b", req(resource.name), FALL_BACK + 0.5)
    assert resource.next_deadline() == FALL_BACK + 3600  # 03:00:00 CET
    assert [g.element for g in resource.tick(FALL_BACK + 3600)] == ["03:00:00"]


def test_epoch_formats_ignore_daylight_saving_time() -> None:
    set_tz(CET)
    resource = TimestampResource(name="_t_%s#f[1]")
    assert grant(resource, FALL_BACK - 0.05, "a") == f"{FALL_BACK - 1}.9"
    resource.release("a", False, FALL_BACK)
    assert grant(resource, FALL_BACK + 0.05, "b") == f"{FALL_BACK}.0"


def test_start_of_daylight_saving_time() -> None:
    set_tz(CET)
    resource = TimestampResource(name="_t_%H[1]")
    assert grant(resource, SPRING_FORWARD - 1800, "a") == "01"
    resource.acquire("b", req(resource.name), SPRING_FORWARD - 900)
    resource.release("a", False, SPRING_FORWARD - 900)
    assert resource.next_deadline() == SPRING_FORWARD  # local 02:00 never happens
    assert [g.element for g in resource.tick(SPRING_FORWARD)] == ["03"]


# -- properties ---------------------------------------------------------------------------
FORMATS = [
    "%s",
    "%s#f",
    "%s#fff",
    "%Y%m%d%H%M%S#ffffff",
    "%Y%m%d%H%M%S",
    "%H:%M:%S#ff",
    "%Y%m%d%H%M",
    "%c",
]


@settings(max_examples=200, deadline=None)
@given(
    fmt=st.sampled_from([*FORMATS, "%H", "%S#fff", "%M#f"]),
    tz=st.sampled_from(["UTC", "IST-5:30", CET, "NPT-5:45"]),
    start_us=st.integers(1_600_000_000 * US, 1_900_000_000 * US),
)
@example(fmt="%H", tz=CET, start_us=1_711_843_200 * US)  # 01:00 CET, 02:00 is skipped
def test_deadline_is_the_first_instant_of_the_next_grain(fmt: str, tz: str, start_us: int) -> None:
    set_tz(tz)
    resource = TimestampResource(name=f"_t_{fmt}[2]")
    grant(resource, start_us / US, "a")
    resource.acquire("b", req(resource.name), start_us / US)
    deadline = resource.next_deadline()
    assert deadline is not None and resource.last_grain is not None
    # The next grain that exists: the next one, or later when a DST change skips an
    # hour (local 02:00 on a spring-forward day never happens).
    assert resource.grain_of(deadline) > resource.last_grain
    # Earliest: one microsecond earlier is still the old grain (or a skipped hour).
    assert resource.grain_of(deadline - 1e-6) <= resource.last_grain
    assert [g.conn for g in resource.tick(deadline)] == ["b"]


OPS = st.lists(
    st.tuples(
        st.sampled_from(["lock", "unlock", "disconnect"]),
        st.integers(0, 5),  # connection
        st.booleans(),  # wait
        st.integers(1, 3 * US),  # time step, µs
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(FORMATS),
    slots=st.integers(0, 3),
    policy=st.sampled_from([GrantPolicy.FLOM, GrantPolicy.FIFO]),
    start_us=st.integers(1_600_000_000 * US, 1_900_000_000 * US),
    ops=OPS,
)
def test_values_are_unique_and_holders_bounded(
    fmt: str, slots: int, policy: str, start_us: int, ops: list[tuple[str, int, bool, int]]
) -> None:
    name = f"_t_{fmt}[{slots}]"
    table = LockTable(policy)
    now_us = start_us
    clock = start_us / US
    holding: set[Hashable] = set()
    issued: dict[int, set[str]] = {}
    resources: list[object] = []  # keep every resource alive so ids stay distinct

    def record(answers: list[Answer]) -> None:
        resource = table.resources.get(name)
        for answer in answers:
            assert answer.rc in (rc.OK, rc.LOCK_ENQUEUED, rc.LOCK_BUSY)
            if answer.rc != rc.OK:
                continue
            assert resource is not None and answer.element is not None
            if not any(r is resource for r in resources):
                resources.append(resource)
            seen = issued.setdefault(id(resource), set())
            assert answer.element not in seen
            seen.add(answer.element)
            holding.add(answer.conn)
        if resource is not None:
            assert isinstance(resource, TimestampResource)
            assert len(resource.holders) <= slots
            assert set(resource.holders) <= holding
            if resource.waiting and len(resource.holders) < slots:
                assert resource.next_deadline() is not None  # nobody is forgotten

    for op, conn, wait, step in ops:
        now_us += step
        now = now_us / US
        for _ in range(10):  # the daemon ticks at each deadline
            due = table.next_deadline()
            if due is None or due > now:
                break
            clock = max(clock, due)
            record(table.tick(clock))
            after = table.next_deadline()
            assert after is None or after > clock
        clock = now
        if op == "lock" and not table.involves(conn):
            record(table.lock(conn, req(name, wait), now))
        elif op == "unlock" and conn in holding:
            holding.discard(conn)
            record(table.unlock(conn, name, False, now))
        elif op == "disconnect":
            holding.discard(conn)
            record(table.disconnect(conn, now))
    if slots == 0:
        assert not issued
