"""``flom-tls``: make and check the TLS files of pyflom nodes.

* ``init-ca`` — a new CA (certificate and 0600 key);
* ``issue`` — a node certificate signed by the CA, CN = this machine's unique id;
* ``check`` — preflight of a node's files (:mod:`pyflom.tls.preflight`);
* ``probe``, ``decode`` — planned, not implemented yet.

Subcommands live in :data:`SUBCOMMANDS`. Adding one is one function::

    @subcommand("hello", "say hello", arg("--to", default="world"))
    def _hello(args: argparse.Namespace) -> int:
        ...

A function returns the exit status; it raises :class:`ToolError`
(or :class:`~pyflom.tls.pki.PkiError`, :class:`OSError`) for an expected failure, which
``main`` prints on stderr with status 2, without a traceback.

Exit status: 0 success, 1 ``check`` found problems, 2 usage, file or setup error.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .. import uniqueid
from .pki import KEY_TYPES, PkiError, init_ca, issue

PROG = "flom-tls"
USAGE_ERROR = 2

Run = Callable[[argparse.Namespace], int]


class ToolError(Exception):
    """An expected failure: printed as ``flom-tls: MESSAGE`` on stderr, exit status 2."""


class Argument(NamedTuple):
    """``ArgumentParser.add_argument(*flags, **options)`` of a subcommand."""

    flags: tuple[str, ...]
    options: dict[str, Any]


class Subcommand(NamedTuple):
    """One ``flom-tls`` subcommand: its help line, its arguments and its function."""

    help: str
    arguments: tuple[Argument, ...]
    run: Run


SUBCOMMANDS: dict[str, Subcommand] = {}
"""The subcommands by name, in help order."""


def arg(*flags: str, **options: Any) -> Argument:
    """An argument of a subcommand, as for ``ArgumentParser.add_argument``."""
    return Argument(flags, options)


def subcommand(name: str, help: str, *arguments: Argument) -> Callable[[Run], Run]:
    """Register the decorated function as subcommand ``name``."""

    def register(run: Run) -> Run:
        SUBCOMMANDS[name] = Subcommand(help, arguments, run)
        return run

    return register


def _absolute(path: Path) -> str:
    return os.path.abspath(path)


def _machine_unique_id() -> str | None:
    try:
        return uniqueid.read_unique_id()
    except uniqueid.NoUniqueId:
        return None


# -- init-ca ----------------------------------------------------------------------------

_KEY_TYPE = arg(
    "--key-type", choices=KEY_TYPES, default="ec", help="ec (P-256, default) or rsa (3072)"
)
_FORCE = arg("--force", action="store_true", help="replace existing files")


@subcommand(
    "init-ca",
    "create a CA: NAME.crt and NAME.key (mode 0600)",
    arg("--dir", type=Path, default=Path("."), help="output directory (default: .)"),
    arg("--name", default="flom-ca", help="file name and CN (default: flom-ca)"),
    arg("--days", type=int, default=3650, help="validity in days (default: 3650)"),
    _KEY_TYPE,
    _FORCE,
)
def _init_ca(args: argparse.Namespace) -> int:
    cert, key = init_ca(args.dir, args.name, args.days, args.key_type, force=args.force)
    print(f"CA certificate: {_absolute(cert)}")
    print(f"CA private key: {_absolute(key)}")
    print(
        f"next: {PROG} issue --ca-cert {shlex.quote(_absolute(cert))} "
        f"--ca-key {shlex.quote(_absolute(key))}"
    )
    return 0


# -- issue ------------------------------------------------------------------------------


@subcommand(
    "issue",
    "issue a node certificate signed by the CA (CN: this machine's unique id)",
    arg("--ca-cert", type=Path, required=True, metavar="FILE", help="CA certificate (PEM)"),
    arg("--ca-key", type=Path, required=True, metavar="FILE", help="CA private key (PEM)"),
    arg("--cn", metavar="ID", help="subject CN (default: this machine's unique id)"),
    arg("--dir", type=Path, default=Path("."), help="output directory (default: .)"),
    arg("--name", help="file name without .crt/.key (default: node-CN)"),
    arg("--days", type=int, default=825, help="validity in days (default: 825)"),
    arg("--dns", action="append", default=[], metavar="NAME", help="SAN DNS name (repeatable)"),
    arg("--ip", action="append", default=[], metavar="ADDR", help="SAN IP address (repeatable)"),
    _KEY_TYPE,
    _FORCE,
)
def _issue(args: argparse.Namespace) -> int:
    cn = args.cn
    if cn is None:
        try:
            cn = uniqueid.read_unique_id()
        except uniqueid.NoUniqueId as exc:
            raise ToolError(f"{exc}; or give the CN with --cn") from None
    cert, key = issue(
        args.ca_cert,
        args.ca_key,
        args.dir,
        cn,
        name=args.name,
        days=args.days,
        key_type=args.key_type,
        dns_names=args.dns,
        ip_addresses=args.ip,
        force=args.force,
    )
    cert_text, key_text = _absolute(cert), _absolute(key)
    ca_text = _absolute(args.ca_cert)
    print(f"certificate: {cert_text}")
    print(f"private key: {key_text}")
    print(f"CN: {cn}")
    print(
        f"flom options: --tls-certificate={shlex.quote(cert_text)} "
        f"--tls-private-key={shlex.quote(key_text)} --tls-ca-certificate={shlex.quote(ca_text)}"
    )
    return 0


# -- check ------------------------------------------------------------------------------


def _configured_files(config: str | None) -> tuple[str | None, str | None, str | None]:
    """The TLS files of pyflom's configuration (system files, ~/.flom, ``config``)."""
    from .. import cmdline

    try:
        settings, warnings = cmdline.configured_settings(config or None)
    except cmdline.CliError as exc:
        details = "; ".join(part for part in (exc.stdout, exc.stderr) if part)
        where = f"'{config}'" if config else "pyflom's configuration files"
        raise ToolError(f"cannot read {where}: {details}") from None
    for warning in warnings:
        print(warning, file=sys.stderr)
    return settings.tls_certificate, settings.tls_private_key, settings.tls_ca_certificate


