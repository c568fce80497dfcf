"""Open the etcd client of a gateway and check, at start, that the cluster is usable.

:func:`connect` asks every endpoint on its own for its status (a local answer: no
quorum needed), so that a problem is reported with the endpoint it concerns: connection
refused, not an etcd client port, TLS trouble, no leader. Then it logs in (User and
Password) and makes one linearizable read through the multi-endpoint client: that read
needs a quorum. Every step has a deadline: a cluster without quorum gives an
:class:`EtcdSetupError` after ``dial_timeout_s``, never a hang.

Notes on etcd3aio 0.3 for the backend (measured against etcd 3.4, docs/ha.md has more):

- Pass ``timeout=`` to every call: the default is no deadline, and without quorum a request
  waits forever. ``timeout`` bounds the whole call (``asyncio.timeout``: the error is the
  builtin ``TimeoutError``) and is also each attempt's gRPC deadline.
- UNAVAILABLE is retried by the library (``max_attempts``, default 3), writes included:
  keep writes idempotent (``txn_compare_create_revision(key, 0)`` on a unique key) or pass
  ``max_attempts=1``. A timed-out write may still commit later.
- A request in flight when the leader dies is dropped by etcd and only ends at its
  deadline; a SIGSTOPped member keeps getting its round-robin share of requests, each
  waiting for its deadline. Use short per-attempt deadlines and retry.
- There is no helper for a mod_revision compare: build ``Compare(target=Compare.MOD, ...)``
  (``from etcd3aio._protobuf import Compare``). A compare over a key range sees only the
  keys that exist: deletions (and lease expiry) after revision R leave "mod < R+1" true.
- ``lease.keep_alive_context`` never reports that renewals stopped (a stopped member makes
  its stream hang): track the time of the last successful renewal yourself.
- The client joins the endpoints into one ``ipv4:`` gRPC target (IPv4 literals only): this
  module resolves host names itself and sets the target (IPv6 included).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import EtcdConfig, format_endpoint

if TYPE_CHECKING:
    from etcd3aio import Etcd3Client

log = logging.getLogger(__name__)

INSTALL_HINT = "install the etcd client with: pip install 'pyflom[etcd]'"


class EtcdSetupError(Exception):
    """The etcd cluster cannot be used: the message names the endpoint(s), says what
    happened and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Target:
    """One endpoint: as configured, and the address gRPC dials."""

    name: str  # host:port as the user wrote it
    address: str  # IP literal:port ([IPv6]:port)
    ipv6: bool


@dataclass
class _Probe:
    """What one endpoint said about itself."""

    target: _Target
    status: Any = None  # etcd StatusResponse
    problem: str | None = None


def _import_client() -> Any:
    try:
        import etcd3aio
    except ImportError as exc:
        raise EtcdSetupError(f"the etcd backend needs etcd3aio ({exc}): {INSTALL_HINT}") from None
    return etcd3aio


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise EtcdSetupError(
            f"cannot read the etcd {what} '{path}': {exc.strerror or exc}; "
            f"check [Etcd]/{what.replace(' ', '')} and the file's permissions"
        ) from None


