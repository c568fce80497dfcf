"""The one table of ``flom``'s options and settings.

Every command line option is one :class:`Option` of :data:`OPTIONS` (in ``--help``
order); an option that sets a :class:`~pyflom.settings.Settings` field also names its
configuration file key, the rule its values follow, and how it reaches a daemon the
command starts.  The command line parser and its application (:mod:`pyflom.cmdline`),
the configuration files (:mod:`pyflom.configfile`), the ``-V`` dump, ``--help``, the
manual page and the shell completion (:mod:`pyflom.usage`, :mod:`pyflom.manpage`,
:mod:`pyflom.completion`), the daemon's command line (:func:`pyflom.spawn.daemon_argv`)
and the daemon's own defaults (:mod:`pyflom.daemon.__main__`) all read it.

FLoM applies the command line, reads the configuration keys and prints ``-V`` each in
its own order (visible: which of two bad values is reported, the order of warnings), so
the table keeps those orders: :data:`COMMAND_LINE_ORDER`, :data:`CONFIG_FILE_ORDER`,
:data:`VERBOSE_DUMP_ORDER`, plus :data:`DAEMON_ARGV_ORDER` and :data:`DAEMON_ONLY_ORDER`.

Imported by every ``flom`` run: plain classes and tuples, nothing else.
"""

from __future__ import annotations

from .settings import Settings

# Option kinds: what follows the option on the command line.
FLAG = 0  # nothing
STR = 1  # a string value
INT = 2  # a C int value
LIST = 3  # a string value, repeatable
OPT = 4  # a flag with an optional value, given only as --name=VALUE (pyflom extension)

# Value rules (``Option.rule``), applied to a command line value (``-x V``) and to a
# configuration value (``Key=V``); product decision Q8 of pyflom.cmdline:
AS_GIVEN = ""  # stored as given
POSITIVE = "positive"  # made positive
POSITIVE_NOT_0 = "positive, 0 is 1"  # made positive, 0 becomes 1
QUANTITY = "quantity"  # -q: negative refused with a warning, 0 ignored; Key: positive, 0 ignored
IDLE_LIFESPAN = "idle lifespan"  # -i: made positive; Key: made positive, 0 ignored
BOOLEAN = "boolean"  # yes|no words; a refused -x value is reported on stdout (FLoM)
BOOLEAN_STDERR = "boolean on stderr"  # same, a refused -x value reported on stderr
SIGNALS = "signals"  # signal names or numbers
RESOURCE_NAME = "resource name"
LOCK_MODE = "lock mode"
SOCKET_NAME = "socket name"  # short enough for sockaddr_un
DIRECTORY = "directory"  # an existing directory that can be opened
EXISTING_FILE = "existing file"  # stored as its real path
GRANT_POLICY = "grant policy"
LOCK_LOSS = "lock loss"
STATE_FILE = "state file"  # stored as an absolute path; empty is none
ABSOLUTE_ON_COMMAND_LINE = "absolute on the command line"  # -x: absolute path; Key: as given
BACKEND = "backend"  # memory (stored as None) or an etcd:// URL (stored canonically)
KEY_PREFIX = "key prefix"  # an etcd key prefix: starts with '/', stored ending with '/'
HOST_PORT = "host:port"  # HOST:PORT or [IPV6]:PORT, kept as given (the metrics endpoint)

# When a setting goes to the daemon's command line (``DaemonArg.when``).
ALWAYS = "always"
LOCAL = "local"  # the daemon serves a UNIX socket (the effective socket name)
NETWORK = "network"  # the daemon serves TCP and/or multicast discovery
TLS = "tls"  # the three TLS files are set
IF_SET = "if set"  # the setting is set (not empty)
ETCD = "etcd"  # the daemon keeps its locks in etcd (and ``needs``, if any, is set)

# How (``DaemonArg.form``).
VALUE = "value"  # --flag VALUE
ABSOLUTE = "absolute"  # --flag ABSOLUTE-PATH
SWITCH = "switch"  # --flag, when the setting is true
SOCKET = "socket"  # --flag EFFECTIVE-SOCKET-NAME
KEEPALIVE = "keepalive"  # --flag TIME,INTVL,PROBES (the three tcp_keepalive_* settings)