@subcommand(
    "check",
    "check a node's TLS files (default: those of pyflom's configuration)",
    *(
        _FILE_OPTIONS := (
            arg("--cert", metavar="FILE", help="node certificate (PEM; intermediates after it)"),
            arg("--key", metavar="FILE", help="node private key (PEM)"),
            arg("--ca", metavar="FILE", help="CA certificate (PEM)"),
            arg(
                "--config", metavar="FILE", help="read the files from this flom config file ([TLS])"
            ),
        )
    ),
)
def _check(args: argparse.Namespace) -> int:
    from .preflight import check

    cert, key, ca = _files(args)
    findings = check(cert, key, ca, unique_id=_machine_unique_id())
    for finding in findings:
        print(finding)
    return 0 if all(finding.ok for finding in findings) else 1


def _files(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The certificate, key and CA: given on the command line, else configured."""
    files: list[str | None] = [args.cert, args.key, args.ca]
    if args.config is not None or None in files:  # explicit files win over configured ones
        configured = _configured_files(args.config)
        files = [given or found for given, found in zip(files, configured, strict=True)]
    missing = [
        option for option, path in zip(("--cert", "--key", "--ca"), files, strict=True) if not path
    ]
    if missing:
        raise ToolError(
            f"no TLS files to check ({', '.join(missing)} missing): give --cert, --key and "
            "--ca, or --config FILE with TlsCertificate, TlsPrivateKey and TlsCaCertificate "
            "in its [TLS] group"
        )
    cert, key, ca = (Path(path or "") for path in files)
    return cert, key, ca


# -- probe and decode -------------------------------------------------------------------


@subcommand(
    "probe",
    "handshake with a daemon (HOST:PORT or a UNIX socket path), trace it, name the verdict",
    arg("target", help="HOST:PORT, [IPv6]:PORT or /path/of/the/socket"),
    *_FILE_OPTIONS,
)
def _probe(args: argparse.Namespace) -> int:
    from .files import TlsFiles
    from .probe import probe

    cert, key, ca = _files(args)
    return probe(args.target, TlsFiles(str(cert), str(key), str(ca), False))


@subcommand(
    "decode",
    "annotate a hex dump of TLS records (plain hex, xxd, hexdump -C, Wireshark; "
    "lines may start with > or < for the direction)",
    arg("file", nargs="?", help="the dump (default: standard input)"),
)
def _decode(args: argparse.Namespace) -> int:
    from .dump import decode_dump

    try:
        text = Path(args.file).read_text() if args.file else sys.stdin.read()
    except OSError as exc:
        raise ToolError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        lines = decode_dump(text)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    for line in lines:
        print(line)
    return 0


# -- main -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``flom-tls`` parser, one sub-parser per entry of :data:`SUBCOMMANDS`."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="Make and check the TLS files of pyflom nodes."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} (pyflom) {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for name, command in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        for argument in command.arguments:
            sub.add_argument(*argument.flags, **argument.options)
    return parser


def _os_error(exc: OSError) -> str:
    where = f"'{exc.filename}': " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc}"


def main(argv: list[str] | None = None) -> int:
    """Run ``flom-tls`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        command = SUBCOMMANDS[args.subcommand]
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    try:
        return command.run(args)
    except (ToolError, PkiError) as exc:
        message = str(exc)
    except OSError as exc:
        message = _os_error(exc)
    print(f"{PROG}: {message}", file=sys.stderr)
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
