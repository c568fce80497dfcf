"""FLoM's use cases 1-6 (usecase.at.in) in our words: real `flom` processes, one daemon
per test on its own socket.  Holders wait on gate files, so the test decides when a
lock is released; only "is X still waiting?" needs a time margin (a wide one)."""

from __future__ import annotations

import subprocess
import time

import pytest

from both_backends import sandbox_on_both_backends  # noqa: F401  (the sandbox fixture)
from conftest import FlomSandbox, wait_for
from pyflom.lockmodes import COMPATIBLE, LockMode

MARGIN = 0.8  # seconds a waiter is given to (wrongly) start


def holder(box: FlomSandbox, ident: str) -> list[str]:
    """A command that logs its start, waits for gate-<ident>, logs its end."""
    log = box.path("log")
    gate = box.path(f"gate-{ident}")
    script = (
        f'echo "{ident} start" >> {log}; '
        f"while [ ! -e {gate} ]; do sleep 0.01; done; "
        f'echo "{ident} end" >> {log}'
    )
    return ["sh", "-c", script]


def open_gate(box: FlomSandbox, ident: str) -> None:
    box.path(f"gate-{ident}").touch()


def events(box: FlomSandbox) -> list[str]:
    log = box.path("log")
    return log.read_text().splitlines() if log.exists() else []


def started(box: FlomSandbox, ident: str) -> bool:
    return f"{ident} start" in events(box)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> int:
    proc.wait(timeout=timeout)
    return proc.returncode


def test_uc1_second_locker_waits_for_the_first(sandbox: FlomSandbox) -> None:
    p2 = sandbox.start("--", *holder(sandbox, "2"))
    assert wait_for(lambda: started(sandbox, "2"))
    p1 = sandbox.start("--", *holder(sandbox, "1"))
    time.sleep(MARGIN)
    assert not started(sandbox, "1")
    open_gate(sandbox, "1")  # P1 may end as soon as it runs
    open_gate(sandbox, "2")
    assert finish(p2) == 0 and finish(p1) == 0
    assert events(sandbox) == ["2 start", "2 end", "1 start", "1 end"]