class DaemonArg:
    """How a setting reaches the daemon a command starts: ``flag`` (the daemon's option),
    ``when`` it is given, ``form`` of its value, the setting ``needs`` to be set (else
    the option is left out), whether the daemon falls back to the built-in default
    (``default``) when the option is missing, and the daemon's ``help`` for it."""

    __slots__ = ("default", "flag", "form", "help", "needs", "when")

    def __init__(
        self,
        flag: str,
        when: str,
        form: str = VALUE,
        needs: str = "",
        default: bool = False,
        help: str = "",
    ) -> None:
        self.flag = flag
        self.when = when
        self.form = form
        self.needs = needs
        self.default = default
        self.help = help


class Option:
    """One command line option; with ``field``, the setting it gives a value.

    ``short``/``long``/``kind``/``placeholder``/``help``: the command line and
    ``--help``.  ``target``: the :class:`pyflom.cmdline.ParsedArgs` attribute an action
    option sets (else the value goes to ``ParsedArgs.options``).  ``field``: the
    :class:`~pyflom.settings.Settings` attribute; ``group``/``key``: its configuration
    file key (and ``-V`` line); ``rule``: the value rule; ``daemon``: how it reaches a
    started daemon; ``daemon_only``: only a started daemon uses it (the command itself
    never does)."""

    __slots__ = (
        "daemon",
        "daemon_only",
        "field",
        "group",
        "help",
        "key",
        "kind",
        "long",
        "placeholder",
        "rule",
        "short",
        "target",
    )

    def __init__(
        self,
        short: str,
        long: str,
        kind: int,
        placeholder: str,
        help: str,
        field: str = "",
        group: str = "",
        key: str = "",
        rule: str = AS_GIVEN,
        daemon: DaemonArg | None = None,
        daemon_only: bool = False,
        target: str = "",
    ) -> None:
        self.short = short
        self.long = long
        self.kind = kind
        self.placeholder = placeholder
        self.help = help
        self.field = field
        self.group = group
        self.key = key
        self.rule = rule
        self.daemon = daemon
        self.daemon_only = daemon_only
        self.target = target


_O = Option
_D = DaemonArg

