"""Command line and configuration: option parsing, config files, ``-V`` dump, validation.

In-process tests of :mod:`pyflom.cmdline`, modelled on upstream ``cmdopt.at.in`` and
``incompopt.at.in`` (checked through the ``-V`` dump lines) plus pyflom's own decisions
(quirks Q5, Q6, Q7 fixed).  The machine's own config files never interfere: every load
uses ``system_files=()`` and a private home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyflom import rc
from pyflom.cmdline import (
    SIGNAL_NAMES,
    SYSTEM_CONFIG_FILES,
    CliError,
    ParsedArgs,
    load_settings,
    parse_args,
    validate,
)
from pyflom.lockmodes import LockMode
from pyflom.settings import Settings, default_socket_name
from pyflom.usage import help_text, signal_list_text, verbose_dump, version_text

BAD_INT = "option parsing failed: Cannot parse integer value "

SAMPLE_CONFIG = """\
# sample configuration: every group listed, most keys commented out
[Trace]
#DaemonTraceFile=/tmp/flom_daemon.trc
#CommandTraceFile=/tmp/flom_command.trc
[Resource]
#Name=_RESOURCE
[Daemon]
#SocketName=/tmp/flom_socket_name
[Monitor]
[Network]
[TLS]
"""


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def load(
    args: list[str], home: Path, system_files: tuple[str, ...] = ()
) -> tuple[Settings, list[str]]:
    return load_settings(parse_args(args), system_files=system_files, home=str(home))


def settings_of(args: list[str], home: Path, system_files: tuple[str, ...] = ()) -> Settings:
    return load(args, home, system_files)[0]


def dump(args: list[str], home: Path, system_files: tuple[str, ...] = ()) -> list[str]:
    return verbose_dump(settings_of(args, home, system_files)).splitlines()


def config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def error_of(args: list[str], home: Path, system_files: tuple[str, ...] = ()) -> CliError:
    with pytest.raises(CliError) as info:
        load(args, home, system_files)
    return info.value


# ----------------------------------------------------------------- cmdopt.at.in rows


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["--help-all"], ["-?"]])
def test_help(args: list[str]) -> None:
    parsed = parse_args(args)
    assert parsed.show_help
    text = help_text()
    assert text.startswith("Usage:\n  flom [OPTION\u2026] [-- command to execute]\n")
    assert "  -r, --resource-name=NAME" in text
    assert "      --grant-policy=flom|fifo" in text
    assert "      --state-file=FILE" in text


def test_help_stops_parsing() -> None:
    assert parse_args(["--help", "--bogus"]).show_help


@pytest.mark.parametrize("args", [["-v"], ["--version"]])
def test_version(args: list[str]) -> None:
    assert parse_args(args).show_version
    text = version_text()
    assert "Package name: pyflom; package version: 0.1.0" in text
    assert "Ferrari" not in text


def test_custom_config_file(tmp_path: Path, home: Path) -> None:
    path = config(tmp_path / "flom.conf", SAMPLE_CONFIG)
    for args in (["-c", path], [f"--config-file={path}"]):
        parsed = parse_args([*args, "ls"])
        assert parsed.command == ["ls"]
        settings, warnings = load_settings(parsed, system_files=(), home=str(home))
        assert settings == Settings() and warnings == []


@pytest.mark.parametrize(
    ("args", "key", "value", "line"),
    [
        (["-t", "/tmp/flom_daemon.trc"], "Trace", "DaemonTraceFile=/tmp/flom_daemon.trc",
         "[Trace]/DaemonTraceFile='/tmp/flom_daemon.trc'"),
        (["--daemon-trace-file", "/tmp/flom_daemon.trc"], None, None,
         "[Trace]/DaemonTraceFile='/tmp/flom_daemon.trc'"),
        (["-T", "/tmp/flom_command.trc"], "Trace", "CommandTraceFile=/tmp/flom_command.trc",
         "[Trace]/CommandTraceFile='/tmp/flom_command.trc'"),
        (["--command-trace-file=/tmp/flom_command.trc"], None, None,
         "[Trace]/CommandTraceFile='/tmp/flom_command.trc'"),
        (["--append-trace-file=yes"], "Trace", "AppendTraceFile=yes",
         "[Trace]/AppendTraceFile=1"),
        (["-V"], "Trace", "Verbose=yes", "[Trace]/Verbose=1"),
        (["--verbose"], None, None, "[Trace]/Verbose=1"),
        (["-r", "MYRES"], "Resource", "Name=MYRES", "[Resource]/Name='MYRES'"),
        (["--resource-name=MYRES"], None, None, "[Resource]/Name='MYRES'"),
        (["-o", "100"], "Resource", "Timeout=100", "[Resource]/Timeout=100"),
        (["--resource-timeout=100"], None, None, "[Resource]/Timeout=100"),
        (["-o", "-100"], "Resource", "Timeout=-100", "[Resource]/Timeout=-100"),
        (["--resource-timeout=-100"], None, None, "[Resource]/Timeout=-100"),
        (["-q", "22"], "Resource", "Quantity=22", "[Resource]/Quantity=22"),
        (["--resource-quantity=22"], None, None, "[Resource]/Quantity=22"),
        (["-e", "y"], "Resource", "Create=yes", "[Resource]/Create=1"),
        (["--resource-create=yes"], None, None, "[Resource]/Create=1"),
        (["-e", "n"], "Resource", "Create=no", "[Resource]/Create=0"),
        (["--resource-create=no"], None, None, "[Resource]/Create=0"),
        (["-i", "123"], "Resource", "IdleLifespan=234", "[Resource]/IdleLifespan=123"),
        (["-l", "PR"], "Resource", "LockMode=PR", "[Resource]/LockMode=3"),
        (["--lock-mode=ProtectedRead"], "Resource", "LockMode=ProtectedRead",
         "[Resource]/LockMode=3"),
        (["-s", "/tmp/foo"], "Daemon", "SocketName=/tmp/foo", "[Daemon]/SocketName='/tmp/foo'"),
        (["--socket-name=/tmp/foo"], None, None, "[Daemon]/SocketName='/tmp/foo'"),
        (["-d", "231"], "Daemon", "Lifespan=231", "[Daemon]/Lifespan=231"),
        (["--daemon-lifespan=231"], None, None, "[Daemon]/Lifespan=231"),
        (["-a", "localhost"], "Daemon", "UnicastAddress=localhost",
         "[Daemon]/UnicastAddress='localhost'"),
        (["--unicast-address=localhost"], None, None, "[Daemon]/UnicastAddress='localhost'"),
        (["-p", "27750"], "Daemon", "UnicastPort=27750", "[Daemon]/UnicastPort=27750"),
        (["--unicast-port=27750"], None, None, "[Daemon]/UnicastPort=27750"),
        (["-A", "239.255.0.1"], None, None, "[Daemon]/MulticastAddress='239.255.0.1'"),
        (["--multicast-address=239.255.0.2"], "Daemon", "MulticastAddress=239.255.0.3",
         "[Daemon]/MulticastAddress='239.255.0.2'"),
        (["-P", "27750"], "Daemon", "MulticastPort=27750", "[Daemon]/MulticastPort=27750"),
        (["--multicast-port=27750"], None, None, "[Daemon]/MulticastPort=27750"),
        (["--ignore-signal=SIGQUIT", "--ignore-signal=SIGTERM"], "Monitor",
         "IgnoredSignals=SIGQUIT;SIGTERM", "[Monitor]/IgnoredSignals='SIGQUIT;SIGTERM'"),
        (["-n", "eth0"], "Network", "NetworkInterface=eth0",
         "[Network]/NetworkInterface='eth0'"),
        (["--network-interface=eth0"], None, None, "[Network]/NetworkInterface='eth0'"),
        (["-D", "3"], "Network", "DiscoveryAttempts=3", "[Network]/DiscoveryAttempts=3"),
        (["--discovery-attempts=3"], None, None, "[Network]/DiscoveryAttempts=3"),
        (["-I", "12345"], "Network", "DiscoveryTimeout=12345",
         "[Network]/DiscoveryTimeout=12345"),
        (["--discovery-timeout=12345"], None, None, "[Network]/DiscoveryTimeout=12345"),
        (["--discovery-ttl=4"], "Network", "DiscoveryTTL=4", "[Network]/DiscoveryTTL=4"),
        (["--tcp-keepalive-time=12345"], "Network", "TcpKeepaliveTime=12345",
         "[Network]/TcpKeepaliveTime=12345"),
        (["--tcp-keepalive-intvl=12345"], "Network", "TcpKeepaliveIntvl=12345",
         "[Network]/TcpKeepaliveIntvl=12345"),
        (["--tcp-keepalive-probes=12345"], "Network", "TcpKeepaliveProbes=12345",
         "[Network]/TcpKeepaliveProbes=12345"),
        (["--tls-check-peer-id=yes"], "TLS", "TlsCheckPeerId=yes", "[TLS]/TlsCheckPeerId=1"),
        (["--grant-policy=fifo"], "Daemon", "GrantPolicy=fifo", "[Daemon]/GrantPolicy='fifo'"),
        (["--state-file=/var/lib/f.st"], "Daemon", "StateFile=/var/lib/f.st",
         "[Daemon]/StateFile='/var/lib/f.st'"),
    ],
)  # fmt: skip
def test_dump_line(
    tmp_path: Path, home: Path, args: list[str], key: str | None, value: str | None, line: str
) -> None:
    """Each option shows in the ``-V`` dump; so does its config key (when given)."""
    assert line in dump(args, home)
    if key is not None:
        assert value is not None
        path = config(tmp_path / "flom.conf", f"[{key}]\n{value}\n")
        expected = line
        if "IdleLifespan" in value:
            expected = "[Resource]/IdleLifespan=234"
        if "239.255.0.3" in value:
            expected = "[Daemon]/MulticastAddress='239.255.0.3'"
        assert expected in dump(["-c", path], home)


def test_resource_create_from_config(tmp_path: Path, home: Path) -> None:
    no = config(tmp_path / "no.conf", "[Resource]\nCreate=no\n")
    yes = config(tmp_path / "yes.conf", "[Resource]\nCreate=yes\n")
    assert "[Resource]/Create=0" in dump(["-c", no], home)
    assert "[Resource]/Create=1" in dump(["-c", yes], home)


def test_daemon_lifespan_lines(home: Path) -> None:
    lines = [line for line in dump(["-d", "231"], home) if "Lifespan" in line]
    assert lines == ["[Resource]/IdleLifespan=0", "[Daemon]/Lifespan=231"]


def test_vfs_mount_point(tmp_path: Path, home: Path) -> None:
    vfs = tmp_path / "flom-test-vfs"
    vfs.mkdir()
    assert f"[Daemon]/MountPointVFS='{vfs}'" in dump(["-m", str(vfs)], home)
    assert f"[Daemon]/MountPointVFS='{vfs}'" in dump([f"--mount-point-vfs={vfs}"], home)
    path = config(tmp_path / "flom.conf", f"[Daemon]\nMountPointVFS={vfs}\n")
    assert f"[Daemon]/MountPointVFS='{vfs}'" in dump(["-c", path], home)
    vfs.rmdir()


@pytest.mark.parametrize(
    ("option", "key", "line_key"),
    [
        ("--tls-certificate", "TlsCertificate", "[TLS]/TlsCertificate"),
        ("--tls-private-key", "TlsPrivateKey", "[TLS]/TlsPrivateKey"),
        ("--tls-ca-certificate", "TlsCaCertificate", "[TLS]/TlsCaCertificate"),
    ],
)
def test_tls_files(tmp_path: Path, home: Path, option: str, key: str, line_key: str) -> None:
    pem = tmp_path / "foo.pem"
    pem.write_text("PEM\n")
    real = os.path.realpath(pem)
    assert f"{line_key}='{real}'" in dump([f"{option}={pem}"], home)
    assert f"{line_key}='{real}'" in dump([option, str(pem)], home)
    path = config(tmp_path / "flom.conf", f"[TLS]\n{key}={pem}\n")
    assert f"{line_key}='{real}'" in dump(["-c", path], home)


def test_tls_file_stored_as_realpath(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "cert.pem").write_text("PEM\n")
    (tmp_path / "link.pem").symlink_to(tmp_path / "dir" / "cert.pem")
    monkeypatch.chdir(tmp_path)
    settings = settings_of(["--tls-certificate", "link.pem"], home)
    assert settings.tls_certificate == os.path.realpath(tmp_path / "dir" / "cert.pem")


def test_signal_list() -> None:
    parsed = parse_args(["--signal-list"])
    assert parsed.show_signal_list and not parsed.show_version
    text = signal_list_text()
    assert text.startswith("1) SIGHUP\t2) SIGINT\t3) SIGQUIT\t4) SIGILL\t\n5) SIGTRAP\t")
    assert text.endswith("\n29) SIGIO\t30) SIGPWR\t31) SIGSYS\t\n")
    assert text.count("\n") == 8
    assert len(SIGNAL_NAMES) == 31 and SIGNAL_NAMES[16] == "SIGSTKFLT"


def test_version_and_signal_list_together() -> None:
    parsed = parse_args(["-v", "--signal-list"])
    assert parsed.show_version and parsed.show_signal_list


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["-x"], "quiesce_exit"),
        (["--quiesce-exit"], "quiesce_exit"),
        (["-X"], "immediate_exit"),
        (["--immediate-exit"], "immediate_exit"),
        (["--unique-id"], "show_unique_id"),
    ],
)
def test_action_flags(args: list[str], flag: str) -> None:
    parsed = parse_args([*args, "ls"])
    assert getattr(parsed, flag) is True
    assert parsed.command == ["ls"] and parsed.options == {}


def test_debug_feature() -> None:
    parsed = parse_args(["--debug-feature=TLS.Client"])
    assert parsed.debug_feature == "TLS.Client"
    assert "debug-feature" not in parsed.options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-z", "FOO"], "option parsing failed: Unknown option -z"),
        (["--ZZZ-ZZZ=BAR"], "option parsing failed: Unknown option --ZZZ-ZZZ=BAR"),
        (["--bogus"], "option parsing failed: Unknown option --bogus"),
        (["--verbose=1"], "option parsing failed: Unknown option --verbose=1"),
        (["-Vz"], "option parsing failed: Unknown option -Vz"),
        (["-r"], "option parsing failed: Missing argument for -r"),
        (["--resource-name"], "option parsing failed: Missing argument for --resource-name"),
        (["-o", "abc"], f"{BAD_INT}\u201cabc\u201d for -o"),
        (["--resource-timeout=12x"], f"{BAD_INT}\u201c12x\u201d for --resource-timeout"),
        (["-o", "0x10"], f"{BAD_INT}\u201c0x10\u201d for -o"),
        (["-o", ""], f"{BAD_INT}\u201c\u201d for -o"),
        (["-d", "99999999999"],
         "option parsing failed: Integer value \u201c99999999999\u201d for -d out of range"),
    ],
)  # fmt: skip
def test_invalid_options(args: list[str], message: str) -> None:
    with pytest.raises(CliError) as info:
        parse_args(args)
    assert info.value.status == rc.ES_GENERIC_ERROR == 99
    assert info.value.stderr == message
    assert info.value.stdout == ""


# -------------------------------------------------------------- GOption corner cases


def test_value_glued_to_short_option() -> None:
    assert parse_args(["-rFOO"]).options == {"resource-name": "FOO"}
    assert parse_args(["-o-5"]).options == {"resource-timeout": -5}


def test_long_option_with_separate_value() -> None:
    assert parse_args(["--resource-name", "FOO"]).options == {"resource-name": "FOO"}


def test_string_option_takes_double_dash_as_value() -> None:
    parsed = parse_args(["--tls-check-peer-id", "--", "ls"])
    assert parsed.options == {"tls-check-peer-id": "--"}
    assert parsed.command == ["ls"]


def test_string_option_takes_dash_word_as_value() -> None:
    parsed = parse_args(["-r", "-V", "ls"])
    assert parsed.options == {"resource-name": "-V"}
    assert parsed.command == ["ls"]


def test_options_after_command_are_parsed() -> None:
    """Q20 kept: ``flom echo -n hi`` runs ``echo`` and sets ``-n hi``."""
    parsed = parse_args(["echo", "-n", "hi"])
    assert parsed.command == ["echo"]
    assert parsed.options == {"network-interface": "hi"}


def test_double_dash_stops_parsing() -> None:
    parsed = parse_args(["-V", "--", "ls", "-r", "x", "--", "-z"])
    assert parsed.command == ["ls", "-r", "x", "--", "-z"]
    assert parsed.options == {"verbose": True}


def test_single_dash_is_a_command_word() -> None:
    assert parse_args(["-", "x"]).command == ["-", "x"]


def test_clustered_short_options() -> None:
    parsed = parse_args(["-Vr", "FOO", "-xX"])
    assert parsed.options == {"verbose": True, "resource-name": "FOO"}
    assert parsed.quiesce_exit and parsed.immediate_exit
    assert parse_args(["-VrFOO"]).options == {"verbose": True, "resource-name": "FOO"}


def test_last_value_wins_and_ignore_signal_repeats() -> None:
    parsed = parse_args(["-r", "A", "-r", "B", "--ignore-signal", "1", "--ignore-signal=2"])
    assert parsed.options == {"resource-name": "B", "ignore-signal": ["1", "2"]}


def test_integer_values_are_ints() -> None:
    parsed = parse_args(["-o", " +7", "-d", "-1", "--discovery-ttl=2"])
    assert parsed.options == {"resource-timeout": 7, "daemon-lifespan": -1, "discovery-ttl": 2}


def test_non_ascii_arguments(home: Path) -> None:
    parsed = parse_args(["-n", "\u00e0bc", "--", "echo", "caf\u00e9"])
    assert parsed.options == {"network-interface": "\u00e0bc"}
    assert parsed.command == ["echo", "caf\u00e9"]
    assert "[Network]/NetworkInterface='\u00e0bc'" in dump(["-n", "\u00e0bc"], home)


def test_empty_command_line() -> None:
    assert parse_args([]) == ParsedArgs()


# ------------------------------------------------------------------- incompopt.at.in


@pytest.mark.parametrize("network", [["-a", "localhost"], ["-A", "239.255.0.1"]])
def test_socket_and_network_conflict(home: Path, network: list[str]) -> None:
    settings = settings_of(["-s", "/tmp/foo", *network], home)
    with pytest.raises(CliError) as info:
        validate(settings)
    assert info.value.status == 99
    assert info.value.stdout == (
        "ERROR: flom can not be configured for local (UNIX socket) and network "
        "(TCP-UDP/IP) communication at the same time."
    )
    assert info.value.stderr == "Configuration is not valid, cannot go on!"


def test_socket_from_config_conflicts_with_cli_address(tmp_path: Path, home: Path) -> None:
    path = config(tmp_path / "flom.conf", "[Daemon]\nSocketName=/tmp/foobar\n")
    with pytest.raises(CliError):
        validate(settings_of(["-c", path, "-a", "localhost"], home))


def test_check_peer_id_without_tls_files(tmp_path: Path, home: Path) -> None:
    settings = settings_of(["--tls-check-peer-id=yes"], home)
    with pytest.raises(CliError) as info:
        validate(settings)
    assert info.value.status == 99
    assert info.value.stdout == (
        "ERROR: TLS check peer id can not be specified without full TLS configuration."
    )
    assert info.value.stderr == "Configuration is not valid, cannot go on!"
    pem = tmp_path / "p.pem"
    pem.write_text("x")
    partial = settings_of(["--tls-check-peer-id=yes", f"--tls-certificate={pem}"], home)
    with pytest.raises(CliError):
        validate(partial)
    full = settings_of(
        [
            "--tls-check-peer-id=yes",
            f"--tls-certificate={pem}",
            f"--tls-private-key={pem}",
            f"--tls-ca-certificate={pem}",
        ],
        home,
    )
    assert validate(full)[0].tls_check_peer_id


# ------------------------------------------------------------------------ validation


def test_default_socket_name_filled_by_validation(home: Path) -> None:
    settings = settings_of([], home)
    assert "[Daemon]/SocketName=''" in verbose_dump(settings).splitlines()
    checked, warnings = validate(settings)
    assert checked.socket_name == default_socket_name()
    assert warnings == []
    assert settings.socket_name is None  # validate returns a new object


def test_no_default_socket_with_network_address(home: Path) -> None:
    assert validate(settings_of(["-a", "localhost"], home))[0].socket_name is None
    assert validate(settings_of(["-A", "239.255.0.1"], home))[0].socket_name is None


def test_lock_mode_forced_to_ex_and_quantity_to_one(home: Path) -> None:
    settings = settings_of(["-r", "foo[3]", "-l", "PR", "-q", "2"], home)
    checked, warnings = validate(settings)
    assert checked.lock_mode is LockMode.EX and checked.resource_quantity == 2
    assert warnings == []
    settings = settings_of(["-r", "red.green", "-l", "PR", "-q", "2"], home)
    checked, _ = validate(settings)
    assert checked.lock_mode is LockMode.EX and checked.resource_quantity == 1
    checked, _ = validate(settings_of(["-r", "/a/b", "-l", "PR", "-q", "2"], home))
    assert checked.lock_mode is LockMode.PR and checked.resource_quantity == 1
    checked, _ = validate(settings_of(["-l", "PR", "-q", "3"], home))
    assert checked.lock_mode is LockMode.PR and checked.resource_quantity == 1


def test_type_warnings_only_when_verbose(home: Path) -> None:
    args = ["-r", "_s_seq[2]", "-l", "NL", "-q", "5"]
    assert validate(settings_of(args, home))[1] == []
    checked, warnings = validate(settings_of(["-V", *args], home))
    assert len(warnings) == 2
    assert checked.lock_mode is LockMode.EX and checked.resource_quantity == 1
    # the dump (before validation) shows what was asked for
    lines = dump(["-V", *args], home)
    assert "[Resource]/LockMode=0" in lines and "[Resource]/Quantity=5" in lines


# --------------------------------------------------------------------- value errors


@pytest.mark.parametrize(
    ("args", "stdout", "stderr"),
    [
        (["-e", "maybe"], "resource-create: 'maybe' is an invalid value", ""),
        (["-e", "xyz"], "resource-create: 'xyz' is an invalid value", ""),
        (["--tls-check-peer-id=nobody"], "tls-check-peer-id: 'nobody' is an invalid value", ""),
        (["--append-trace-file=Yes please"], "",
         "append-trace-file: 'Yes please' is an invalid value"),
        (["-l", "xnly"], "", "lock-mode: 'xnly' is an invalid value"),
        (["-l", "EXCL"], "", "lock-mode: 'EXCL' is an invalid value"),
        (["-r", "1abc"], "ERROR: '1abc' is not a valid name for a resource",
         "flom_config_set_resource_name: ret_cod=-14"),
        (["-r", "a..b"], "ERROR: 'a..b' is not a valid name for a resource",
         "flom_config_set_resource_name: ret_cod=-14"),
        (["-r", "_RESOURCE"],
         "ERROR: '_RESOURCE' is a reserved resource name and can not be set by user",
         "flom_config_set_resource_name: ret_cod=-14"),
        (["-s", "/tmp/" + "x" * 103], "",
         f"socket-name: '/tmp/{'x' * 103}' is an invalid value\n"
         "flom_client_connect: ret_cod=-9 (ERROR: the process has been stopped to avoid a "
         "buffer overflow)"),
        (["--grant-policy=lifo"], "", "grant-policy: 'lifo' is an invalid value"),
    ],
)  # fmt: skip
def test_value_errors(home: Path, args: list[str], stdout: str, stderr: str) -> None:
    error = error_of(args, home)
    assert (error.status, error.stdout, error.stderr) == (99, stdout, stderr)


def test_socket_name_length_limit(home: Path) -> None:
    assert settings_of(["-s", "/tmp/" + "x" * 102], home).socket_name == "/tmp/" + "x" * 102
    # the limit counts bytes, not characters
    assert error_of(["-s", "/tmp/" + "\u00e9" * 52], home).status == 99


def test_mount_point_must_be_a_directory(tmp_path: Path, home: Path) -> None:
    missing = tmp_path / "missing"
    error = error_of(["-m", str(missing)], home)
    assert error.status == 99 and error.stdout == ""
    assert error.stderr == (
        f"mount-point-vfs: '{missing}' is an invalid value\n"
        "flom_client_connect: ret_cod=-121 (ERROR: 'opendir' function returned an error "
        "condition)"
    )
    plain = tmp_path / "file"
    plain.write_text("")
    assert error_of(["-m", str(plain)], home).status == 99


@pytest.mark.parametrize("option", ["tls-certificate", "tls-private-key", "tls-ca-certificate"])
def test_missing_tls_file(tmp_path: Path, home: Path, option: str) -> None:
    missing = str(tmp_path / "nope.pem")
    error = error_of([f"--{option}", missing], home)
    assert (error.status, error.stdout) == (99, "")
    assert error.stderr == f"{option}: '{missing}' is not a valid value"


def test_negative_quantity_warns_and_is_ignored(home: Path) -> None:
    settings, warnings = load(["-q", "-3"], home)
    assert settings.resource_quantity == 1
    assert warnings == ["Resource quantity ignored because negative values (-3) are meaningless"]


def test_warning_kept_when_a_later_option_fails(home: Path) -> None:
    error = error_of(["-q", "-3", "-l", "bogus"], home)
    assert error.stderr == (
        "Resource quantity ignored because negative values (-3) are meaningless\n"
        "lock-mode: 'bogus' is an invalid value"
    )


def test_first_error_in_flom_order_wins(home: Path) -> None:
    # resource name is checked before the lock mode, whatever the order on the line
    error = error_of(["-l", "bogus", "-r", "1x"], home)
    assert error.stdout == "ERROR: '1x' is not a valid name for a resource"


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("yes", True), ("Y", True), ("TRUE", True), ("on", True), ("1", True),
        ("no", False), ("N", False), ("false", False), ("Off", False), ("0", False),
    ],
)  # fmt: skip
def test_boolean_words(home: Path, word: str, value: bool) -> None:
    settings = settings_of(["-e", word, f"--append-trace-file={word}"], home)
    assert settings.resource_create is value and settings.append_trace_file is value


@pytest.mark.parametrize(
    ("word", "mode"),
    [("nl", LockMode.NL), ("ConcurrentRead", LockMode.CR), ("cw", LockMode.CW),
     ("PROTECTEDREAD", LockMode.PR), ("PW", LockMode.PW), ("exclusive", LockMode.EX)],
)  # fmt: skip
def test_lock_mode_words(home: Path, word: str, mode: LockMode) -> None:
    assert settings_of(["-l", word], home).lock_mode is mode


def test_numeric_normalisation_on_the_command_line(home: Path) -> None:
    settings = settings_of(
        [
            "-i", "-50", "-p", "-2000", "-P", "-3000", "-D", "0", "-I", "-7",
            "--discovery-ttl=-3", "--tcp-keepalive-time=-1", "--tcp-keepalive-intvl=-2",
            "--tcp-keepalive-probes=-3", "-o", "-5", "-d", "-1", "-q", "0",
        ],
        home,
    )  # fmt: skip
    assert settings.resource_idle_lifespan == 50
    assert (settings.unicast_port, settings.multicast_port) == (2000, 3000)
    assert (settings.discovery_attempts, settings.discovery_timeout) == (1, 7)
    assert settings.discovery_ttl == 3
    assert (settings.tcp_keepalive_time, settings.tcp_keepalive_intvl) == (1, 2)
    assert settings.tcp_keepalive_probes == 3
    assert (settings.resource_timeout, settings.daemon_lifespan) == (-5, -1)
    assert settings.resource_quantity == 1
    assert settings_of(["--discovery-ttl=0", "-D", "-4"], home).discovery_ttl == 1
    assert settings_of(["-D", "-4"], home).discovery_attempts == 4


def test_ignore_signal_items(home: Path) -> None:
    args = [f"--ignore-signal={item}" for item in ("15", "SIGQUIT", "sigint", "32", "0",
                                                    "TERM", "SIGTERM", "1")]  # fmt: skip
    settings = settings_of(args, home)
    assert settings.ignored_signals == [1, 3, 15]
    assert "[Monitor]/IgnoredSignals='SIGHUP;SIGQUIT;SIGTERM'" in verbose_dump(settings)


# --------------------------------------------------------------------- verbose dump


def test_verbose_dump_of_defaults() -> None:
    assert verbose_dump(Settings()) == (
        "[Trace]/DaemonTraceFile=''\n"
        "[Trace]/CommandTraceFile=''\n"
        "[Trace]/AppendTraceFile=0\n"
        "[Trace]/Verbose=0\n"
        "[Resource]/Name='_RESOURCE'\n"
        "[Resource]/Timeout=-1\n"
        "[Resource]/Quantity=1\n"
        "[Resource]/LockMode=5\n"
        "[Resource]/Create=1\n"
        "[Resource]/IdleLifespan=0\n"
        "[Daemon]/SocketName=''\n"
        "[Daemon]/Lifespan=5000\n"
        "[Daemon]/UnicastAddress=''\n"
        "[Daemon]/UnicastPort=28015\n"
        "[Daemon]/MulticastAddress=''\n"
        "[Daemon]/MulticastPort=28015\n"
        "[Daemon]/MountPointVFS=''\n"
        "[Monitor]/IgnoredSignals=''\n"
        "[Network]/NetworkInterface=''\n"
        "[Network]/DiscoveryAttempts=2\n"
        "[Network]/DiscoveryTimeout=500\n"
        "[Network]/DiscoveryTTL=1\n"
        "[Network]/TcpKeepaliveTime=60\n"
        "[Network]/TcpKeepaliveIntvl=10\n"
        "[Network]/TcpKeepaliveProbes=6\n"
        "[TLS]/TlsCertificate=''\n"
        "[TLS]/TlsPrivateKey=''\n"
        "[TLS]/TlsCaCertificate=''\n"
        "[TLS]/TlsCheckPeerId=0\n"
        "[Daemon]/GrantPolicy='flom'\n"
        "[Daemon]/StateFile=''\n"
        "[Monitor]/LockLoss='terminate'\n"
        "[Monitor]/LockLossGrace=5000\n"
        "[Daemon]/Backend=''\n"
        "[Etcd]/KeyPrefix='/pyflom/'\n"
        "[Etcd]/LeaseTTL=15\n"
        "[Etcd]/CaFile=''\n"
        "[Etcd]/CertFile=''\n"
        "[Etcd]/KeyFile=''\n"
        "[Etcd]/User=''\n"
        "[Etcd]/PasswordFile=''\n"
        "[Daemon]/AccessRules=''\n"
        "[Daemon]/MetricsAddress=''\n"
    )


# ----------------------------------------------------------- configuration layering


def test_precedence_system_user_config_cli(tmp_path: Path, home: Path) -> None:
    system1 = config(
        tmp_path / "sys1.conf", "[Resource]\nTimeout=1\nName=S1\n[Daemon]\nLifespan=11\n"
    )
    system2 = config(tmp_path / "sys2.conf", "[Resource]\nTimeout=2\n[Network]\nDiscoveryTTL=7\n")
    config(home / ".flom", "[Resource]\nTimeout=3\nQuantity=4\n[Daemon]\nLifespan=33\n")
    extra = config(tmp_path / "c.conf", "[Resource]\nTimeout=5\n[Daemon]\nLifespan=55\n")
    systems = (system1, system2)
    s = settings_of([], home, systems)
    assert (s.resource_timeout, s.resource_name, s.daemon_lifespan) == (3, "S1", 33)
    assert (s.discovery_ttl, s.resource_quantity) == (7, 4)
    s = settings_of(["-c", extra], home, systems)
    assert (s.resource_timeout, s.daemon_lifespan, s.discovery_ttl) == (5, 55, 7)
    s = settings_of(["-c", extra, "-o", "9"], home, systems)
    assert (s.resource_timeout, s.daemon_lifespan) == (9, 55)
    assert settings_of([], home, (system1,)).resource_timeout == 3


def test_cli_default_value_overrides_config(tmp_path: Path, home: Path) -> None:
    """Q5 fixed: options equal to the built-in default still win over config files."""
    config(
        home / ".flom",
        "[Resource]\nTimeout=100\nIdleLifespan=300\n"
        "[Daemon]\nLifespan=1000\nUnicastPort=1\nMulticastPort=2\n"
        "[Network]\nDiscoveryAttempts=9\nDiscoveryTimeout=9\nDiscoveryTTL=9\n"
        "TcpKeepaliveTime=9\nTcpKeepaliveIntvl=9\nTcpKeepaliveProbes=9\n",
    )
    s = settings_of(
        [
            "-d", "5000", "-o", "-1", "-i", "0", "-p", "28015", "-P", "28015", "-D", "2",
            "-I", "500", "--discovery-ttl=1", "--tcp-keepalive-time=60",
            "--tcp-keepalive-intvl=10", "--tcp-keepalive-probes=6",
        ],
        home,
    )  # fmt: skip
    assert s == Settings()


def test_cli_boolean_overrides_config(tmp_path: Path, home: Path) -> None:
    config(home / ".flom", "[Resource]\nCreate=no\n[Trace]\nAppendTraceFile=yes\n")
    s = settings_of(["-e", "yes", "--append-trace-file=no"], home)
    assert s.resource_create is True and s.append_trace_file is False


def test_cli_signals_replace_config_signals(home: Path) -> None:
    config(home / ".flom", "[Monitor]\nIgnoredSignals=SIGHUP;2\n")
    assert settings_of([], home).ignored_signals == [1, 2]
    assert settings_of(["--ignore-signal=SIGTERM"], home).ignored_signals == [15]


def test_missing_groups_are_fine(tmp_path: Path, home: Path) -> None:
    """Q6 fixed: a file without [Resource]/[Daemon]/[Network] is accepted."""
    path = config(tmp_path / "flom.conf", "[Trace]\nVerbose=yes\n")
    s = settings_of(["-c", path], home)
    assert s.verbose is True
    path = config(tmp_path / "only.conf", "[Network]\nDiscoveryTTL=3\n")
    assert settings_of(["-c", path], home).discovery_ttl == 3
    assert settings_of(["-c", config(tmp_path / "empty.conf", "")], home) == Settings()


def test_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config(tmp_path / ".flom", "[Resource]\nName=FromHome\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    settings, _ = load_settings(parse_args([]), system_files=())
    assert settings.resource_name == "FromHome"


def test_system_config_files_constant() -> None:
    assert SYSTEM_CONFIG_FILES == ("/etc/flom.conf", "/usr/local/etc/flom.conf")


def test_unreadable_system_and_user_files_are_skipped(tmp_path: Path, home: Path) -> None:
    broken = config(tmp_path / "sys.conf", "this is not a key file\n")
    config(home / ".flom", "Key=before any group\n")
    missing = str(tmp_path / "missing.conf")
    assert settings_of([], home, (broken, missing, str(tmp_path))) == Settings()


def test_semantic_error_in_user_file_is_fatal(home: Path) -> None:
    path = config(home / ".flom", "[Resource]\nCreate=perhaps\n")
    error = error_of([], home)
    assert error.status == 99
    assert error.stdout == f"ERROR: invalid configuration found in file '{path}'"
    assert error.stderr == "flom_config_init: ret_cod=-5"


@pytest.mark.parametrize("content", [None, "garbage line\n", "[Unclosed\n", "\xff\xfe[T]\n"])
def test_config_file_that_cannot_be_loaded(tmp_path: Path, home: Path, content: str | None) -> None:
    path = tmp_path / "flom.conf"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    error = error_of(["-c", str(path)], home)
    assert error.status == 99
    assert error.stdout == f"ERROR: error while loading file '{path}'"
    assert error.stderr == f"flom_config_init: ret_cod={rc.G_KEY_FILE_LOAD_FROM_FILE_ERROR}"
    assert error.stderr == "flom_config_init: ret_cod=-203"


def test_config_directory_cannot_be_loaded(tmp_path: Path, home: Path) -> None:
    assert error_of(["-c", str(tmp_path)], home).stderr == "flom_config_init: ret_cod=-203"


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("[Resource]\nTimeout=abc\n",
         "Key file contains key \u201cTimeout\u201d in group \u201cResource\u201d which has a "
         "value that cannot be interpreted."),
        ("[Resource]\nTimeout=0x10\n",
         "Key file contains key \u201cTimeout\u201d in group \u201cResource\u201d which has a "
         "value that cannot be interpreted."),
        ("[Daemon]\nLifespan=\n",
         "Key file contains key \u201cLifespan\u201d in group \u201cDaemon\u201d which has a "
         "value that cannot be interpreted."),
        ("[Network]\nDiscoveryTTL=99999999999\n",
         "Key file contains key \u201cDiscoveryTTL\u201d in group \u201cNetwork\u201d which has a "
         "value that cannot be interpreted."),
        ("[Resource]\nName=1abc\n", "ERROR: '1abc' is not a valid name for a resource"),
        ("[Resource]\nName=_RESOURCE\n",
         "ERROR: '_RESOURCE' is a reserved resource name and can not be set by user"),
        ("[Resource]\nLockMode=xnly\n", ""),
        ("[Resource]\nCreate=maybe\n", ""),
        ("[Trace]\nVerbose=sure\n", ""),
        ("[Trace]\nAppendTraceFile=xyz\n", ""),
        ("[TLS]\nTlsCheckPeerId=nobody\n", ""),
        ("[Daemon]\nSocketName=/tmp/" + "y" * 103 + "\n", ""),
        ("[Daemon]\nMountPointVFS=/nonexistent/dir\n", ""),
        ("[Daemon]\nGrantPolicy=random\n", ""),
        ("[Daemon]\nSocketName=bad\\escape\n", ""),
    ],
)  # fmt: skip
def test_invalid_configuration(tmp_path: Path, home: Path, content: str, detail: str) -> None:
    path = config(tmp_path / "flom.conf", content)
    error = error_of(["-c", path], home)
    assert error.status == 99
    expected = f"ERROR: invalid configuration found in file '{path}'"
    assert error.stdout == (f"{detail}\n{expected}" if detail else expected)
    assert error.stderr == "flom_config_init: ret_cod=-5"


def test_missing_tls_file_in_config(tmp_path: Path, home: Path) -> None:
    path = config(tmp_path / "flom.conf", "[TLS]\nTlsCaCertificate=/nonexistent.pem\n")
    error = error_of(["-c", path], home)
    assert error.stdout == f"ERROR: invalid configuration found in file '{path}'"
    assert error.stderr == "flom_config_init: ret_cod=-125"


def test_config_numeric_normalisation(tmp_path: Path, home: Path) -> None:
    path = config(
        tmp_path / "flom.conf",
        "[Resource]\nTimeout=-100\nQuantity=-3\nIdleLifespan=-40\n"
        "[Daemon]\nLifespan=-1\nUnicastPort=-1234\nMulticastPort=-4321\n"
        "[Network]\nDiscoveryAttempts=0\nDiscoveryTimeout=-9\nDiscoveryTTL=-2\n"
        "TcpKeepaliveTime=-5\nTcpKeepaliveIntvl=-6\nTcpKeepaliveProbes=-7\n",
    )
    s = settings_of(["-c", path], home)
    assert (s.resource_timeout, s.resource_quantity, s.resource_idle_lifespan) == (-100, 3, 40)
    assert (s.daemon_lifespan, s.unicast_port, s.multicast_port) == (-1, 1234, 4321)
    assert (s.discovery_attempts, s.discovery_timeout, s.discovery_ttl) == (1, 9, 2)
    assert (s.tcp_keepalive_time, s.tcp_keepalive_intvl, s.tcp_keepalive_probes) == (5, 6, 7)


def test_config_zero_quantity_and_idle_lifespan_ignored(tmp_path: Path, home: Path) -> None:
    config(home / ".flom", "[Resource]\nQuantity=5\nIdleLifespan=700\n")
    path = config(tmp_path / "flom.conf", "[Resource]\nQuantity=0\nIdleLifespan=0\n")
    s = settings_of(["-c", path], home)
    assert (s.resource_quantity, s.resource_idle_lifespan) == (5, 700)


def test_key_file_syntax(tmp_path: Path, home: Path) -> None:
    path = config(
        tmp_path / "flom.conf",
        "# comment\n"
        "   # indented comment\n"
        "\n"
        "[Unknown Group]\n"
        "Name=ignored\n"
        "[Resource]\r\n"
        "  Name   =   first  \r\n"
        "name=lowercase key is another key\n"
        "Name[fr]=localised key is another key\n"
        "UnknownKey=whatever\n"
        "Timeout = 12 milliseconds\n"
        "Name=second\n"
        "[Trace] \n"
        "DaemonTraceFile=\\s/tmp/with\\ttab\\\\\n"
        "[Monitor]\n"
        "IgnoredSignals=SIGTERM; 3 ;bogus;\n"
        "[Resource]\n"
        "LockMode=pw\n",
    )
    s = settings_of(["-c", path], home)
    assert s.resource_name == "second"
    assert s.resource_timeout == 12
    assert s.lock_mode is LockMode.PW
    assert s.daemon_trace_file == " /tmp/with\ttab\\"
    assert s.ignored_signals == [3, 15]


def test_config_signal_list_escaped_separator(tmp_path: Path, home: Path) -> None:
    path = config(tmp_path / "flom.conf", "[Monitor]\nIgnoredSignals=SIGHUP\\;2;SIGINT\n")
    # "SIGHUP;2" is one (unknown) item
    assert settings_of(["-c", path], home).ignored_signals == [2]


def test_grant_policy_from_config_and_cli(tmp_path: Path, home: Path) -> None:
    config(home / ".flom", "[Daemon]\nGrantPolicy=FIFO\n")
    assert settings_of([], home).grant_policy == "fifo"
    assert settings_of(["--grant-policy", "flom"], home).grant_policy == "flom"


def test_state_file_is_stored_absolute_and_empty_means_none(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert settings_of(["--state-file", "st"], home).state_file == str(tmp_path / "st")
    config(home / ".flom", "[Daemon]\nStateFile=sub/../kept\n")
    assert settings_of([], home).state_file == str(tmp_path / "kept")
    assert settings_of(["--state-file="], home).state_file is None  # overrides the file
    config(home / ".flom", "[Daemon]\nStateFile=\n")
    assert settings_of([], home).state_file is None
