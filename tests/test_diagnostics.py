"""Diagnostics of the command line and the configuration files (issue 11, item 6).

FLoM's texts and exit statuses stay as they are (scripts grep them); pyflom adds
``flom: ...`` lines: configuration typos (file, line, suggestion), refused values (file,
line, key, value), a ``-c`` file that cannot be read, the valid lock modes, and the
daemon-only options a daemon that already runs did not get.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FlomSandbox
from pyflom.cmdline import (
    DaemonOption,
    daemon_only_options,
    load_settings,
    parse_args,
)
from pyflom.configfile import KeyFileError, read_key_file
from pyflom.lockmodes import lock_mode_choices
from pyflom.settings import Settings
from pyflom.spawn import ignored_daemon_options

MODES = lock_mode_choices()
IS_ROOT = os.geteuid() == 0

# Every key pyflom reads (reference 2.2 and pyflom's extensions), with valid values;
# {dir} and {pem} are filled in by the test.
EVERY_KEY = """\
# a comment
[Trace]
DaemonTraceFile=/tmp/daemon.trace
CommandTraceFile=
AppendTraceFile=no
Verbose=no
[Resource]
Name=red
Name[fr]=a localised key, unused as in FLoM
Timeout=-1
Quantity=1
LockMode=EX
Create=yes
IdleLifespan=10
[Daemon]
SocketName=/tmp/flom-diagnostics
Lifespan=5000
UnicastPort=28015
MulticastPort=28015
MountPointVFS={dir}
GrantPolicy=flom
StateFile=
[Monitor]
IgnoredSignals=SIGTERM;3
LockLoss=terminate
LockLossGrace=5000
[Network]
NetworkInterface=lo
DiscoveryAttempts=2
DiscoveryTimeout=500
DiscoveryTTL=1
TcpKeepaliveTime=60
TcpKeepaliveIntvl=10
TcpKeepaliveProbes=6
[TLS]
TlsCertificate={pem}
TlsPrivateKey={pem}
TlsCaCertificate={pem}
TlsCheckPeerId=no
TlsTraceFile=
TlsKeylogFile=
"""


def user_config(sandbox: FlomSandbox, text: str) -> Path:
    """Write ``~/.flom`` of the sandbox (its HOME)."""
    path = sandbox.path(".flom")
    path.write_text(text)
    return path


def lines(text: str) -> list[str]:
    return text.splitlines()


def run_with_user_config(sandbox: FlomSandbox, text: str) -> tuple[Path, list[str]]:
    """Write ``~/.flom``, run a command that must still run; its file and stderr lines."""
    path = user_config(sandbox, text)
    result = sandbox.run("--", "echo", "ran")
    assert (result.returncode, result.stdout) == (0, "ran\n")
    return path, lines(result.stderr)


# ----------------------------------------------------------------- configuration typos


def test_every_known_key_gives_no_warning(tmp_path: Path) -> None:
    pem = tmp_path / "any.pem"
    pem.write_text("")
    path = tmp_path / "flom.conf"
    path.write_text(EVERY_KEY.format(dir=tmp_path, pem=pem))
    home = tmp_path / "home"
    home.mkdir()
    settings, warnings = load_settings(
        parse_args(["-c", str(path)]), system_files=(), home=str(home)
    )
    assert warnings == []
    assert settings.resource_name == "red" and settings.resource_idle_lifespan == 10


def test_a_valid_user_config_runs_silently(sandbox: FlomSandbox) -> None:
    user_config(sandbox, "[Resource]\nName=red\nLockMode=PR\n[Daemon]\nLifespan=3000\n")
    result = sandbox.run("--", "echo", "ran")
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")


def test_unknown_group_warns_and_the_command_still_runs(sandbox: FlomSandbox) -> None:
    text = "# mine\n[Resource]\nName=red\n\n[Deamon]\nLifespan=3000\n"
    path, stderr = run_with_user_config(sandbox, text)
    assert stderr == [
        f"flom: {path}:5: unknown group [Deamon] (did you mean [Daemon]?); its keys are ignored"
    ]


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("Nmae=red", " (did you mean Name?)"),
        ("name=red", " (did you mean Name?)"),  # keys are case-sensitive
        ("lockmode=PR", " (did you mean LockMode?)"),
        ("Lifespan=3000", " (it belongs in [Daemon])"),
        ("Colour=blue", ""),
    ],
)
def test_unknown_key_warns_with_file_line_and_suggestion(
    sandbox: FlomSandbox, line: str, hint: str
) -> None:
    path, stderr = run_with_user_config(sandbox, f"[Trace]\nVerbose=no\n[Resource]\n{line}\n")
    key = line.partition("=")[0]
    assert stderr == [f"flom: {path}:4: unknown key {key} in [Resource]{hint}; it is ignored"]


def test_unknown_group_without_a_close_name(tmp_path: Path) -> None:
    path = tmp_path / "flom.conf"
    path.write_text("[Colours]\nRed=1\n")
    _, warnings = load_settings(parse_args(["-c", str(path)]), system_files=(), home=str(tmp_path))
    assert warnings == [f"flom: {path}:1: unknown group [Colours]; its keys are ignored"]


def test_typos_in_system_user_and_c_files_are_all_reported(tmp_path: Path) -> None:
    system = tmp_path / "system.conf"
    system.write_text("[Trcae]\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".flom").write_text("[Resource]\nTimeot=1\n")
    extra = tmp_path / "extra.conf"
    extra.write_text("[Network]\nDiscoveryTTl=2\n")
    _, warnings = load_settings(
        parse_args(["-c", str(extra), "-q", "-1"]), system_files=(str(system),), home=str(home)
    )
    assert warnings == [
        f"flom: {system}:1: unknown group [Trcae] (did you mean [Trace]?); its keys are ignored",
        f"flom: {home}/.flom:2: unknown key Timeot in [Resource] (did you mean Timeout?); "
        "it is ignored",
        f"flom: {extra}:2: unknown key DiscoveryTTl in [Network] (did you mean DiscoveryTTL?); "
        "it is ignored",
        "Resource quantity ignored because negative values (-1) are meaningless",
    ]


def test_typo_warning_is_printed_before_a_later_error(sandbox: FlomSandbox) -> None:
    path = user_config(sandbox, "[Deamon]\n")
    result = sandbox.run("-l", "WRITE", "--", "true")
    assert result.returncode == 99
    assert lines(result.stderr)[:2] == [
        f"flom: {path}:1: unknown group [Deamon] (did you mean [Daemon]?); its keys are ignored",
        "lock-mode: 'WRITE' is an invalid value",
    ]


def test_a_user_file_that_is_not_a_key_file_is_named_and_skipped(sandbox: FlomSandbox) -> None:
    path, stderr = run_with_user_config(sandbox, "[Resource]\nName red\n")
    assert stderr == [
        f"flom: configuration file '{path}', line 2: 'Name red' is neither Key=Value, a "
        "[Group] header nor a # comment; the file is ignored"
    ]


def test_the_typo_path_stays_off_a_normal_run(sandbox: FlomSandbox) -> None:
    # (daemon-only options in it would load pyflom.spawn to compare them with the daemon's)
    user_config(sandbox, "[Resource]\nName=red\n[Network]\nDiscoveryTTL=1\n")
    assert sandbox.run("--", "true").returncode == 0  # a daemon runs now
    code = (
        "import sys, pyflom.cli; "
        f"status = pyflom.cli.main(['-s', {sandbox.socket!r}, '--', 'true']); "
        "print(status, *(m in sys.modules for m in ('difflib', 'pyflom.spawn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=sandbox.env, check=True
    )
    assert (out.stdout.split(), out.stderr) == (["0", "False", "False"], "")


# ------------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    ("content", "flom_stdout", "rc", "ours"),
    [
        ("[Resource]\nLockMode=WRITE\n", [], -5,
         f"[Resource] LockMode='WRITE' is not a lock mode; the valid ones are {MODES}"),
        ("[Resource]\nTimeout=soon\n",
         ["Key file contains key \u201cTimeout\u201d in group \u201cResource\u201d which has a "
          "value that cannot be interpreted."], -5,
         "[Resource] Timeout='soon' is not a whole number from -2147483648 to 2147483647"),
        ("[Resource]\nCreate=perhaps\n", [], -5,
         "[Resource] Create='perhaps' is not a boolean: yes, y, true, on, 1 or no, n, false, "
         "off, 0 (any case)"),
        ("[Resource]\nName=1abc\n", ["ERROR: '1abc' is not a valid name for a resource"], -5,
         "[Resource] Name='1abc' is not a valid resource name"),
        ("[Daemon]\nGrantPolicy=lifo\n", [], -5,
         "[Daemon] GrantPolicy='lifo' is not flom or fifo"),
        ("[Daemon]\nMountPointVFS=/nonexistent/dir\n", [], -5,
         "[Daemon] MountPointVFS='/nonexistent/dir' is not a directory that can be opened"),
        ("[Daemon]\nSocketName=/tmp/" + "y" * 103 + "\n", [], -5,
         "[Daemon] SocketName='/tmp/" + "y" * 103 + "' is too long: a socket name must be "
         "shorter than 108 bytes"),
        ("[Daemon]\nSocketName=bad\\escape\n", [], -5,
         "[Daemon] SocketName='bad\\escape' has a bad escape sequence (GKeyFile knows \\s \\n "
         "\\t \\r \\\\)"),
        ("[Monitor]\nLockLoss=maybe\n", [], -5,
         "[Monitor] LockLoss='maybe' is not terminate or keep"),
        ("[TLS]\nTlsCaCertificate=/nonexistent.pem\n", [], -125,
         "[TLS] TlsCaCertificate='/nonexistent.pem' names no existing file"),
    ],
)  # fmt: skip
def test_a_refused_value_names_file_line_key_and_value(
    sandbox: FlomSandbox, content: str, flom_stdout: list[str], rc: int, ours: str
) -> None:
    path = sandbox.path("flom.conf")
    path.write_text("# settings\n[Trace]\n" + content)
    result = sandbox.run("-c", str(path), "--", "echo", "ran")
    assert result.returncode == 99
    assert lines(result.stdout) == [
        *flom_stdout,
        f"ERROR: invalid configuration found in file '{path}'",
    ]
    assert lines(result.stderr) == [f"flom_config_init: ret_cod={rc}", f"flom: {path}:4: {ours}"]


def test_a_refused_value_in_the_user_file_is_named_too(sandbox: FlomSandbox) -> None:
    path = user_config(sandbox, "[Resource]\nLockMode=WRITE\n")
    result = sandbox.run("--", "true")
    assert result.returncode == 99
    assert lines(result.stdout) == [f"ERROR: invalid configuration found in file '{path}'"]
    assert lines(result.stderr)[1].startswith(f"flom: {path}:2: [Resource] LockMode='WRITE'")


# ----------------------------------------------------------------- the -c file itself


def expect_c_file_error(sandbox: FlomSandbox, path: Path, reason: str) -> None:
    result = sandbox.run("-c", str(path), "--", "echo", "ran")
    assert (result.returncode, lines(result.stdout)) == (
        99,
        [f"ERROR: error while loading file '{path}'"],
    )
    assert lines(result.stderr) == [
        "flom_config_init: ret_cod=-203",
        f"flom: configuration file '{path}': {reason}",
    ]


def test_missing_c_file_says_no_such_file(sandbox: FlomSandbox) -> None:
    expect_c_file_error(sandbox, sandbox.path("missing.conf"), "no such file")


def test_c_file_that_is_a_directory(sandbox: FlomSandbox) -> None:
    expect_c_file_error(sandbox, sandbox.root, "is a directory")


@pytest.mark.skipif(IS_ROOT, reason="root reads any file")
def test_unreadable_c_file_says_permission_denied(sandbox: FlomSandbox) -> None:
    path = sandbox.path("secret.conf")
    path.write_text("[Resource]\n")
    path.chmod(0)
    expect_c_file_error(sandbox, path, "permission denied")


def test_unreadable_file_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same as above without relying on file modes (root reads everything)
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(KeyFileError) as info:
        read_key_file(str(tmp_path / "x.conf"))
    assert (info.value.reason, info.value.line) == ("permission denied", 0)


def test_c_file_that_is_not_a_key_file(sandbox: FlomSandbox) -> None:
    path = sandbox.path("bad.conf")
    path.write_text("# settings\nName=red\n[Resource]\n")
    result = sandbox.run("-c", str(path), "--", "true")
    assert (result.returncode, lines(result.stdout)) == (
        99,
        [f"ERROR: error while loading file '{path}'"],
    )
    assert lines(result.stderr) == [
        "flom_config_init: ret_cod=-203",
        f"flom: configuration file '{path}', line 2: key Name comes before the first [Group] "
        "header",
    ]


# ----------------------------------------------------------------------- lock modes


@pytest.mark.parametrize("mode", ["WRITE", "xnly"])
def test_invalid_lock_mode_lists_the_valid_ones(sandbox: FlomSandbox, mode: str) -> None:
    result = sandbox.run("-l", mode, "--", "echo", "ran")
    assert (result.returncode, result.stdout) == (99, "")
    assert lines(result.stderr) == [
        f"lock-mode: '{mode}' is an invalid value",
        f"flom: --lock-mode: valid values are {MODES}",
    ]
    assert MODES == (
        "NL, CR, CW, PR, PW, EX (or NullLock, ConcurrentRead, ConcurrentWrite, "
        "ProtectedRead, ProtectedWrite, Exclusive)"
    )


def test_invalid_boolean_lists_the_valid_words(sandbox: FlomSandbox) -> None:
    result = sandbox.run("-e", "maybe", "--", "true")
    assert (result.returncode, lines(result.stdout)) == (
        99,
        ["resource-create: 'maybe' is an invalid value"],
    )
    assert lines(result.stderr) == [
        "flom: --resource-create: valid values are yes, y, true, on, 1 or no, n, false, off, "
        "0 (any case)"
    ]


# ------------------------------------------------- daemon options and a running daemon


def started(sandbox: FlomSandbox, *args: str) -> None:
    """Start the sandbox's daemon (for a minute) with a first command: nothing reported."""
    first = sandbox.run("-d", "60000", *args, "--", "true")
    assert (first.returncode, first.stderr) == (0, "")
    assert sandbox.remember_daemon() is not None


