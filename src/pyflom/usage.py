"""Texts the command prints on request: help, version, signal list, the ``-V`` dump.

Kept out of :mod:`pyflom.cmdline` so that an ordinary run does not load them.
"""

from __future__ import annotations

from .cmdline import _NONE, _OPT, _OPTIONS, SIGNAL_NAMES
from .settings import Settings


def verbose_dump(settings: Settings) -> str:
    """The ``-V`` configuration dump (reference 1.7), one ``\\n``-terminated line per
    setting, then pyflom's own: ``[Daemon]/GrantPolicy``, ``[Daemon]/StateFile``,
    ``[Monitor]/LockLoss``, ``[Monitor]/LockLossGrace``."""
    s = settings

    def q(value: str | None) -> str:
        return f"'{'' if value is None else value}'"

    signals = ";".join(SIGNAL_NAMES[n] for n in s.ignored_signals if n in SIGNAL_NAMES)
    lines = (
        f"[Trace]/DaemonTraceFile={q(s.daemon_trace_file)}",
        f"[Trace]/CommandTraceFile={q(s.command_trace_file)}",
        f"[Trace]/AppendTraceFile={int(s.append_trace_file)}",
        f"[Trace]/Verbose={int(s.verbose)}",
        f"[Resource]/Name={q(s.resource_name)}",
        f"[Resource]/Timeout={s.resource_timeout}",
        f"[Resource]/Quantity={s.resource_quantity}",
        f"[Resource]/LockMode={int(s.lock_mode)}",
        f"[Resource]/Create={int(s.resource_create)}",
        f"[Resource]/IdleLifespan={s.resource_idle_lifespan}",
        f"[Daemon]/SocketName={q(s.socket_name)}",
        f"[Daemon]/Lifespan={s.daemon_lifespan}",
        f"[Daemon]/UnicastAddress={q(s.unicast_address)}",
        f"[Daemon]/UnicastPort={s.unicast_port}",
        f"[Daemon]/MulticastAddress={q(s.multicast_address)}",
        f"[Daemon]/MulticastPort={s.multicast_port}",
        f"[Daemon]/MountPointVFS={q(s.mount_point_vfs)}",
        f"[Monitor]/IgnoredSignals={q(signals)}",
        f"[Network]/NetworkInterface={q(s.network_interface)}",
        f"[Network]/DiscoveryAttempts={s.discovery_attempts}",
        f"[Network]/DiscoveryTimeout={s.discovery_timeout}",
        f"[Network]/DiscoveryTTL={s.discovery_ttl}",
        f"[Network]/TcpKeepaliveTime={s.tcp_keepalive_time}",
        f"[Network]/TcpKeepaliveIntvl={s.tcp_keepalive_intvl}",
        f"[Network]/TcpKeepaliveProbes={s.tcp_keepalive_probes}",
        f"[TLS]/TlsCertificate={q(s.tls_certificate)}",
        f"[TLS]/TlsPrivateKey={q(s.tls_private_key)}",
        f"[TLS]/TlsCaCertificate={q(s.tls_ca_certificate)}",
        f"[TLS]/TlsCheckPeerId={int(s.tls_check_peer_id)}",
        f"[Daemon]/GrantPolicy={q(s.grant_policy)}",
        f"[Daemon]/StateFile={q(s.state_file)}",
        f"[Monitor]/LockLoss={q(s.lock_loss)}",
        f"[Monitor]/LockLossGrace={s.lock_loss_grace}",
    )
    return "\n".join(lines) + "\n"


def help_text() -> str:
    """The GLib-style ``--help`` text (usage line, help options, application options)."""
    rows: list[tuple[str, str]] = [("-h, --help", "Show help options")]
    for short, long, kind, placeholder, description in _OPTIONS:
        left = f"-{short}, --{long}" if short else f"    --{long}"
        if kind == _OPT:
            left += f"[={placeholder}]"
        elif kind != _NONE:
            left += f"={placeholder}"
        rows.append((left, description))
    width = max(len(left) for left, _ in rows) + 4
    lines = [
        "Usage:",
        "  flom [OPTION\u2026] [-- command to execute]",
        "",
        "Help Options:",
        f"  {rows[0][0]:<{width}}{rows[0][1]}",
        "",
        "Application Options:",
    ]
    lines += [f"  {left:<{width}}{description}" for left, description in rows[1:]]
    return "\n".join(lines) + "\n"


def _version() -> str:
    try:
        from . import __version__ as version
    except ImportError:
        return "0.1.0"
    return str(version) or "0.1.0"


def version_text() -> str:
    """The ``-v`` block: pyflom's name, licence and version (no trailing newline)."""
    return "\n".join(
        (
            "pyflom: Free Lock Manager (FLoM 1.7.2 compatible, in Python)",
            "Copyright (c) the pyflom team",
            "License: GPL (GNU General Public License) version 2 or later",
            f"Package name: pyflom; package version: {_version()}; compatible with: FLoM 1.7.2",
            "TLS supported protocol(s): those of the Python ssl module",
        )
    )


def signal_list_text() -> str:
    """The ``--signal-list`` table: ``N) NAME<TAB>``, a newline after every fourth entry
    and one at the end (reference 1.8)."""
    parts: list[str] = []
    for number, name in SIGNAL_NAMES.items():
        parts.append(f"{number}) {name}\t")
        if number % 4 == 0:
            parts.append("\n")
    parts.append("\n")
    return "".join(parts)
