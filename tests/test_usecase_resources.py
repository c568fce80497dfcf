"""FLoM's resource use cases (usecase-num, -set, -hier, -seq, -lt) in our words: real
`flom` processes, one daemon per test on its own socket (the TCP/multicast variants of
the upstream suite use the local socket here).  Holders wait on gate files, so the test
decides when a lock is released; only "is X still waiting?" needs a time margin."""

from __future__ import annotations

import itertools
import json
import socket
import time

import pytest

from both_backends import sandbox_on_both_backends  # noqa: F401  (the sandbox fixture)
from conftest import FlomSandbox, wait_for
from pyflom import codec, rc
from test_usecase import MARGIN, events, finish, holder, open_gate, started

NEVER = "Resource will never satisfy the request, the lock cannot be obtained\n"


def eholder(box: FlomSandbox, ident: str) -> list[str]:
    """Like ``holder`` but stores the appended argument (the locked element) in
    elem-<ident> before logging its start."""
    log = box.path("log")
    gate = box.path(f"gate-{ident}")
    elem = box.path(f"elem-{ident}")
    script = (
        f'echo "$1" > {elem}; '
        f'echo "{ident} start" >> {log}; '
        f"while [ ! -e {gate} ]; do sleep 0.01; done; "
        f'echo "{ident} end" >> {log}'
    )
    return ["sh", "-c", script, ident]


def element(box: FlomSandbox, ident: str) -> str:
    return box.path(f"elem-{ident}").read_text().strip()


def echo_element(rc: int = 0) -> list[str]:
    """A command that prints its appended argument and exits with ``rc``."""
    return ["sh", "-c", f'echo "$1"; exit {rc}', "zero"]


def still_waiting(box: FlomSandbox, *idents: str) -> bool:
    time.sleep(MARGIN)
    return not any(started(box, ident) for ident in idents)


def queued(box: FlomSandbox, name: str, count: int) -> bool:
    """Wait until the daemon has ``count`` waiters for ``name`` (not merely that none
    started: on a busy machine a later client may otherwise overtake a slow one)."""

    def waiters() -> int:
        shown = box.run("--status=json", "-r", name)
        if shown.returncode != 0:
            return -1
        return sum(len(res["waiters"]) for res in json.loads(shown.stdout)["resources"])

    return wait_for(lambda: waiters() == count, timeout=30, every=0.2)


# --- usecase-num: numeric resources -------------------------------------------------------