OPTIONS: tuple[Option, ...] = (
    _O("v", "version", FLAG, "", "Print version information and exit", target="show_version"),
    _O("V", "verbose", FLAG, "", "Print the effective configuration and progress messages",
       field="verbose", group="Trace", key="Verbose", rule=BOOLEAN),
    _O("c", "config-file", STR, "FILE", "Read FILE after the system and user config files"),
    _O("r", "resource-name", STR, "NAME", "Resource to lock (default: _RESOURCE)",
       field="resource_name", group="Resource", key="Name", rule=RESOURCE_NAME),
    _O("o", "resource-timeout", INT, "MS", "Wait at most MS ms for the lock (0 no wait, <0 ever)",
       field="resource_timeout", group="Resource", key="Timeout"),
    _O("q", "resource-quantity", INT, "N", "Units to lock on a numeric resource (default: 1)",
       field="resource_quantity", group="Resource", key="Quantity", rule=QUANTITY),
    _O("e", "resource-create", STR, "yes|no", "May this request create the resource",
       field="resource_create", group="Resource", key="Create", rule=BOOLEAN),
    _O("i", "resource-idle-lifespan", INT, "MS", "Keep the idle resource alive for MS ms",
       field="resource_idle_lifespan", group="Resource", key="IdleLifespan",
       rule=IDLE_LIFESPAN),
    _O("l", "lock-mode", STR, "MODE", "Lock mode: NL, CR, CW, PR, PW or EX (default: EX)",
       field="lock_mode", group="Resource", key="LockMode", rule=LOCK_MODE),
    _O("s", "socket-name", STR, "PATH", "UNIX socket of the daemon (default: /tmp/flom-USER)",
       field="socket_name", group="Daemon", key="SocketName", rule=SOCKET_NAME,
       daemon=_D("--socket-name", LOCAL, SOCKET, help="UNIX socket to serve")),
    _O("d", "daemon-lifespan", INT, "MS", "Idle life of a started daemon (0 none, <0 forever)",
       field="daemon_lifespan", group="Daemon", key="Lifespan",
       daemon=_D("--lifespan", ALWAYS, default=True,
               help="ms of idleness before exiting; <0 never exit (FLoM's -d)"), daemon_only=True),
    _O("a", "unicast-address", STR, "HOST", "Reach the daemon over TCP at HOST",
       field="unicast_address", group="Daemon", key="UnicastAddress",
       daemon=_D("--unicast-address", NETWORK, needs="unicast_address",
               help="serve TCP on this address (FLoM's -a)")),
    _O("p", "unicast-port", INT, "PORT", "TCP port of the daemon (default: 28015)",
       field="unicast_port", group="Daemon", key="UnicastPort", rule=POSITIVE,
       daemon=_D("--unicast-port", NETWORK, needs="unicast_address", default=True)),
    _O("A", "multicast-address", STR, "GROUP", "Discover the daemon with UDP multicast GROUP",
       field="multicast_address", group="Daemon", key="MulticastAddress",
       daemon=_D("--multicast-address", NETWORK, needs="multicast_address",
               help="answer discovery queries sent to this group (FLoM's -A)"),
       daemon_only=True),
    _O("P", "multicast-port", INT, "PORT", "UDP port of the discovery (default: 28015)",
       field="multicast_port", group="Daemon", key="MulticastPort", rule=POSITIVE,
       daemon=_D("--multicast-port", NETWORK, needs="multicast_address", default=True),
       daemon_only=True),
    _O("m", "mount-point-vfs", STR, "DIR", "Mount the daemon's status file system on DIR",
       field="mount_point_vfs", group="Daemon", key="MountPointVFS", rule=DIRECTORY,
       daemon=_D("--mount-point-vfs", IF_SET, ABSOLUTE, needs="mount_point_vfs",
               help="mount the status file system (FUSE) on this directory"),
       daemon_only=True),
    _O("n", "network-interface", STR, "IFACE", "Network interface for IPv6 link-local peers",
       field="network_interface", group="Network", key="NetworkInterface",
       daemon=_D("--network-interface", NETWORK, needs="network_interface",
               help="interface for IPv6 link-local (-n)")),
    _O("D", "discovery-attempts", INT, "N", "Multicast discovery queries (default: 2)",
       field="discovery_attempts", group="Network", key="DiscoveryAttempts",
       rule=POSITIVE_NOT_0),
    _O("I", "discovery-timeout", INT, "MS", "Wait per discovery query (default: 500)",
       field="discovery_timeout", group="Network", key="DiscoveryTimeout", rule=POSITIVE),
    _O("", "discovery-ttl", INT, "N", "Hop limit of discovery datagrams (default: 1)",
       field="discovery_ttl", group="Network", key="DiscoveryTTL", rule=POSITIVE_NOT_0),
    _O("", "tcp-keepalive-time", INT, "S", "Idle seconds before keepalive probes (default: 60)",
       field="tcp_keepalive_time", group="Network", key="TcpKeepaliveTime", rule=POSITIVE,
       daemon=_D("--tcp-keepalive", NETWORK, KEEPALIVE, default=True,
               help="TIME,INTVL,PROBES: keepalive of accepted TCP connections (s, s, count)")),
    _O("", "tcp-keepalive-intvl", INT, "S", "Seconds between keepalive probes (default: 10)",
       field="tcp_keepalive_intvl", group="Network", key="TcpKeepaliveIntvl", rule=POSITIVE),
    _O("", "tcp-keepalive-probes", INT, "N", "Unanswered probes before a drop (default: 6)",
       field="tcp_keepalive_probes", group="Network", key="TcpKeepaliveProbes", rule=POSITIVE),
    _O("", "tls-certificate", STR, "FILE", "PEM certificate of this peer",
       field="tls_certificate", group="TLS", key="TlsCertificate", rule=EXISTING_FILE,
       daemon=_D("--tls-certificate", TLS, help="PEM certificate of the daemon")),
    _O("", "tls-private-key", STR, "FILE", "PEM private key of this peer",
       field="tls_private_key", group="TLS", key="TlsPrivateKey", rule=EXISTING_FILE,
       daemon=_D("--tls-private-key", TLS, help="PEM private key of the daemon")),
    _O("", "tls-ca-certificate", STR, "FILE", "PEM certificate of the certification authority",
       field="tls_ca_certificate", group="TLS", key="TlsCaCertificate", rule=EXISTING_FILE,
       daemon=_D("--tls-ca-certificate", TLS,
               help="PEM CA certificate clients must chain to")),
    _O("", "tls-check-peer-id", STR, "yes|no", "Check the peer's unique id against its cert CN",
       field="tls_check_peer_id", group="TLS", key="TlsCheckPeerId", rule=BOOLEAN,
       daemon=_D("--tls-check-peer-id", TLS, SWITCH, help="refuse requests whose announced "
               "unique id differs from the client cert CN")),
    _O("", "ignore-signal", LIST, "SIGNAL", "Ignore SIGNAL while the command runs (repeatable)",
       field="ignored_signals", group="Monitor", key="IgnoredSignals", rule=SIGNALS),
    _O("", "signal-list", FLAG, "", "Print the signals known to --ignore-signal and exit",
       target="show_signal_list"),
    _O("t", "daemon-trace-file", STR, "FILE", "Trace file of a daemon started by this command",
       field="daemon_trace_file", group="Trace", key="DaemonTraceFile",
       daemon=_D("--trace-file", IF_SET, ABSOLUTE, needs="daemon_trace_file",
               help="daemon trace file (absolute path)"),
       daemon_only=True),
    _O("T", "command-trace-file", STR, "FILE", "Trace file of this command",
       field="command_trace_file", group="Trace", key="CommandTraceFile"),
    _O("", "append-trace-file", STR, "yes|no", "Append to trace files instead of truncating",
       field="append_trace_file", group="Trace", key="AppendTraceFile", rule=BOOLEAN_STDERR,
       daemon=_D("--append-trace-file", IF_SET, SWITCH, needs="daemon_trace_file")),
    _O("x", "quiesce-exit", FLAG, "", "Ask the daemon to exit when it becomes idle",
       target="quiesce_exit"),
    _O("X", "immediate-exit", FLAG, "", "Ask the daemon to exit immediately",
       target="immediate_exit"),
    _O("", "unique-id", FLAG, "", "Print the unique id of this host and exit",
       target="show_unique_id"),
    _O("", "debug-feature", STR, "NAME", "Run a diagnostic feature and exit",
       target="debug_feature"),
    _O("", "grant-policy", STR, "flom|fifo", "Grant order of a started daemon (default: flom)",
       field="grant_policy", group="Daemon", key="GrantPolicy", rule=GRANT_POLICY,
       daemon=_D("--grant-policy", ALWAYS, default=True), daemon_only=True),
    _O("", "tls-trace", STR, "FILE", "Append an annotated trace of the TLS records to FILE",
       field="tls_trace_file", group="TLS", key="TlsTraceFile", rule=ABSOLUTE_ON_COMMAND_LINE,
       daemon=_D("--tls-trace", TLS, needs="tls_trace_file",
               help="append an annotated TLS record trace here")),
    _O("", "tls-keylog", STR, "FILE", "Append TLS session keys to FILE (for Wireshark)",
       field="tls_keylog_file", group="TLS", key="TlsKeylogFile", rule=ABSOLUTE_ON_COMMAND_LINE,
       daemon=_D("--tls-keylog", TLS, needs="tls_keylog_file",
               help="append TLS session keys here (Wireshark)")),
    _O("", "state-file", STR, "FILE", "Keep sequences and generations of a started daemon here",
       field="state_file", group="Daemon", key="StateFile", rule=STATE_FILE,
       daemon=_D("--state-file", IF_SET, needs="state_file",
               help="keep sequence counters and generations here across restarts"),
       daemon_only=True),
    _O("", "lock-loss", STR, "terminate|keep", "If the lock is lost: end the command (default)",
       field="lock_loss", group="Monitor", key="LockLoss", rule=LOCK_LOSS),
    _O("", "lock-loss-grace", INT, "MS", "SIGKILL the command MS ms after SIGTERM (default 5000)",
       field="lock_loss_grace", group="Monitor", key="LockLossGrace", rule=POSITIVE,
       daemon=_D("--lock-loss-grace", ETCD, default=True,
               help="the clients' lock-loss grace (ms): the etcd lease must outlast it")),
    _O("", "backend", STR, "URL", "Where a started daemon keeps locks: memory or etcd://H:P,...",
       field="backend", group="Daemon", key="Backend", rule=BACKEND,
       daemon=_D("--backend", IF_SET, needs="backend",
               help="keep the locks in etcd: etcd://HOST[:PORT],... (default: in memory)"),
       daemon_only=True),
    _O("", "etcd-key-prefix", STR, "PREFIX", "Prefix of the etcd keys (default: /pyflom/)",
       field="etcd_key_prefix", group="Etcd", key="KeyPrefix", rule=KEY_PREFIX,
       daemon=_D("--etcd-key-prefix", ETCD, default=True), daemon_only=True),
    _O("", "etcd-lease-ttl", INT, "S", "Lease TTL of a gateway in etcd (default: 15)",
       field="etcd_lease_ttl", group="Etcd", key="LeaseTTL", rule=POSITIVE_NOT_0,
       daemon=_D("--etcd-lease-ttl", ETCD, default=True), daemon_only=True),
    _O("", "etcd-ca-file", STR, "FILE", "PEM CA of the etcd members (TLS to etcd)",
       field="etcd_ca_file", group="Etcd", key="CaFile", rule=EXISTING_FILE,
       daemon=_D("--etcd-ca-file", ETCD, needs="etcd_ca_file"), daemon_only=True),
    _O("", "etcd-cert-file", STR, "FILE", "PEM client certificate for etcd",
       field="etcd_cert_file", group="Etcd", key="CertFile", rule=EXISTING_FILE,
       daemon=_D("--etcd-cert-file", ETCD, needs="etcd_cert_file"), daemon_only=True),
    _O("", "etcd-key-file", STR, "FILE", "PEM private key of the etcd client certificate",
       field="etcd_key_file", group="Etcd", key="KeyFile", rule=EXISTING_FILE,
       daemon=_D("--etcd-key-file", ETCD, needs="etcd_key_file"), daemon_only=True),
    _O("", "etcd-user", STR, "USER", "etcd user of the gateway (with --etcd-password-file)",
       field="etcd_user", group="Etcd", key="User",
       daemon=_D("--etcd-user", ETCD, needs="etcd_user"), daemon_only=True),
    _O("", "etcd-password-file", STR, "FILE", "File holding the etcd user's password",
       field="etcd_password_file", group="Etcd", key="PasswordFile", rule=EXISTING_FILE,
       daemon=_D("--etcd-password-file", ETCD, needs="etcd_password_file"), daemon_only=True),
    _O("", "access-rules", STR, "FILE", "Who may lock, see the status, stop (started daemon)",
       field="access_rules", group="Daemon", key="AccessRules", rule=EXISTING_FILE,
       daemon=_D("--access-rules", IF_SET, needs="access_rules",
               help="grant locking (by resource), status and stop only as this file's rules "
               "say (docs/access.md; default: everyone may do everything)"),
       daemon_only=True),
    _O("", "metrics", STR, "HOST:PORT", "Serve Prometheus metrics at HOST:PORT (started daemon)",
       field="metrics_address", group="Daemon", key="MetricsAddress", rule=HOST_PORT,
       daemon=_D("--metrics", IF_SET, needs="metrics_address",
               help="serve Prometheus metrics over HTTP at HOST:PORT ([::1]:9100 for IPv6; "
               "needs pyflom[metrics]; docs/service.md)"),
       daemon_only=True),
    _O("", "status", OPT, "table|json", "Show who holds and who waits (with -r: one resource)",
       target="status_format"),
)  # fmt: skip

