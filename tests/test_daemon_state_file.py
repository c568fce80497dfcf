"""Generations and sequences across daemon restarts, with real daemons: without
configuration (generations only) and with ``--state-file`` (sequences too, even after
a SIGKILL); the refusals of a state file that cannot be used."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FlomSandbox, daemon_pid, process_alive, wait_for
from pyflom.daemon.statefile import HEADER

SHOW = 'echo "$FLOM_LOCKED_ELEMENT|$FLOM_LOCK_GENERATION"'


def grant(box: FlomSandbox, name: str, *options: str, status: int = 0) -> tuple[str, int]:
    """Lock ``name`` with a command exiting ``status``; the element ("" for none) and
    the generation it was given."""
    script = f"{SHOW}; exit {status}"
    result = box.run("-d", "-1", *options, "-r", name, "--", "sh", "-c", script)
    assert result.returncode == status, result.stderr
    element, generation = result.stdout.rstrip("\n").split("|")
    return element, int(generation)


def stop_daemon(box: FlomSandbox, sig: signal.Signals) -> None:
    """Send ``sig`` to the daemon on the sandbox socket and wait until it is gone."""
    pid = box.remember_daemon()
    assert pid is not None
    os.kill(pid, sig)
    assert wait_for(lambda: not process_alive(pid))


def increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def state_file(box: FlomSandbox, *records: object, tail: str = "") -> str:
    path = box.path("state")
    lines = [HEADER, *records]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + tail)
    return str(path)


# -- without configuration --------------------------------------------------------------


def test_generation_increases_across_a_daemon_restart_without_configuration(
    sandbox: FlomSandbox,
) -> None:
    gens = [grant(sandbox, "R")[1] for _ in range(3)]
    stop_daemon(sandbox, signal.SIGTERM)
    gens += [grant(sandbox, "R")[1] for _ in range(2)]
    stop_daemon(sandbox, signal.SIGKILL)
    gens += [grant(sandbox, "R")[1]]
    assert len(sandbox.daemon_pids) == 3
    assert increasing(gens), gens


def test_without_state_file_a_sequence_restarts_with_the_daemon(sandbox: FlomSandbox) -> None:
    """FLoM's behaviour is kept when no state file is given."""
    assert [grant(sandbox, "_s_x[1]")[0] for _ in range(2)] == ["1", "2"]
    stop_daemon(sandbox, signal.SIGTERM)
    assert grant(sandbox, "_s_x[1]")[0] == "1"


# -- with a state file --------------------------------------------------------------------


def test_state_file_keeps_sequences_and_generations_across_sigkill(sandbox: FlomSandbox) -> None:
    opt = ("--state-file", str(sandbox.path("state")))
    first = [grant(sandbox, "_s_x[1]", *opt) for _ in range(3)]
    assert [element for element, _ in first] == ["1", "2", "3"]
    assert grant(sandbox, "_S_y[1]", *opt)[0] == "1"  # committed
    assert grant(sandbox, "_S_y[1]", *opt, status=1)[0] == "2"  # failed: rolled back
    assert grant(sandbox, "_S_y[1]", *opt, status=3)[0] == "2"  # again, failed again
    stop_daemon(sandbox, signal.SIGKILL)
    after = [grant(sandbox, "_s_x[1]", *opt), grant(sandbox, "_S_y[1]", *opt)]
    after.append(grant(sandbox, "_S_y[1]", *opt))
    assert [element for element, _ in after] == ["4", "2", "3"]
    assert len(sandbox.daemon_pids) == 2
    assert increasing([generation for _, generation in first + after])