def ignored_report(sandbox: FlomSandbox, names: str, one: bool = False) -> str:
    apply, were = ("applies", "it was") if one else ("apply", "they were")
    return (
        f"flom: a daemon already runs on {sandbox.socket}: {names} {apply} only to a daemon "
        f"this command starts; {were} ignored (stop it with flom -x, then run again)\n"
    )


def test_daemon_options_are_not_reported_when_this_command_starts_it(
    sandbox: FlomSandbox,
) -> None:
    trace = sandbox.path("daemon.trace")
    result = sandbox.run(
        "-d", "60000", "-t", str(trace), "--grant-policy=fifo", "--", "echo", "ran"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")


def test_daemon_options_are_reported_when_a_daemon_already_ran(sandbox: FlomSandbox) -> None:
    started(sandbox)
    state = sandbox.path("state")
    result = sandbox.run("--state-file", str(state), "-m", str(sandbox.root), "--", "echo", "ran")
    assert (result.returncode, result.stdout) == (0, "ran\n")
    assert result.stderr == ignored_report(sandbox, "--state-file and -m")
    assert not state.exists()


def test_each_daemon_only_option_is_named(sandbox: FlomSandbox) -> None:
    started(sandbox)
    result = sandbox.run(
        "-d", "1000", "-t", str(sandbox.path("t")), "--grant-policy=fifo", "--", "true"
    )
    assert result.returncode == 0
    assert result.stderr == ignored_report(sandbox, "-d, --grant-policy and -t")


def test_options_the_running_daemon_already_has_are_not_reported(sandbox: FlomSandbox) -> None:
    started(sandbox, "--grant-policy=fifo")
    result = sandbox.run("-d", "60000", "--grant-policy=fifo", "--", "true")
    assert (result.returncode, result.stderr) == (0, "")


def test_lifespan_zero_is_not_reported(sandbox: FlomSandbox) -> None:
    started(sandbox)
    result = sandbox.run("-d", "0", "--", "true")
    assert (result.returncode, result.stderr) == (0, "")


def test_daemon_options_from_a_config_file_are_reported_with_their_place(
    sandbox: FlomSandbox,
) -> None:
    started(sandbox)
    path = user_config(sandbox, "[Resource]\nName=red\n[Daemon]\nGrantPolicy=fifo\n")
    result = sandbox.run("--", "true")
    assert result.returncode == 0
    assert result.stderr == ignored_report(sandbox, f"[Daemon]/GrantPolicy ({path}:4)", one=True)


def test_the_same_config_that_started_the_daemon_is_not_reported(sandbox: FlomSandbox) -> None:
    user_config(sandbox, "[Daemon]\nLifespan=60000\nGrantPolicy=fifo\n")
    first = sandbox.run("--", "true")
    assert (first.returncode, first.stderr) == (0, "")
    again = sandbox.run("--", "true")
    assert (again.returncode, again.stderr) == (0, "")


def test_unknown_daemon_counts_only_command_line_options() -> None:
    # No command line of the running daemon (TCP, FLoM's daemon): configuration files
    # are read by every command, the one that started the daemon included.
    given = [
        DaemonOption("-d", "--lifespan", True),
        DaemonOption("[Daemon]/StateFile (f:2)", "--state-file", False),
    ]
    settings = Settings(daemon_lifespan=1, state_file="/x")
    assert [o.label for o in ignored_daemon_options(settings, given, None)] == ["-d"]
    not_a_daemon = os.getpid()  # pytest: not a pyflom daemon
    assert [o.label for o in ignored_daemon_options(settings, given, not_a_daemon)] == ["-d"]


def test_multicast_options_count_only_next_to_a_unicast_address(tmp_path: Path) -> None:
    def labels(args: list[str]) -> list[str]:
        parsed = parse_args(args)
        settings, _ = load_settings(parsed, system_files=(), home=str(tmp_path))
        return [option.label for option in daemon_only_options(parsed, settings)]

    assert labels(["-A", "ff02::1", "-P", "2000"]) == []  # the client discovers with them
    assert labels(["-a", "::1", "-A", "ff02::1", "-P", "2000"]) == ["-A", "-P"]
    assert labels(["-s", "/tmp/x", "-n", "lo", "--tcp-keepalive-time=5"]) == []
