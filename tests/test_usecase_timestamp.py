"""Timestamp resources through the command (usecase-tms.at.in, in our words)."""

from __future__ import annotations

import time

import pytest

from both_backends import sandbox_on_both_backends  # noqa: F401  (the sandbox fixture)
from conftest import FlomSandbox


def test_values_are_unique_and_appended(sandbox: FlomSandbox) -> None:
    out = sandbox.path("out")
    for _ in range(5):
        result = sandbox.run(
            "-i", "5000", "-r", "_t_%H:%M:%S#fff[1]", "--", "sh", "-c", f'echo "$1" >> {out}', "x"
        )
        assert result.returncode == 0
    values = out.read_text().split()
    assert len(values) == 5 and len(set(values)) == 5
    assert all(len(v) == len("12:34:56.789") and v[8] == "." for v in values)


@pytest.mark.memory_only(
    "needs two flom runs within one second: through etcd on a busy 2-core machine they "
    "often take longer (timestamp grants on etcd: tests/test_etcd_model.py)"
)
def test_same_second_without_wait_is_busy_then_queued_request_waits(sandbox: FlomSandbox) -> None:
    # Two _t_%s[2] locks can never get the same second: the second one without wait is
    # busy (98), with wait it is granted at the start of the next second.
    for _ in range(20):  # retry if the first two straddle a second boundary (busy machine)
        time.sleep(1 - time.time() % 1 + 0.01)  # start just after a second begins
        start = time.time()
        first = sandbox.run("-i", "5000", "-r", "_t_%s[2]", "--", "true")
        busy = sandbox.run("-i", "5000", "-r", "_t_%s[2]", "-o", "0", "--", "true")
        if int(time.time()) == int(start):
            break
    else:
        pytest.fail("never two runs of flom within one second in 20 tries")
    assert first.returncode == 0
    assert busy.returncode == 98
    queued = sandbox.run("-i", "5000", "-r", "_t_%s[2]", "--", "sh", "-c", 'echo "$1"', "x")
    assert queued.returncode == 0
    assert int(queued.stdout) > int(start)


def test_unusable_format_is_refused_with_a_reason(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-r", "_t_abc[1]", "--", "true", timeout=20)
    assert result.returncode == 99
    assert "ret_cod=-25" in result.stderr
    assert "%S" in result.stderr  # says what would work
