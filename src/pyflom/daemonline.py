"""What a running local pyflom daemon was started with (its /proc command line), and
whether it may serve a command: :func:`backend_mismatch`.

Light on purpose: every command that finds its daemon running asks it (cli.py), so this
module imports nothing a plain ``flom -- cmd`` does not already load.
"""

from __future__ import annotations

import os

from .settings import DEFAULT_ETCD_KEY_PREFIX, DEFAULT_LOCK_LOSS_GRACE_MS, LockLoss, Settings


def option_values(argv: list[str], names: set[str]) -> dict[str, str]:
    """The values of the options ``names`` in a daemon command line (``--name value`` or
    ``--name=value``; the last one wins, as in argparse)."""
    values = {}
    for index, word in enumerate(argv):
        name, equal, value = word.partition("=")
        if name in names:
            values[name] = value if equal else (argv[index + 1] if index + 1 < len(argv) else "")
    return values


def cmdline(pid: int) -> list[str] | None:
    """The command line of process ``pid`` on this host, None when unknown (also when
    it has none: a process that has died, a zombie, or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            text = file.read()
    except OSError:
        return None
    try:
        return os.fsdecode(text).split("\0") if text else None
    except ValueError:
        return None


def backend_mismatch(settings: Settings, daemon_pid: int | None) -> str | None:
    """Why the local daemon ``daemon_pid`` must not serve a command whose settings name
    another lock space (a memory daemon granting on its own beside an etcd cluster, the
    reverse, or a gateway on another key prefix), or whose lock-loss grace outlasts what
    the gateway's lease covers; None when they agree or it cannot be told (no pid:
    another host).  A daemon that is not pyflom's (FLoM's own) keeps its locks in memory."""
    words = None if daemon_pid is None else cmdline(daemon_pid)
    if words is None:
        return None
    actual = None
    given: dict[str, str] = {}
    if "pyflom.daemon" in words:
        given = option_values(words, {"--backend", "--etcd-key-prefix", "--lock-loss-grace"})
        if given.get("--backend"):
            from .etcd.config import backend_setting

            actual = backend_setting(given["--backend"])  # it started with it: valid
    if actual != settings.backend:
        has = f"keeps its locks in etcd ({actual})" if actual else "keeps its locks in its memory"
        wants = f"etcd ({settings.backend})" if settings.backend else "the daemon's memory"
        return (
            f"the daemon (pid {daemon_pid}) {has}, but this command's configuration "
            f"([Daemon]/Backend or --backend) says {wants}: two lock spaces would each grant "
            "the same lock; stop that daemon (flom -X) or give every client of this host the "
            "same backend"
        )
    if actual is None:
        return None
    prefix = given.get("--etcd-key-prefix", DEFAULT_ETCD_KEY_PREFIX)
    if prefix != settings.etcd_key_prefix:
        return (
            f"the gateway (pid {daemon_pid}) keeps its locks under etcd key prefix '{prefix}', "
            f"but this command's configuration ([Etcd]/KeyPrefix or --etcd-key-prefix) says "
            f"'{settings.etcd_key_prefix}': two lock spaces would each grant the same lock; "
            "stop that gateway (flom -X) or give every client of this host the same key prefix"
        )
    grace = int(given.get("--lock-loss-grace", DEFAULT_LOCK_LOSS_GRACE_MS))
    if settings.lock_loss == LockLoss.TERMINATE and settings.lock_loss_grace > grace:
        return (
            f"the gateway (pid {daemon_pid}) times its etcd lease for a lock-loss grace of "
            f"{grace} ms, but this command's is {settings.lock_loss_grace} ms: cut off from "
            "etcd, the gateway drops the lock in time for a command that ends within "
            f"{grace} ms, and this one could still run when the lock is granted elsewhere; "
            f"use --lock-loss-grace={grace} or less, or give the gateway and every client "
            "of this host the same [Monitor]/LockLossGrace"
        )
    return None