def test_a_value_held_when_the_daemon_is_killed_is_never_handed_out_again(
    sandbox: FlomSandbox,
) -> None:
    opt = ("--state-file", str(sandbox.path("state")))
    script = (  # holds until told to go (at most ~60 s, should the test fail first)
        'echo "$FLOM_LOCKED_ELEMENT" > held; i=0; '
        "while [ ! -e release ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done"
    )
    holder = sandbox.start("-d", "-1", *opt, "-r", "_S_h[2]", "--", "sh", "-c", script)
    try:
        assert wait_for(lambda: sandbox.path("held").exists() and sandbox.path("held").read_text())
        assert sandbox.path("held").read_text() == "1\n"
        stop_daemon(sandbox, signal.SIGKILL)
        # The holder lost its lock with the daemon, but its command may still commit 1.
        assert grant(sandbox, "_S_h[2]", *opt)[0] == "2"
    finally:
        sandbox.path("release").touch()
        holder.communicate(timeout=30)
    assert grant(sandbox, "_S_h[2]", *opt)[0] == "3"


def test_generations_continue_above_a_stored_ceiling_ahead_of_the_clock(
    sandbox: FlomSandbox,
) -> None:
    ceiling = int(time.time() * 1e6) + 10**12  # the clock was set back by ~11 days
    path = state_file(sandbox, {"ceiling": ceiling})
    gens = [grant(sandbox, "R", "--state-file", path)[1] for _ in range(2)]
    stop_daemon(sandbox, signal.SIGKILL)
    gens.append(grant(sandbox, "R", "--state-file", path)[1])
    assert ceiling < gens[0] and increasing(gens), (ceiling, gens)


def test_a_torn_last_line_is_tolerated(sandbox: FlomSandbox) -> None:
    path = state_file(
        sandbox,
        {"sequences": {"_s_x[1]": {"counter": 5, "returned": []}}},
        tail='{"sequences":{"_s_x[1]":{"counter":6,"ret',
    )
    trace = sandbox.path("trace")
    assert grant(sandbox, "_s_x[1]", "--state-file", path, "-t", str(trace))[0] == "6"
    assert f"FLM043W state file '{path}': ignored its incomplete last line" in trace.read_text()


def test_a_second_daemon_on_the_same_state_file_refuses(sandbox: FlomSandbox) -> None:
    path = str(sandbox.path("state"))
    assert grant(sandbox, "_s_x[1]", "--state-file", path)[0] == "1"
    owner = sandbox.remember_daemon()
    other = str(sandbox.path("other-sock"))
    result = sandbox.run("-s", other, "--state-file", path, "-r", "_s_x[1]", "--", "echo", "ran")
    assert result.returncode == 99
    assert "ran" not in result.stdout
    assert result.stderr.splitlines()[-1] == (
        f"flom: the daemon did not start: state file '{path}' is in use by another daemon "
        f"(pid {owner}): two daemons must never share a state file (give each daemon its own)"
    )
    assert daemon_pid(other) is None and not os.path.exists(other)
    assert grant(sandbox, "_s_x[1]", "--state-file", path)[0] == "2"  # the owner goes on


def test_a_corrupt_state_file_refuses_with_a_clear_message(sandbox: FlomSandbox) -> None:
    path = state_file(sandbox, {"sequences": {"_s_x[1]": {"counter": 5, "returned": []}}})
    with open(path, "a") as file:
        file.write('{"sequences": {"_s_x[1]": {"counter": 2, "returned": []}}}\n')
    before = Path(path).read_text()
    trace = sandbox.path("trace")
    result = sandbox.run("--state-file", path, "-t", str(trace), "-r", "_s_x[1]", "--", "true")
    assert result.returncode == 99
    cause = (
        f"state file '{path}' is corrupt at line 3: the counter of '_s_x[1]' goes back "
        "from 5 to 2.  Restore it from a backup; removing it restarts every sequence at 1"
    )
    assert result.stderr.splitlines() == [
        "flom_client_connect: ret_cod=-2 (ERROR: flom command was not able to start a new "
        "daemon and/or connect to it)",
        f"flom: the daemon did not start: {cause}",
    ]
    assert f"FLM040E {cause}" in trace.read_text()  # the daemon's log says it too
    assert Path(path).read_text() == before  # left as it was
    assert sandbox.remember_daemon() is None and not os.path.exists(sandbox.socket)


