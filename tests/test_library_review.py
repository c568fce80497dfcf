"""Found trying the library as a demanding user would (issue 17 review): each test
fails without its fix.  Real daemons, real sockets."""

from __future__ import annotations

import os

import pytest

import pyflom
from conftest import FlomSandbox


@pytest.fixture
def daemon(sandbox: FlomSandbox) -> FlomSandbox:
    assert sandbox.run("-d", "-1", "--", "true").returncode == 0
    sandbox.remember_daemon()
    return sandbox


def busy(box: FlomSandbox, name: str) -> bool:
    """Does another process find ``name`` locked (``flom -o 0``: 98 when busy)?"""
    status = box.run("-r", name, "-o", "0", "--", "true").returncode
    assert status in (0, 98)
    return status == 98


def in_child(work: object) -> int:
    """Run ``work()`` in a forked child; its exit status (0: no exception)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 0
        try:
            work()  # type: ignore[operator]
        except pyflom.InvalidSequence:
            status = 3
        except BaseException:
            status = 1
        os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_leaving_the_with_block_does_not_release_the_parents_lock(
    daemon: FlomSandbox,
) -> None:
    lk = pyflom.lock("Forked", socket_name=daemon.socket)
    with lk as handle:
        # The child leaves the block too (it forked inside it): it does not hold the
        # lock (its parent does), so it may not release it, and says so.
        assert in_child(lambda: lk.__exit__(None, None, None)) == 3
        assert busy(daemon, "Forked")
        assert handle.held
        # Nor does a handle's unlock() or close() in a child.
        assert in_child(handle.unlock) == 3
        assert in_child(handle.close) == 0
        assert busy(daemon, "Forked")
        assert handle.held
    assert not busy(daemon, "Forked")


@pytest.mark.parametrize("name", [123, b"printer", None.__class__])
def test_a_resource_name_that_is_not_a_str_is_a_type_error(name: object) -> None:
    with pytest.raises(TypeError, match="a resource name must be a str"):
        pyflom.lock(name)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a resource name must be a str"):
        pyflom.Handle(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["printer", "/orders/1", "red.green"])
def test_a_quantity_for_a_resource_without_units_is_refused(name: str) -> None:
    # Before: silently ignored, as the mode of a set resource was (issue 17 item 1).
    kind = "set" if "." in name else None
    with pytest.raises(ValueError, match=r"quantity=2 .*semaphore"):
        pyflom.lock(name, quantity=2, kind=kind)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"quantity=2 .*semaphore"):
        pyflom.Handle(name, quantity=2, kind=kind)  # type: ignore[arg-type]
    pyflom.lock(name, quantity=1, kind=kind)  # type: ignore[arg-type]
    pyflom.semaphore("pool", 3, quantity=2)
