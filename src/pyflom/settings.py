"""The effective settings of one ``flom`` run or one library handle (FLoM's configuration)."""

from __future__ import annotations

import os

from .lockmodes import LockMode
from .names import RESERVED_NAME

DEFAULT_UNICAST_PORT = 28015
DEFAULT_MULTICAST_PORT = 28015
DEFAULT_DAEMON_LIFESPAN_MS = 5000
DEFAULT_LOCK_LOSS_GRACE_MS = 5000  # SIGTERM, then SIGKILL this much later
DEFAULT_ETCD_KEY_PREFIX = "/pyflom/"  # every key the etcd backend writes starts with it
DEFAULT_ETCD_LEASE_TTL_S = 15  # a gateway's lease (see pyflom.etcd.config for the rule)
UNIX_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path); a name must be shorter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, dataclass_transform

    @dataclass_transform(kw_only_default=True)
    class _Fields:
        """To type checkers, :class:`Settings` takes each setting as a keyword argument
        of its type (``Settings(unicast_adress=...)`` is an error)."""

else:

    class _Fields:
        pass


class LockLoss:
    """What ``flom`` does when the lock is lost while the command runs (the daemon died or
    the connection broke): terminate the command (default), or keep it running as FLoM."""

    TERMINATE = "terminate"
    KEEP = "keep"
    ALL = (TERMINATE, KEEP)


class GrantPolicy:
    """How a daemon orders grants: FLoM's (compatible newcomers overtake) or strict FIFO."""

    FLOM = "flom"
    FIFO = "fifo"
    ALL = (FLOM, FIFO)


def login_name() -> str:
    """Login of the current user, as FLoM uses it in the default socket name."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "nobody"


def user_label(uid: int) -> str:
    """``user 'NAME' (uid N)``, or ``uid N`` for a uid without a passwd entry."""
    try:
        import pwd

        return f"user '{pwd.getpwuid(uid).pw_name}' (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def default_socket_name() -> str:
    """``/tmp/flom-<login>``: one daemon per user by default."""
    return f"/tmp/flom-{login_name()}"


class Settings(_Fields):
    """Every setting FLoM knows, with FLoM's built-in defaults (reference table 1.2).

    ``None`` means "not set" for strings.  Times are milliseconds unless the name says
    otherwise.  pyflom's own extensions are at the end.  Defaults are class attributes;
    an instance stores only what differs (a plain class, not a dataclass: the command
    imports this module on every run and ``dataclasses`` costs more than a lock).
    """

    # [Trace]
    daemon_trace_file: str | None = None
    command_trace_file: str | None = None
    append_trace_file: bool = False
    verbose: bool = False
    # [Resource]
    resource_name: str = RESERVED_NAME
    resource_timeout: int = -1
    resource_quantity: int = 1
    lock_mode: LockMode = LockMode.EX
    resource_create: bool = True
    resource_idle_lifespan: int = 0
    # [Daemon]
    socket_name: str | None = None
    daemon_lifespan: int = DEFAULT_DAEMON_LIFESPAN_MS
    unicast_address: str | None = None
    unicast_port: int = DEFAULT_UNICAST_PORT
    multicast_address: str | None = None
    multicast_port: int = DEFAULT_MULTICAST_PORT
    mount_point_vfs: str | None = None
    # [Monitor]
    ignored_signals: list[int] = []
    # [Network]
    network_interface: str | None = None
    discovery_attempts: int = 2
    discovery_timeout: int = 500
    discovery_ttl: int = 1
    tcp_keepalive_time: int = 60
    tcp_keepalive_intvl: int = 10
    tcp_keepalive_probes: int = 6
    # [TLS]
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_ca_certificate: str | None = None
    tls_check_peer_id: bool = False
    # pyflom extensions: [Daemon]/GrantPolicy, [TLS]/TlsTraceFile, [TLS]/TlsKeylogFile,
    # [Monitor]/LockLoss, [Monitor]/LockLossGrace
    grant_policy: str = GrantPolicy.FLOM
    tls_trace_file: str | None = None
    tls_keylog_file: str | None = None
    # pyflom extension: [Daemon]/StateFile (absolute path)
    state_file: str | None = None
    lock_loss: str = LockLoss.TERMINATE
    lock_loss_grace: int = DEFAULT_LOCK_LOSS_GRACE_MS
    # pyflom extension: [Daemon]/Backend (None: the daemon keeps its locks in memory) and
    # the [Etcd] group (the etcd backend's settings; docs/ha.md)
    backend: str | None = None
    etcd_key_prefix: str = DEFAULT_ETCD_KEY_PREFIX
    etcd_lease_ttl: int = DEFAULT_ETCD_LEASE_TTL_S
    etcd_ca_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_key_file: str | None = None
    etcd_user: str | None = None
    etcd_password_file: str | None = None
    # pyflom extension: [Daemon]/AccessRules, the rules file of a started daemon (real
    # path; None: everyone may do everything, as with FLoM)
    access_rules: str | None = None
    # pyflom extension: [Daemon]/MetricsAddress, HOST:PORT where a started daemon serves
    # Prometheus metrics (None: no metrics)
    metrics_address: str | None = None

    if not TYPE_CHECKING:  # type checkers make the keyword arguments from the fields

        def __init__(self, **values):
            self.ignored_signals = []
            for name, value in values.items():
                if name not in Settings.__annotations__:
                    raise TypeError(unknown_setting(name))
                setattr(self, name, value)

    def copy(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (lists are copied, never shared)."""
        values: dict[str, Any] = dict(vars(self))
        values["ignored_signals"] = list(self.ignored_signals)
        values.update(changes)
        return Settings(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in Settings.__annotations__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        changed = ", ".join(
            f"{n}={getattr(self, n)!r}"
            for n in Settings.__annotations__
            if getattr(self, n) != getattr(Settings, n)
        )
        return f"Settings({changed})"

    def effective_socket_name(self) -> str | None:
        """The UNIX socket to use: the configured one, or the per-user default when no
        network address is configured either (FLoM's validation step)."""
        if self.socket_name:
            return self.socket_name
        if self.unicast_address or self.multicast_address:
            return None
        return default_socket_name()

    def keepalive_s(self) -> tuple[int, int, int]:
        """TCP keepalive (idle time, probe interval, probes): seconds, seconds, count."""
        return self.tcp_keepalive_time, self.tcp_keepalive_intvl, self.tcp_keepalive_probes


def unknown_setting(name: str) -> str:
    """Why ``Settings(name=...)`` is refused, with the setting meant when it is close."""
    import difflib

    close = difflib.get_close_matches(name, Settings.__annotations__, n=1)
    meant = f" (did you mean {close[0]!r}?)" if close else ""
    return f"Settings() has no setting {name!r}{meant}"