BY_LONG: dict[str, Option] = {option.long: option for option in OPTIONS}
"""The options by long name."""
BY_SHORT: dict[str, Option] = {option.short: option for option in OPTIONS if option.short}
"""The options by short name."""
BY_FIELD: dict[str, Option] = {option.field: option for option in OPTIONS if option.field}
"""The options that give a setting, by :class:`~pyflom.settings.Settings` field."""


def _in_order(fields: str) -> tuple[Option, ...]:
    return tuple(BY_FIELD[field] for field in fields.split())


_ETCD_FIELDS = (
    "backend etcd_key_prefix etcd_lease_ttl etcd_ca_file etcd_cert_file etcd_key_file "
    "etcd_user etcd_password_file"
)


COMMAND_LINE_ORDER = _in_order(
    "daemon_trace_file command_trace_file verbose resource_name resource_quantity "
    "resource_timeout lock_mode resource_create resource_idle_lifespan socket_name "
    "daemon_lifespan unicast_address unicast_port multicast_address multicast_port "
    "mount_point_vfs network_interface discovery_attempts discovery_timeout discovery_ttl "
    "tcp_keepalive_time tcp_keepalive_intvl tcp_keepalive_probes ignored_signals "
    "tls_certificate tls_private_key tls_ca_certificate tls_check_peer_id append_trace_file "
    "grant_policy lock_loss lock_loss_grace tls_trace_file tls_keylog_file state_file "
    + _ETCD_FIELDS
    + " access_rules metrics_address"
)
"""The order in which the command line values are applied (FLoM's, then pyflom's)."""