async def _resolve(config: EtcdConfig) -> list[_Target]:
    """Each endpoint as an IP address gRPC can dial (IPv4 if every endpoint has one)."""
    loop = asyncio.get_running_loop()
    found: list[tuple[str, list[str], list[str]]] = []
    for endpoint in config.endpoints:
        host, port = endpoint
        name = format_endpoint(endpoint)
        try:
            async with asyncio.timeout(config.dial_timeout_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            why = "no answer from the resolver" if isinstance(exc, TimeoutError) else exc
            raise EtcdSetupError(
                f"etcd endpoint {name}: cannot resolve host name '{host}' ({why}); "
                "check the name in the etcd:// URL or [Etcd]/Endpoints"
            ) from None
        v4 = [str(info[4][0]) for info in infos if info[0] == socket.AF_INET]
        v6 = [str(info[4][0]) for info in infos if info[0] == socket.AF_INET6]
        found.append((name, v4, v6))
    if all(v4 for _, v4, _ in found):
        return [
            _Target(name, f"{v4[0]}:{port}", False)
            for (name, v4, _), (_, port) in zip(found, config.endpoints, strict=True)
        ]
    if all(v6 for _, _, v6 in found):
        return [
            _Target(name, f"[{v6[0]}]:{port}", True)
            for (name, _, v6), (_, port) in zip(found, config.endpoints, strict=True)
        ]
    raise EtcdSetupError(
        f"etcd endpoints {config.url}: some have only IPv4 addresses, others only IPv6; "
        "the etcd client cannot mix both: list members of one address family"
    )


def _client(etcd3aio: Any, config: EtcdConfig, targets: Sequence[_Target]) -> Etcd3Client:
    """An unconnected client dialling ``targets`` (round robin, one gRPC channel)."""
    tls: dict[str, Any] = {}
    if config.tls:
        tls = {
            "ca_cert": _read(config.ca_file, "Ca File"),
            "cert_chain": _read(config.cert_file, "Cert File"),
            "cert_key": _read(config.key_file, "Key File"),
            # One gRPC channel over IP addresses has no host name to check the
            # certificates against: the first endpoint's host, as configured.
            "tls_server_name": config.endpoints[0][0],
        }
    client: Etcd3Client = etcd3aio.Etcd3Client(
        [t.address for t in targets], rpc_max_attempts=1, **tls
    )
    manager = getattr(client, "_manager", None)
    if manager is None or not hasattr(manager, "target"):  # etcd3aio changed its insides
        raise EtcdSetupError(
            f"this etcd3aio version ({etcd3aio.__version__}) is not supported: "
            "pip install 'etcd3aio>=0.3,<0.4'"
        )
    scheme = "ipv6" if targets[0].ipv6 else "ipv4"
    manager.target = f"{scheme}:{','.join(t.address for t in targets)}"
    # A stopped member (SIGSTOP, a frozen host) keeps its TCP connection and its share
    # of round-robin requests, each lost until its deadline, until gRPC finds it dead
    # by keepalive: ping every 5 s (the least interval etcd accepts), 1 s to answer
    # (etcd3aio's 10 s + 5 s delayed hand-offs to other gateways by 10 to 14 s).
    manager.grpc_options = [
        (key, value)
        for key, value in getattr(manager, "grpc_options", [])
        if key not in ("grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms")
    ] + [("grpc.keepalive_time_ms", 5000), ("grpc.keepalive_timeout_ms", 1000)]
    return client


def explain(exc: BaseException, config: EtcdConfig, timeout: float) -> str:
    """What a failed etcd request means for the user, and what to do."""
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {timeout:g} s (a stopped etcd, a firewall dropping packets, "
            "or a port that is not an etcd client port)"
        )
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    details = getattr(cause, "details", None)
    text = str(details() if callable(details) else exc)
    low = text.lower()
    if "connection refused" in low:
        return (
            "connection refused: nothing listens there; is etcd running, and is this its "
            "client port (--listen-client-urls, 2379 by default; 2380 is the peer port)?"
        )
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return (
            f"its TLS certificate is not trusted: it is not signed by the CA in CaFile "
            f"'{config.ca_file}' (or it has expired); set [Etcd]/CaFile to the CA that "
            "signed the etcd members' certificates"
        )
    if "peer name" in low or "hostname" in low or "subject alternative" in low:
        return (
            f"its TLS certificate is not issued for '{config.endpoints[0][0]}' (the name "
            "pyflom checks for every member): list the members by a name or address "
            f"their certificates carry ({text})"
        )
    if config.tls and ("wrong_version_number" in low or "ssl" in low or "handshake" in low):
        return (
            "the TLS handshake failed: this etcd may not use TLS on its client port (then "
            "remove [Etcd]/CaFile), or wants a client certificate ([Etcd]/CertFile and "
            f"KeyFile) ({text})"
        )
    if "http1" in low or "http/2" in low or "settings frame" in low:
        return (
            "it does not speak gRPC: not an etcd client port (2379 by default), or an "
            f"etcd that expects TLS while pyflom speaks plain (set [Etcd]/CaFile) ({text})"
        )
    if "socket closed" in low or "connection reset" in low:
        hint = (
            "or an etcd that expects a client certificate ([Etcd]/CertFile and KeyFile)"
            if config.tls
            else "or an etcd that expects TLS (set [Etcd]/CaFile)"
        )
        return f"it closed the connection at once: not an etcd client port, {hint}"
    if "authentication failed" in low or "invalid user" in low:
        return (
            f"etcd refused user '{config.user}': wrong name or password; check "
            "[Etcd]/User and [Etcd]/Password"
        )
    if "authentication is not enabled" in low:
        return (
            "[Etcd]/User is set but this etcd has no authentication enabled: remove "
            "User and Password, or enable authentication (etcdctl auth enable)"
        )
    if "user name is empty" in low or "token" in low or "unauthenticated" in low:
        return f"this etcd requires authentication: set [Etcd]/User and [Etcd]/Password ({text})"
    if "permission denied" in low:
        return (
            f"etcd user '{config.user}' may not use the key prefix '{config.key_prefix}': "
            f"grant it read and write on that prefix ({text})"
        )
    return text


async def _probe(etcd3aio: Any, config: EtcdConfig, target: _Target) -> _Probe:
    """Status of one endpoint, asked to it alone."""
    client = _client(etcd3aio, config, [target])
    try:
        await client.connect()
        assert client.maintenance is not None
        status = await client.maintenance.status(timeout=config.dial_timeout_s, max_attempts=1)
        return _Probe(target, status=status)
    except Exception as exc:
        return _Probe(target, problem=explain(exc, config, config.dial_timeout_s))
    finally:
        await client.close()


def _report(probes: Sequence[_Probe], failed_only: bool = False) -> str:
    return "".join(
        f"\n  {p.target.name}: {p.problem or 'answers'}"
        + ("" if p.problem or int(p.status.leader) else " but knows no leader")
        for p in probes
        if not (failed_only and p.problem is None)
    )


async def connect(config: EtcdConfig, *, warn: Callable[[str], None] | None = None) -> Etcd3Client:
    """A connected etcd3aio client over every endpoint of ``config``, after checking that
    the cluster is etcd, is reachable as configured (TLS, login) and has a quorum.

    Endpoints that fail while others work are reported through ``warn`` (default: this
    module's logger). Raises :class:`EtcdSetupError` otherwise, within about
    ``dial_timeout_s`` per step; never hangs. With User and Password the client carries
    a login token: the caller must keep it fresh (``client.token_refresher``).
    """
    warn = warn if warn is not None else log.warning
    etcd3aio = _import_client()
    targets = await _resolve(config)
    probes = await asyncio.gather(*(_probe(etcd3aio, config, t) for t in targets))
    answered = [p for p in probes if p.status is not None]
    if not answered:
        raise EtcdSetupError(f"cannot use etcd at {config.url}:{_report(probes)}")
    clusters = {int(p.status.header.cluster_id) for p in answered}
    if len(clusters) > 1:
        listing = "".join(
            f"\n  {p.target.name}: cluster {int(p.status.header.cluster_id):x}" for p in answered
        )
        raise EtcdSetupError(
            f"the etcd endpoints {config.url} belong to different clusters:{listing}\n"
            "list the client URLs of the members of one cluster"
        )
    if len(answered) < len(probes):
        warn(f"etcd at {config.url}: some endpoints cannot be used:{_report(probes, True)}")
    client = _client(etcd3aio, config, [p.target for p in answered])
    try:
        await client.connect()
        if config.user:
            await _log_in(client, config)
        await _check_quorum(client, config, probes)
    except BaseException:
        await client.close()
        raise
    return client


async def _log_in(client: Etcd3Client, config: EtcdConfig) -> None:
    assert client.auth is not None and config.user is not None
    try:
        answer = await client.auth.authenticate(
            config.user, config.password or "", timeout=config.dial_timeout_s
        )
    except Exception as exc:
        raise EtcdSetupError(
            f"cannot log in to etcd at {config.url}: {explain(exc, config, config.dial_timeout_s)}"
        ) from None
    client.set_token(answer.token)


async def _check_quorum(client: Etcd3Client, config: EtcdConfig, probes: Sequence[_Probe]) -> None:
    """One linearizable read (it needs a quorum), retried until ``dial_timeout_s``."""
    assert client.kv is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.dial_timeout_s
    problem: BaseException | None = None
    while (left := deadline - loop.time()) > 0:
        try:
            await client.kv.get(
                config.key_prefix,
                count_only=True,
                timeout=min(config.request_timeout_s, left),
                max_attempts=1,
            )
            return
        except Exception as exc:
            problem = exc
            if not isinstance(exc, TimeoutError) and "not enabled" not in str(exc):
                text = explain(exc, config, config.request_timeout_s)
                if "authentication" in text or "permission" in text:
                    raise EtcdSetupError(f"etcd at {config.url}: {text}") from None
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
    if problem is None or isinstance(problem, TimeoutError):
        why = f"each attempt timed out after {config.request_timeout_s:g} s"
    else:
        why = explain(problem, config, config.request_timeout_s)
    raise EtcdSetupError(
        f"etcd at {config.url} has no quorum: a read that needs a majority of the members "
        f"did not succeed within {config.dial_timeout_s:g} s ({why}).{_report(probes)}\n"
        "Start the stopped members (a majority of the cluster must run and reach each "
        "other), then start pyflom again."
    )