def test_a_state_file_in_a_missing_directory_refuses(sandbox: FlomSandbox) -> None:
    path = sandbox.path("absent") / "state"
    result = sandbox.run("--state-file", str(path), "--", "true")
    assert result.returncode == 99
    assert result.stderr.splitlines()[-1] == (
        f"flom: the daemon did not start: state file '{path}': its directory "
        f"'{path.parent}' does not exist"
    )


def test_state_file_from_a_configuration_file(sandbox: FlomSandbox) -> None:
    """``[Daemon]/StateFile`` (relative: to the current directory) reaches the daemon."""
    config = sandbox.path("flom.conf")
    config.write_text("[Daemon]\nStateFile=kept.state\n")
    result = sandbox.run("-c", str(config), "-V", "-d", "-1", "-r", "_s_x[1]", "--", "true")
    assert result.returncode == 0, result.stderr
    kept = sandbox.path("kept.state")
    assert f"[Daemon]/StateFile='{kept}'\n" in result.stdout
    stop_daemon(sandbox, signal.SIGKILL)
    assert grant(sandbox, "_s_x[1]", "-c", str(config))[0] == "2"
    assert json.loads(kept.read_text().splitlines()[0]) == HEADER


def test_a_state_file_that_cannot_be_written_stops_the_daemon_before_it_answers(
    sandbox: FlomSandbox,
) -> None:
    """The first daemon's files may not grow past 1 KiB (``ulimit -f 2``, inherited
    from the command that starts it): the state file reaches that limit in the middle
    of a record, so that daemon answers nothing more and exits; the next one ignores
    the torn line and goes on, never handing out a number twice."""
    padding = {f"_s_pad{i}[1]": {"counter": i, "returned": []} for i in range(1, 13)}
    path = state_file(sandbox, {"sequences": padding})  # ~700 bytes: a few grants fit
    trace = sandbox.path("trace")
    options = ["-d", "-1", "-t", str(trace), "--append-trace-file=yes"]
    options += ["--state-file", path, "-r", "_s_x[1]", "--", "sh", "-c", SHOW]
    limited = ["sh", "-c", 'ulimit -f 2; exec "$0" "$@"']
    handed: list[tuple[int, int]] = []
    log = ""
    for attempt in range(60):
        result = subprocess.run(
            [*(limited if attempt == 0 else []), *sandbox.args(*options)],
            capture_output=True,
            text=True,
            timeout=60,
            # Lifecycle lines only: lock events would fill the limited trace file first.
            env={**sandbox.env, "PYFLOM_LOG_LEVEL": "notice"},
            cwd=sandbox.root,
        )
        sandbox.remember_daemon()
        if result.returncode == 0:
            element, generation = result.stdout.rstrip("\n").split("|")
            handed.append((int(element), int(generation)))
        else:  # the daemon went away before answering: the command must not have run
            assert result.returncode == 99 and not result.stdout, result
        log = trace.read_text()
        if "FLM043W" in log and handed[-1][0] >= handed[0][0] + 20:
            break
    assert "FLM041E cannot write state file" in log and "FLM043W" in log, log
    assert log.index("FLM041E") < log.index("FLM043W")
    assert len(sandbox.daemon_pids) == 2
    assert increasing([element for element, _ in handed]), handed
    assert increasing([generation for _, generation in handed]), handed


# -- files another user could have planted; an empty file ----------------------------------

VICTIM = "the daemon user's precious file\n"


def refused_start(box: FlomSandbox, path: Path, cause: str) -> None:
    """A command asking for a daemon with the state file ``path`` gets none, runs
    nothing, and says ``cause`` (exit 99), as the daemon's log does (FLM040E)."""
    trace = box.path("trace")
    result = box.run(
        "-t", str(trace), "--state-file", str(path), "-r", "_s_q[1]", "--", "echo", "ran"
    )
    assert (result.returncode, result.stdout) == (99, ""), result
    assert result.stderr.splitlines()[-1] == f"flom: the daemon did not start: {cause}"
    assert f"FLM040E {cause}" in trace.read_text()
    assert box.remember_daemon() is None and not os.path.exists(box.socket)