def test_uc2_distinct_resources_do_not_contend(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("-r", "R1", "--", *holder(sandbox, "1"))
    p3 = sandbox.start("-r", "R2", "--", *holder(sandbox, "3"))
    assert wait_for(lambda: started(sandbox, "1") and started(sandbox, "3"))
    p2 = sandbox.start("-r", "R1", "--", *holder(sandbox, "2"))
    time.sleep(MARGIN)
    assert not started(sandbox, "2")
    for ident in "123":
        open_gate(sandbox, ident)
    assert [finish(p) for p in (p1, p2, p3)] == [0, 0, 0]
    log = events(sandbox)
    assert log.index("1 end") < log.index("2 start")


def test_uc3_no_wait_is_busy_and_later_clients_still_queue(sandbox: FlomSandbox) -> None:
    p2 = sandbox.start("--", *holder(sandbox, "2"))
    assert wait_for(lambda: started(sandbox, "2"))
    busy = sandbox.run("-o", "0", "--", "true")
    assert busy.returncode == 98
    assert busy.stderr == "Resource already locked, the lock cannot be obtained\n"
    p3 = sandbox.start("--", *holder(sandbox, "3"))
    time.sleep(MARGIN)
    assert not started(sandbox, "3")
    open_gate(sandbox, "3")
    open_gate(sandbox, "2")
    assert finish(p2) == 0 and finish(p3) == 0
    assert events(sandbox) == ["2 start", "2 end", "3 start", "3 end"]


def test_uc4_timeout_expires_with_flom_message(sandbox: FlomSandbox) -> None:
    p2 = sandbox.start("--", *holder(sandbox, "2"))
    assert wait_for(lambda: started(sandbox, "2"))
    start = time.monotonic()
    late = sandbox.run("-o", "1000", "--", "true")
    elapsed = time.monotonic() - start
    assert late.returncode == 98
    assert late.stderr == "The lock was not obtained because timeout (1000 milliseconds) expired\n"
    assert elapsed >= 1.0
    open_gate(sandbox, "2")
    assert finish(p2) == 0
    # The timed-out request was withdrawn: the resource is free again.
    assert sandbox.run("-o", "0", "--", "true").returncode == 0


def test_uc4_timeout_on_free_resource(sandbox: FlomSandbox) -> None:
    assert sandbox.run("-o", "1000", "--", "true").returncode == 0


def test_uc5_compatible_newcomer_overtakes_a_queued_writer(sandbox: FlomSandbox) -> None:
    p1 = sandbox.start("-l", "PR", "--", *holder(sandbox, "1"))
    assert wait_for(lambda: started(sandbox, "1"))
    p2 = sandbox.start("-l", "PW", "--", *holder(sandbox, "2"))
    time.sleep(MARGIN)
    p3 = sandbox.start("-l", "PR", "--", *holder(sandbox, "3"))
    assert wait_for(lambda: started(sandbox, "3"))  # granted although PW is queued
    assert not started(sandbox, "2")
    for ident in "312":
        open_gate(sandbox, ident)
    assert [finish(p) for p in (p1, p2, p3)] == [0, 0, 0]
    log = events(sandbox)
    assert log.index("3 start") < log.index("2 start")


def test_uc5_strict_fifo_policy_makes_the_reader_wait(sandbox: FlomSandbox) -> None:
    fifo = ("--grant-policy", "fifo")
    p1 = sandbox.start(*fifo, "-l", "PR", "--", *holder(sandbox, "1"))
    assert wait_for(lambda: started(sandbox, "1"))
    p2 = sandbox.start(*fifo, "-l", "PW", "--", *holder(sandbox, "2"))
    time.sleep(MARGIN)
    p3 = sandbox.start(*fifo, "-l", "PR", "--", *holder(sandbox, "3"))
    time.sleep(MARGIN)
    assert not started(sandbox, "3") and not started(sandbox, "2")
    for ident in "123":
        open_gate(sandbox, ident)
    assert [finish(p) for p in (p1, p2, p3)] == [0, 0, 0]
    log = events(sandbox)
    assert log.index("2 end") < log.index("3 start")


@pytest.mark.parametrize("held", list(LockMode), ids=lambda m: m.name)
def test_uc5_lock_mode_matrix_through_the_command(sandbox: FlomSandbox, held: LockMode) -> None:
    p = sandbox.start("-l", held.name, "--", *holder(sandbox, "h"))
    assert wait_for(lambda: started(sandbox, "h"))
    for requested in LockMode:
        got = sandbox.run("-l", requested.name, "-o", "0", "--", "true").returncode
        assert got == (0 if COMPATIBLE[held][requested] else 98), (held, requested)
    open_gate(sandbox, "h")
    assert finish(p) == 0


def test_uc6_separate_sockets_are_separate_daemons(sandbox: FlomSandbox) -> None:
    """Two memory daemons are two lock spaces; two gateways on one etcd are one."""
    p1 = sandbox.start("--", *holder(sandbox, "1"))
    assert wait_for(lambda: started(sandbox, "1"))
    other = str(sandbox.path("other"))
    proc = subprocess.run(
        [*sandbox.args(socket_name=False), "-s", other, "-o", "0", "--", "true"],
        capture_output=True,
        env=sandbox.env,
    )
    assert proc.returncode == (98 if sandbox.backend == "etcd" else 0)
    from conftest import daemon_pid

    other_pid = daemon_pid(other)
    assert other_pid is not None and other_pid != sandbox.remember_daemon()
    sandbox.daemon_pids.add(other_pid)
    open_gate(sandbox, "1")
    assert finish(p1) == 0


def test_create_no_without_wait_cannot_wait(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-e", "no", "-o", "0", "--", "true")
    assert result.returncode == 96
    assert result.stderr == (
        "The resource could be available in the future, but the requester can't wait\n"
    )


def test_create_no_waits_for_a_creator(sandbox: FlomSandbox) -> None:
    waiter = sandbox.start("-e", "no", "--", *holder(sandbox, "w"))
    time.sleep(MARGIN)
    assert not started(sandbox, "w")  # nobody created the resource yet
    open_gate(sandbox, "c")
    open_gate(sandbox, "w")
    creator = sandbox.run("--", *holder(sandbox, "c"))
    assert creator.returncode == 0
    assert finish(waiter) == 0
    assert events(sandbox) == ["c start", "c end", "w start", "w end"]


def test_create_no_with_timeout_gives_up(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-e", "no", "-o", "300", "--", "true")
    assert result.returncode == 98
    assert "timeout (300 milliseconds) expired" in result.stderr


def test_invalid_resource_name(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-r", "1abc", "--", "true")
    assert result.returncode == 99
    assert result.stdout == "ERROR: '1abc' is not a valid name for a resource\n"


def test_unique_id_is_the_machine_id(sandbox: FlomSandbox) -> None:
    from pyflom.uniqueid import read_unique_id

    result = sandbox.run("--unique-id", socket_name=False)
    assert result.returncode == 0
    assert result.stdout == read_unique_id() + "\n"