CONFIG_FILE_ORDER = _in_order(
    "daemon_trace_file command_trace_file append_trace_file verbose resource_name "
    "resource_timeout resource_quantity lock_mode resource_create resource_idle_lifespan "
    "socket_name daemon_lifespan unicast_address unicast_port multicast_address "
    "multicast_port mount_point_vfs grant_policy state_file lock_loss lock_loss_grace "
    "tls_trace_file tls_keylog_file ignored_signals network_interface discovery_attempts "
    "discovery_timeout discovery_ttl tcp_keepalive_time tcp_keepalive_intvl "
    "tcp_keepalive_probes tls_certificate tls_private_key tls_ca_certificate "
    "tls_check_peer_id " + _ETCD_FIELDS + " access_rules metrics_address"
)
"""The order in which a configuration file's keys are read (reference 2.2)."""

VERBOSE_DUMP_ORDER = _in_order(
    "daemon_trace_file command_trace_file append_trace_file verbose resource_name "
    "resource_timeout resource_quantity lock_mode resource_create resource_idle_lifespan "
    "socket_name daemon_lifespan unicast_address unicast_port multicast_address "
    "multicast_port mount_point_vfs ignored_signals network_interface discovery_attempts "
    "discovery_timeout discovery_ttl tcp_keepalive_time tcp_keepalive_intvl "
    "tcp_keepalive_probes tls_certificate tls_private_key tls_ca_certificate "
    "tls_check_peer_id grant_policy state_file lock_loss lock_loss_grace "
    + _ETCD_FIELDS
    + " access_rules metrics_address"
)
"""The lines of ``-V`` (reference 1.7: FLoM's, then pyflom's); the TLS trace and key log
files are not shown."""

