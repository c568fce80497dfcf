"""The option table (issue 12, item 3): every setting has one entry, and each entry
round-trips command line -> Settings -> ``-V`` line, configuration key -> Settings,
and Settings -> daemon command line -> the daemon's arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyflom import options as table
from pyflom.cmdline import configured_settings, load_settings, parse_args
from pyflom.daemon.__main__ import parse_args as daemon_parse_args
from pyflom.daemon.server import DaemonOptions
from pyflom.lockmodes import LockMode
from pyflom.settings import Settings
from pyflom.spawn import DAEMON_DEFAULTS, daemon_argv
from pyflom.usage import verbose_dump

SETTING_OPTIONS = [option for option in table.OPTIONS if option.field]


def _samples(tmp_path: Path) -> dict[str, tuple[str, object, str]]:
    """long option -> (command line value, setting, -V value), all unlike the defaults."""
    pem = tmp_path / "x.pem"
    pem.write_text("not really a certificate\n")
    real = str(pem.resolve())
    return {
        "verbose": ("", True, "1"),
        "resource-name": ("lockme", "lockme", "'lockme'"),
        "resource-timeout": ("-7", -7, "-7"),
        "resource-quantity": ("3", 3, "3"),
        "resource-create": ("no", False, "0"),
        "resource-idle-lifespan": ("-40", 40, "40"),
        "lock-mode": ("PR", LockMode.PR, str(int(LockMode.PR))),
        "socket-name": ("/tmp/sock-x", "/tmp/sock-x", "'/tmp/sock-x'"),
        "daemon-lifespan": ("-1", -1, "-1"),
        "unicast-address": ("127.0.0.1", "127.0.0.1", "'127.0.0.1'"),
        "unicast-port": ("-2000", 2000, "2000"),
        "multicast-address": ("224.0.0.1", "224.0.0.1", "'224.0.0.1'"),
        "multicast-port": ("3000", 3000, "3000"),
        "mount-point-vfs": (str(tmp_path), str(tmp_path), f"'{tmp_path}'"),
        "network-interface": ("lo", "lo", "'lo'"),
        "discovery-attempts": ("0", 1, "1"),
        "discovery-timeout": ("-9", 9, "9"),
        "discovery-ttl": ("-4", 4, "4"),
        "tcp-keepalive-time": ("5", 5, "5"),
        "tcp-keepalive-intvl": ("6", 6, "6"),
        "tcp-keepalive-probes": ("7", 7, "7"),
        "tls-certificate": (str(pem), real, f"'{real}'"),
        "tls-private-key": (str(pem), real, f"'{real}'"),
        "tls-ca-certificate": (str(pem), real, f"'{real}'"),
        "tls-check-peer-id": ("yes", True, "1"),
        "ignore-signal": ("SIGHUP", [1], "'SIGHUP'"),
        "daemon-trace-file": ("/tmp/d.trace", "/tmp/d.trace", "'/tmp/d.trace'"),
        "command-trace-file": ("/tmp/c.trace", "/tmp/c.trace", "'/tmp/c.trace'"),
        "append-trace-file": ("yes", True, "1"),
        "grant-policy": ("FIFO", "fifo", "'fifo'"),
        "tls-trace": ("/tmp/t.trace", "/tmp/t.trace", ""),
        "tls-keylog": ("/tmp/k.log", "/tmp/k.log", ""),
        "state-file": ("/tmp/s.state", "/tmp/s.state", "'/tmp/s.state'"),
        "lock-loss": ("keep", "keep", "'keep'"),
        "lock-loss-grace": ("-100", 100, "100"),
        "backend": (
            "etcd://h1,[::1]:2380",
            "etcd://h1:2379,[::1]:2380",
            "'etcd://h1:2379,[::1]:2380'",
        ),
        "etcd-key-prefix": ("/locks", "/locks/", "'/locks/'"),
        "etcd-lease-ttl": ("-20", 20, "20"),
        "etcd-ca-file": (str(pem), real, f"'{real}'"),
        "etcd-cert-file": (str(pem), real, f"'{real}'"),
        "etcd-key-file": (str(pem), real, f"'{real}'"),
        "etcd-user": ("pyflom", "pyflom", "'pyflom'"),
        "etcd-password-file": (str(pem), real, f"'{real}'"),
        "access-rules": (str(pem), real, f"'{real}'"),
        "metrics": ("[::1]:9100", "[::1]:9100", "'[::1]:9100'"),
    }


def test_one_entry_per_setting_and_every_order_is_complete() -> None:
    fields = [option.field for option in SETTING_OPTIONS]
    assert sorted(fields) == sorted(Settings.__annotations__)
    assert sorted(o.field for o in table.COMMAND_LINE_ORDER) == sorted(fields)
    assert sorted(o.field for o in table.CONFIG_FILE_ORDER) == sorted(fields)
    not_shown = {"tls_trace_file", "tls_keylog_file"}
    assert sorted(o.field for o in table.VERBOSE_DUMP_ORDER) == sorted(set(fields) - not_shown)
    assert {o.field for o in table.DAEMON_ARGV_ORDER} == {
        o.field for o in SETTING_OPTIONS if o.daemon is not None
    }
    assert {o.field for o in table.DAEMON_ONLY_ORDER} == {
        o.field for o in SETTING_OPTIONS if o.daemon_only
    }
    keys = [(o.group, o.key) for o in SETTING_OPTIONS]
    assert len(set(keys)) == len(keys)


def test_the_daemon_defaults_are_the_built_in_defaults() -> None:
    assert {
        "--lifespan": str(Settings.daemon_lifespan),
        "--grant-policy": Settings.grant_policy,
        "--unicast-port": str(Settings.unicast_port),
        "--multicast-port": str(Settings.multicast_port),
        "--tcp-keepalive": "60,10,6",
        "--lock-loss-grace": str(Settings.lock_loss_grace),
        "--etcd-key-prefix": Settings.etcd_key_prefix,
        "--etcd-lease-ttl": str(Settings.etcd_lease_ttl),
    } == DAEMON_DEFAULTS
    args = daemon_parse_args(["--socket-name", "/tmp/x"])
    assert args.lifespan == Settings.daemon_lifespan
    assert args.grant_policy == Settings.grant_policy
    assert args.unicast_port == Settings.unicast_port
    assert args.multicast_port == Settings.multicast_port
    assert args.tcp_keepalive == Settings().keepalive_s()


@pytest.mark.parametrize("option", SETTING_OPTIONS, ids=lambda o: o.long)
def test_command_line_config_key_and_dump_agree(
    option: table.Option, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    text, setting, shown = _samples(tmp_path)[option.long]
    args = [f"--{option.long}"] + ([] if option.kind == table.FLAG else [text])
    settings, _ = load_settings(parse_args(args), system_files=(), home=str(home))
    assert getattr(settings, option.field) == setting
    assert settings.copy(**{option.field: getattr(Settings, option.field)}) == Settings()
    line = f"[{option.group}]/{option.key}={shown}\n"
    assert (line in verbose_dump(settings)) == (option in table.VERBOSE_DUMP_ORDER)

    config = tmp_path / "flom.conf"
    value = "yes" if option.kind == table.FLAG else text
    config.write_text(f"[{option.group}]\n{option.key}={value}\n")
    from_file, warnings = configured_settings(str(config), system_files=(), home=str(home))
    assert warnings == []
    if option.rule == table.ABSOLUTE_ON_COMMAND_LINE:
        assert getattr(from_file, option.field) == text
    else:
        assert getattr(from_file, option.field) == setting


@pytest.mark.parametrize(
    "option", [o for o in SETTING_OPTIONS if o.daemon is not None], ids=lambda o: o.long
)
def test_the_daemon_gets_the_setting(option: table.Option, tmp_path: Path) -> None:
    _text, setting, _shown = _samples(tmp_path)[option.long]
    assert option.daemon is not None
    values: dict[str, object] = {option.field: setting}
    if option.daemon.when == table.NETWORK:
        values.update(unicast_address="127.0.0.1", multicast_address="224.0.0.1")
    if option.daemon.when == table.ETCD:
        values.setdefault("backend", "etcd://127.0.0.1:2379")
    if option.daemon.when == table.TLS:
        pem = str(tmp_path / "x.pem")
        values.update(tls_certificate=pem, tls_private_key=pem, tls_ca_certificate=pem)
    if option.daemon.needs and option.daemon.needs != option.field:
        values.setdefault(option.daemon.needs, "/tmp/needed")
    settings = Settings(**values)
    argv = daemon_argv(settings, 5)
    assert argv[1:3] == ["-m", "pyflom.daemon"]
    assert option.daemon.flag in argv
    args = daemon_parse_args(argv[3:])
    got = getattr(args, option.daemon.flag[2:].replace("-", "_"))
    if option.daemon.form == table.KEEPALIVE:
        assert got == settings.keepalive_s()
    elif option.daemon.form == table.SOCKET:
        assert got == settings.effective_socket_name()
    else:
        assert got == setting


def test_daemon_options_take_the_tables_defaults() -> None:
    options, settings = DaemonOptions(), Settings()
    assert options.lifespan_ms == settings.daemon_lifespan
    assert options.tcp_keepalive_s == settings.keepalive_s()
    assert options.grant_policy == settings.grant_policy
    assert (options.unicast_port, options.multicast_port) == (
        settings.unicast_port,
        settings.multicast_port,
    )