def test_uc10_third_holder_of_two_units_waits(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("-r", "foo[2]", "--", *holder(sandbox, "1"))
    p2 = sandbox.start("-r", "foo[2]", "--", *holder(sandbox, "2"))
    assert wait_for(lambda: started(sandbox, "1") and started(sandbox, "2"))
    p3 = sandbox.start("-r", "foo[2]", "--", *holder(sandbox, "3"))
    assert still_waiting(sandbox, "3")
    open_gate(sandbox, "1")
    assert wait_for(lambda: started(sandbox, "3"))
    open_gate(sandbox, "2")
    open_gate(sandbox, "3")
    assert [finish(p) for p in (p1, p2, p3)] == [0, 0, 0]
    log = events(sandbox)
    assert log.index("1 end") < log.index("3 start")
    assert log.index("3 start") < log.index("2 end")


def test_uc10_quantity_two_holds_every_unit(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("-r", "foo[2]", "-q", "2", "--", *holder(sandbox, "1"))
    assert wait_for(lambda: started(sandbox, "1"))
    assert sandbox.run("-r", "foo[2]", "-q", "2", "-o", "0", "--", "true").returncode == 98
    assert sandbox.run("-r", "foo[2]", "-o", "0", "--", "true").returncode == 98
    open_gate(sandbox, "1")
    assert finish(p1) == 0
    assert sandbox.run("-r", "foo[2]", "-q", "2", "-o", "2000", "--", "true").returncode == 0


def test_uc10_big_request_waits_for_both_small_holders(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("-r", "foo[2]", "--", *holder(sandbox, "1"))
    p2 = sandbox.start("-r", "foo[2]", "--", *holder(sandbox, "2"))
    assert wait_for(lambda: started(sandbox, "1") and started(sandbox, "2"))
    busy = sandbox.run("-r", "foo[2]", "-o", "0", "--", "true")
    assert busy.returncode == 98
    p4 = sandbox.start("-r", "foo[2]", "-q", "2", "--", *holder(sandbox, "4"))
    assert still_waiting(sandbox, "4")
    open_gate(sandbox, "1")
    assert finish(p1) == 0
    assert still_waiting(sandbox, "4")  # one unit free is not enough
    open_gate(sandbox, "2")
    assert wait_for(lambda: started(sandbox, "4"))
    open_gate(sandbox, "4")
    assert finish(p2) == 0 and finish(p4) == 0
    assert events(sandbox)[2:] == ["1 end", "2 end", "4 start", "4 end"]


@pytest.mark.parametrize(
    ("name", "quantity"), [("N[3]", "4"), ("N[0]", "1")], ids=["q-above-n", "zero-capacity"]
)
def test_numeric_request_that_can_never_be_satisfied(
    sandbox: FlomSandbox, name: str, quantity: str
) -> None:
    result = sandbox.run("-r", name, "-q", quantity, "--", "echo", "ran")
    assert result.returncode == 99
    assert result.stderr == NEVER
    assert "ran" not in result.stdout


# --- usecase-set: set resources -----------------------------------------------------------


def test_uc12_uc13_concurrent_holders_get_each_element(sandbox: FlomSandbox) -> None:
    procs = []
    for ident in "123":  # one after the other, so the grant order is known
        procs.append(sandbox.start("-r", "red.green.blue", "--", *eholder(sandbox, ident)))
        assert wait_for(lambda ident=ident: started(sandbox, ident))
    assert [element(sandbox, ident) for ident in "123"] == ["red", "green", "blue"]
    busy = sandbox.run("-r", "red.green.blue", "-o", "0", "--", "true")
    assert busy.returncode == 98
    for ident in "123":
        open_gate(sandbox, ident)
    assert [finish(p) for p in procs] == [0, 0, 0]
    # Use case 13 (1/2): after three grants the rotation is back at red.
    later = sandbox.run("-r", "red.green.blue", "--", *echo_element())
    assert (later.returncode, later.stdout) == (0, "red\n")


def test_uc13_sequential_calls_rotate_through_the_set(sandbox: FlomSandbox) -> None:
    got = [
        sandbox.run("-i", "5000", "-r", "red.green.blue", "--", *echo_element()).stdout
        for _ in range(4)
    ]
    assert got == ["red\n", "green\n", "blue\n", "red\n"]


def test_uc13_released_middle_element_is_handed_out_again(sandbox: FlomSandbox) -> None:
    procs = {}
    for ident in ("red", "green", "blue"):
        procs[ident] = sandbox.start("-r", "red.green.blue", "--", *eholder(sandbox, ident))
        assert wait_for(lambda ident=ident: started(sandbox, ident))
        assert element(sandbox, ident) == ident
    open_gate(sandbox, "green")
    assert finish(procs["green"]) == 0
    fourth = sandbox.run("-r", "red.green.blue", "--", *echo_element())
    assert (fourth.returncode, fourth.stdout) == (0, "green\n")
    open_gate(sandbox, "red")
    open_gate(sandbox, "blue")
    assert finish(procs["red"]) == 0 and finish(procs["blue"]) == 0


def test_set_waiter_gets_the_element_released_first(sandbox: FlomSandbox) -> None:
    procs = {}
    for ident in ("red", "green", "blue"):
        procs[ident] = sandbox.start("-r", "red.green.blue", "--", *eholder(sandbox, ident))
        assert wait_for(lambda ident=ident: started(sandbox, ident))
    waiter = sandbox.start("-r", "red.green.blue", "--", *eholder(sandbox, "w"))
    assert still_waiting(sandbox, "w")
    open_gate(sandbox, "blue")
    assert wait_for(lambda: started(sandbox, "w"))
    assert element(sandbox, "w") == "blue"
    for ident in ("red", "green", "w"):
        open_gate(sandbox, ident)
    assert [finish(p) for p in (*procs.values(), waiter)] == [0, 0, 0, 0]


def test_set_element_is_last_argument_and_in_the_environment(sandbox: FlomSandbox) -> None:
    script = 'echo "$0 $1 $2|$FLOM_LOCKED_ELEMENT|$FLOM_LOCK_RESOURCE"'
    lines = [
        sandbox.run("-i", "5000", "-r", "red.green.blue", "--", "sh", "-c", script, "zero", "one")
        for _ in range(3)
    ]
    assert [p.returncode for p in lines] == [0, 0, 0]
    assert [p.stdout for p in lines] == [
        f"zero one {color}|{color}|red.green.blue\n" for color in ("red", "green", "blue")
    ]


def test_verbose_prints_the_locked_element(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-V", "-r", "red.green.blue", "--", "true")
    assert result.returncode == 0
    assert "Locked element is 'red'" in result.stdout.splitlines()


# --- usecase-hier: hierarchical resources -------------------------------------------------


@pytest.mark.parametrize(
    ("held_mode", "held", "requests"),
    [
        (
            "EX",
            "/a/b",
            [
                ("EX", "/a/b", 98),
                ("EX", "/a", 98),
                ("EX", "/a/b/c", 98),
                ("EX", "/a/c", 0),
                ("EX", "/b", 0),
                ("EX", "/a/bb", 0),
            ],
        ),
        ("EX", "/a", [("EX", "/a/b", 98), ("NL", "/a/b", 0), ("EX", "/b/a", 0)]),
        ("PR", "/a/b", [("PR", "/a", 0), ("EX", "/a/b/c", 98), ("EX", "/a/c", 0)]),
    ],
    ids=["EX-a-b", "EX-a", "PR-a-b"],
)
def test_hierarchy_conflicts_with_ancestors_and_descendants_only(
    sandbox: FlomSandbox, held_mode: str, held: str, requests: list[tuple[str, str, int]]
) -> None:
    p = sandbox.start("-l", held_mode, "-r", held, "--", *holder(sandbox, "h"))
    assert wait_for(lambda: started(sandbox, "h"))
    got = [
        (mode, name, sandbox.run("-l", mode, "-r", name, "-o", "0", "--", "true").returncode)
        for mode, name, _ in requests
    ]
    assert got == requests
    open_gate(sandbox, "h")
    assert finish(p) == 0


def test_uc14_descendant_waits_for_the_ancestor_holder(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("-r", "/apple", "--", *holder(sandbox, "1"))
    assert wait_for(lambda: started(sandbox, "1"))
    p2 = sandbox.start("-r", "/apple/pear", "--", *holder(sandbox, "2"))
    p3 = sandbox.start("-r", "/apple/watermelon", "--", *holder(sandbox, "3"))
    assert still_waiting(sandbox, "2", "3")
    open_gate(sandbox, "1")
    # Both siblings are granted together once the ancestor is gone.
    assert wait_for(lambda: started(sandbox, "2") and started(sandbox, "3"))
    open_gate(sandbox, "2")
    open_gate(sandbox, "3")
    assert [finish(p) for p in (p1, p2, p3)] == [0, 0, 0]
    assert events(sandbox)[:2] == ["1 start", "1 end"]


@pytest.mark.parametrize("name", ["/", "/a//b", "/a/b/"])
def test_invalid_hierarchical_names(sandbox: FlomSandbox, name: str) -> None:
    result = sandbox.run("-r", name, "--", "echo", "ran")
    assert result.returncode == 99
    assert result.stdout == f"ERROR: '{name}' is not a valid name for a resource\n"


@pytest.mark.parametrize(
    ("name", "fix"), [("/a/./b", "/a/b"), ("/a/../a/b", "/a/b"), ("/a/..", None)]
)
def test_dot_levels_are_refused_with_the_reason(
    sandbox: FlomSandbox, name: str, fix: str | None
) -> None:
    # '/a/./b' and '/a/../a/b' are other nodes than '/a/b' to the lock table: accepted,
    # both could hold EX beside a holder of '/a/b'.
    p = sandbox.start("-r", "/a/b", "--", *holder(sandbox, "h"))
    assert wait_for(lambda: started(sandbox, "h"))
    result = sandbox.run("-r", name, "-o", "0", "--", "echo", "ran")
    assert (result.returncode, "ran" in result.stdout) == (99, False)
    assert f"'{name}' is not a valid name for a resource: '.' and '..' are not allowed" in (
        result.stdout
    )
    assert (f"(write '{fix}')" in result.stdout) == (fix is not None)
    open_gate(sandbox, "h")
    assert finish(p) == 0


def test_dot_levels_from_a_foreign_client_are_refused_by_the_daemon(
    sandbox: FlomSandbox,
) -> None:
    """A client that does not check names (FLoM C accepts '/a/./b') gets the reason
    code for an invalid name, not a second exclusive lock beside '/a/b'."""
    p = sandbox.start("-r", "/a/b", "--", *holder(sandbox, "h"))
    assert wait_for(lambda: started(sandbox, "h"))
    request = codec.LockRequest("", "/a/./b", wait=False, create=True, lifespan=0, mode=5)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(sandbox.socket)
        sock.sendall(codec.encode(request))
        data = b""
        while b"</msg>" not in data:
            chunk = sock.recv(4096)
            assert chunk, "the daemon closed the connection without answering"
            data += chunk
    answer = codec.decode(data[: data.index(b"</msg>") + 6])
    assert isinstance(answer, codec.LockAnswer)
    assert answer.rc == rc.INVALID_RESOURCE_NAME
    open_gate(sandbox, "h")
    assert finish(p) == 0


# --- usecase-seq: sequence resources ------------------------------------------------------


def test_uc18_transactional_sequence_reuses_rolled_back_values(sandbox: FlomSandbox) -> None:
    statuses = [0, 1, 0, 3, 4, 0, 0]
    runs = [
        sandbox.run("-i", "5000", "-r", "_S_seqb[1]", "--", *echo_element(rc)) for rc in statuses
    ]
    assert [p.returncode for p in runs] == statuses
    assert [int(p.stdout) for p in runs] == [1, 2, 2, 3, 3, 3, 4]


def test_uc18_plain_sequence_never_reuses_values(sandbox: FlomSandbox) -> None:
    statuses = [0, 1, 0, 3, 0]
    runs = [
        sandbox.run("-i", "5000", "-r", "_s_seqb[1]", "--", *echo_element(rc)) for rc in statuses
    ]
    assert [p.returncode for p in runs] == statuses
    assert [int(p.stdout) for p in runs] == [1, 2, 3, 4, 5]


def test_uc18_queued_requests_get_values_in_arrival_order(sandbox: FlomSandbox) -> None:
    procs = [sandbox.start("-r", "_s_a[1]", "--", *eholder(sandbox, "0"))]
    assert wait_for(lambda: started(sandbox, "0"))
    for count, ident in enumerate("123", 1):  # each is queued before the next arrives
        procs.append(sandbox.start("-r", "_s_a[1]", "--", *eholder(sandbox, ident)))
        assert queued(sandbox, "_s_a[1]", count)
        assert still_waiting(sandbox, ident)
    for ident in "0123":
        open_gate(sandbox, ident)
        # Wide: on a loaded machine an etcd election can pause a hand-off for seconds.
        assert wait_for(lambda ident=ident: f"{ident} end" in events(sandbox), timeout=40)
    assert [finish(p) for p in procs] == [0, 0, 0, 0]
    assert [element(sandbox, ident) for ident in "0123"] == ["1", "2", "3", "4"]
    assert events(sandbox) == [f"{i} {what}" for i in "0123" for what in ("start", "end")]


@pytest.mark.parametrize(("name", "after"), [("_S_x[1]", 2), ("_s_x[1]", 3)])
def test_killed_monitor_rolls_back_only_transactional_values(
    sandbox: FlomSandbox, name: str, after: int
) -> None:
    first = sandbox.run("-i", "5000", "-r", name, "--", *echo_element())
    assert first.stdout == "1\n"
    monitor = sandbox.start("-i", "5000", "-r", name, "--", *eholder(sandbox, "h"))
    assert wait_for(lambda: started(sandbox, "h"))
    assert element(sandbox, "h") == "2"
    monitor.kill()  # SIGKILL: the orphaned command keeps the lock's connection ...
    monitor.wait(timeout=10)
    open_gate(sandbox, "h")  # ... until it ends: the connection drops, no unlock was sent
    nxt = sandbox.run("-i", "5000", "-r", name, "--", *echo_element())
    assert (nxt.returncode, nxt.stdout) == (0, f"{after}\n")


@pytest.mark.memory_only(
    "etcd keeps a sequence's counter when the idle resource is dropped (docs/ha.md: "
    "values are never handed out twice)"
)
def test_sequence_restarts_when_the_idle_resource_is_dropped(sandbox: FlomSandbox) -> None:
    runs = [sandbox.run("-r", "_s_r[1]", "--", *echo_element()) for _ in range(2)]
    assert [p.stdout for p in runs] == ["1\n", "2\n"]
    daemon = sandbox.remember_daemon()
    # Deliberate sleep: without -i the idle locker lives 1000 + 1000 ms after its last
    # use; 3 s later it is gone (the daemon, with its 5 s lifespan, is still the same).
    time.sleep(3.0)
    again = sandbox.run("-r", "_s_r[1]", "--", *echo_element())
    assert again.stdout == "1\n"
    assert sandbox.remember_daemon() == daemon


# --- usecase-lt: -e no and -i -------------------------------------------------------------


def test_uc16_create_no_requester_runs_after_the_creator(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("--", *holder(sandbox, "1"))
    assert wait_for(lambda: started(sandbox, "1"))
    p2 = sandbox.start("-e", "n", "--", *holder(sandbox, "2"))
    assert still_waiting(sandbox, "2")
    open_gate(sandbox, "2")
    open_gate(sandbox, "1")
    assert finish(p1) == 0 and finish(p2) == 0
    assert events(sandbox) == ["1 start", "1 end", "2 start", "2 end"]


def test_uc16_incubated_requester_runs_after_the_late_creator(sandbox: FlomSandbox) -> None:
    waiter = sandbox.start("-e", "n", "-r", "ABC[1]", "--", *holder(sandbox, "w"))
    assert still_waiting(sandbox, "w")
    creator = sandbox.start("-r", "ABC[1]", "--", *holder(sandbox, "c"))
    assert wait_for(lambda: started(sandbox, "c"))
    assert still_waiting(sandbox, "w")
    open_gate(sandbox, "w")
    open_gate(sandbox, "c")
    assert finish(creator) == 0 and finish(waiter) == 0
    assert events(sandbox) == ["c start", "c end", "w start", "w end"]


def test_uc16_create_no_without_wait_on_absent_set(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-e", "n", "-o", "0", "-r", "B.C.D", "--", "true").returncode == 96


def test_uc16_create_no_timeout_on_absent_hierarchy(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-e", "n", "-o", "100", "-r", "/CDE", "--", "true").returncode == 98


FAMILIES = {
    "simple": {
        "waiters": [("CR", "RES"), ("CW", "RES"), ("PR", "RES")],
        "creator": ("PW", "RES"),
        "after": [("EX", "RES"), ("CR", "RES"), ("CW", "RES")],
    },
    "numeric": {
        "waiters": [("CR", "N[2]"), ("CW", "N[2]"), ("PR", "N[2]")],
        "creator": ("PW", "N[2]"),
        "after": [("EX", "N[2]"), ("CR", "N[2]"), ("CW", "N[2]")],
    },
    "set": {
        "waiters": [("CR", "B.C.D"), ("CW", "B.C.D"), ("PR", "B.C.D")],
        "creator": ("PW", "B.C.D"),
        "after": [("EX", "B.C.D"), ("CR", "B.C.D"), ("CW", "B.C.D")],
    },
    "hierarchical": {
        "waiters": [("CR", "/res"), ("CW", "/res/res"), ("PR", "/res/foo")],
        "creator": ("PW", "/res/bar"),
        "after": [("EX", "/res"), ("CR", "/res/res"), ("CW", "/res/foo")],
    },
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_uc16_waiters_of_every_type_follow_their_creator(sandbox: FlomSandbox, family: str) -> None:
    case = FAMILIES[family]
    waiters = [
        sandbox.start("-e", "n", "-l", mode, "-r", name, "--", *holder(sandbox, f"w{i}"))
        for i, (mode, name) in enumerate(case["waiters"])
    ]
    assert still_waiting(sandbox, "w0", "w1", "w2")  # nobody created the resource yet
    mode, name = case["creator"]
    creator = sandbox.start("-l", mode, "-i", "10000", "-r", name, "--", *holder(sandbox, "c"))
    assert wait_for(lambda: started(sandbox, "c"))
    for ident in ("c", "w0", "w1", "w2"):
        open_gate(sandbox, ident)
    assert [finish(p) for p in (creator, *waiters)] == [0, 0, 0, 0]
    # The creator's -i 10000 keeps the resource, so later `-e no` requests find it (a
    # shorter life let it expire on a busy machine before they came: they then waited
    # for a creator forever).
    for mode, name in case["after"]:
        result = sandbox.run("-e", "n", "-l", mode, "-r", name, "--", "true", timeout=20)
        assert result.returncode == 0, (mode, name, result.stderr)


def test_uc17_first_level_kept_by_idle_lifespan(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-r", "/foo", "-i", "2000", "--", "true").returncode == 0
    assert sandbox.run("-e", "n", "-r", "/bar", "-o", "100", "--", "true").returncode == 98
    assert sandbox.run("-e", "n", "-r", "/foo", "-o", "500", "--", "true").returncode == 0


def test_uc17_deeper_levels_share_the_created_first_level(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-r", "/bar", "-i", "2000", "--", "true").returncode == 0
    for name in ("/bar/foo", "/bar/foo/goofy"):
        result = sandbox.run("-e", "n", "-r", name, "--", "true", timeout=20)
        assert result.returncode == 0, (name, result.stderr)


# --- fencing token ------------------------------------------------------------------------


def generations(box: FlomSandbox, name: str) -> list[int]:
    return [int(line) for line in box.path(f"gens-{name}").read_text().split()]


def test_generation_strictly_increases_with_every_grant(sandbox: FlomSandbox) -> None:
    def lock(name: str) -> None:
        script = f"echo $FLOM_LOCK_GENERATION >> gens-{name}"
        assert sandbox.run("-r", name, "--", "sh", "-c", script).returncode == 0

    for _ in range(5):
        lock("R")
    gens = generations(sandbox, "R")
    assert len(gens) == 5
    assert all(a < b for a, b in itertools.pairwise(gens))
    for name in ("A", "B", "A", "B", "B", "A"):
        lock(name)
    for name in ("A", "B"):
        gens = generations(sandbox, name)
        assert len(gens) == 3
        assert all(a < b for a, b in itertools.pairwise(gens))


def test_nothing_runs_when_a_lock_is_refused(sandbox: FlomSandbox) -> None:
    """Busy, impossible and invalid requests never start the command."""
    p = sandbox.start("-r", "S", "--", *holder(sandbox, "h"))
    assert wait_for(lambda: started(sandbox, "h"))
    refused = [
        sandbox.run("-r", "S", "-o", "0", "--", "echo", "ran"),
        sandbox.run("-r", "Q[1]", "-q", "2", "--", "echo", "ran"),
        sandbox.run("-r", "/x/", "--", "echo", "ran"),
        sandbox.run("-e", "n", "-o", "0", "-r", "absent.set", "--", "echo", "ran"),
    ]
    assert [p.returncode for p in refused] == [98, 99, 99, 96]
    assert all("ran" not in r.stdout for r in refused)
    open_gate(sandbox, "h")
    assert finish(p) == 0