DAEMON_ARGV_ORDER = _in_order(
    "daemon_lifespan grant_policy socket_name unicast_address unicast_port "
    "multicast_address multicast_port network_interface tcp_keepalive_time tls_certificate "
    "tls_private_key tls_ca_certificate tls_check_peer_id tls_trace_file tls_keylog_file "
    "state_file mount_point_vfs daemon_trace_file append_trace_file lock_loss_grace "
    + _ETCD_FIELDS
    + " access_rules metrics_address"
)
"""The settings a started daemon gets, in the order of its command line."""

DAEMON_ONLY_ORDER = _in_order(
    "daemon_lifespan grant_policy state_file mount_point_vfs daemon_trace_file "
    "multicast_address multicast_port " + _ETCD_FIELDS + " access_rules metrics_address"
)
"""The settings only a started daemon uses, in the order they are reported as ignored
when the daemon was already running."""


def daemon_option(flag: str) -> Option:
    """The option whose setting reaches a started daemon as ``flag``."""
    for option in DAEMON_ARGV_ORDER:
        if option.daemon is not None and option.daemon.flag == flag:
            return option
    raise KeyError(flag)


def daemon_default(flag: str) -> object:
    """What the daemon takes when its command line lacks ``flag``: the built-in default
    of the setting (of the three keepalive settings for ``--tcp-keepalive``)."""
    option = daemon_option(flag)
    if option.daemon is None or not option.daemon.default:
        raise KeyError(flag)
    if option.daemon.form == KEEPALIVE:
        return Settings().keepalive_s()
    return getattr(Settings, option.field)