def state_dir(box: FlomSandbox, mode: int = 0o700) -> Path:
    directory = box.path("dir")
    directory.mkdir()
    directory.chmod(mode)
    return directory


@pytest.mark.parametrize(
    ("name", "what"), [("state.lock", ": its lock file '{link}'"), ("state", "")]
)
def test_a_link_planted_beside_or_as_the_state_file_is_not_followed(
    sandbox: FlomSandbox, name: str, what: str
) -> None:
    directory = state_dir(sandbox)
    path, link, victim = directory / "state", directory / name, sandbox.path("victim")
    victim.write_text(VICTIM)
    link.symlink_to(victim)
    refused_start(
        sandbox,
        path,
        f"state file '{path}'{what.format(link=link)} is a symbolic link: refusing to follow "
        "it (another user may have pointed it at a file that would be overwritten); remove "
        "it, or give the real path",
    )
    assert victim.read_text() == VICTIM
    link.unlink()
    assert grant(sandbox, "_s_q[1]", "--state-file", str(path))[0] == "1"
    assert victim.read_text() == VICTIM


def test_a_link_planted_at_the_old_temp_name_is_harmless(sandbox: FlomSandbox) -> None:
    """Rewrites go through a new file of a random name: a link at ``FILE.tmp`` is
    never written through, and the daemon removes it."""
    directory = state_dir(sandbox)
    victim = sandbox.path("victim")
    victim.write_text(VICTIM)
    (directory / "state.tmp").symlink_to(victim)
    assert grant(sandbox, "_s_q[1]", "--state-file", str(directory / "state"))[0] == "1"
    assert victim.read_text() == VICTIM
    assert sorted(p.name for p in directory.iterdir()) == ["state", "state.lock"]


def test_a_directory_others_can_write_in_refuses_unless_sticky(sandbox: FlomSandbox) -> None:
    directory = state_dir(sandbox, 0o777)
    path = directory / "state"
    refused_start(
        sandbox,
        path,
        f"state file '{path}': its directory '{directory}' is writable by other users "
        f"(mode 777), who could replace the state file or plant links in it: make it "
        f"writable by its owner only (chmod go-w '{directory}') or use another directory",
    )
    assert list(directory.iterdir()) == []
    directory.chmod(0o1777)  # like /tmp: others cannot rename or remove our files
    assert grant(sandbox, "_s_q[1]", "--state-file", str(path))[0] == "1"
    stop_daemon(sandbox, signal.SIGKILL)
    assert grant(sandbox, "_s_q[1]", "--state-file", str(path))[0] == "2"


def test_an_existing_empty_state_file_refuses_until_removed(sandbox: FlomSandbox) -> None:
    """Sequences must not silently start again at 1 from a file emptied by accident."""
    path = sandbox.path("state")
    path.write_bytes(b"")
    refused_start(
        sandbox,
        path,
        f"state file '{path}' is empty: pyflom never leaves a state file empty, so the "
        "numbers it should hold may have been lost, and sequences would start again at 1, "
        "handing out numbers already given.  Restore it from a backup, or remove it to "
        "start every sequence afresh at 1",
    )
    assert path.read_bytes() == b""
    path.unlink()  # the documented way to start afresh
    assert grant(sandbox, "_s_q[1]", "--state-file", str(path))[0] == "1"


def test_the_daemon_keeps_the_mode_of_the_state_file_it_rewrites(sandbox: FlomSandbox) -> None:
    path = state_file(sandbox, {"sequences": {"_s_q[1]": {"counter": 4, "returned": []}}})
    os.chmod(path, 0o600)
    before = os.stat(path)
    assert grant(sandbox, "_s_q[1]", "--state-file", path)[0] == "5"
    after = os.stat(path)
    assert after.st_ino != before.st_ino or after.st_size != before.st_size  # rewritten
    assert (after.st_mode, after.st_uid, after.st_gid) == (
        before.st_mode,
        before.st_uid,
        before.st_gid,
    )
