"""Packaging: the flom(1) page and the bash completion follow the option table, the wheel
carries py.typed, the licence, the page and the completion, and the ``flom`` command never
loads the generators."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

from conftest import FlomSandbox
from pyflom import completion, manpage
from pyflom.cmdline import _OPTIONS, SIGNAL_NAMES
from pyflom.lockmodes import LONG_NAMES, LockMode
from pyflom.options import VERBOSE_DUMP_ORDER

ROOT = Path(__file__).resolve().parents[1]
MAN_PAGE = ROOT / "man" / "flom.1"
COMPLETION = ROOT / "completions" / "flom.bash"
LONG_OPTIONS = [f"--{entry[1]}" for entry in _OPTIONS]

# -- flom(1) ----------------------------------------------------------------------------


def test_committed_man_page_is_generated_from_the_option_table() -> None:
    assert MAN_PAGE.read_text() == manpage.render(), (
        "man/flom.1 is stale: run `python -m pyflom.manpage > man/flom.1`"
    )


def test_man_page_module_prints_the_page() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pyflom.manpage"], capture_output=True, text=True, check=True
    )
    assert out.stdout == manpage.render()


def test_man_page_lists_every_option_with_its_placeholder() -> None:
    lines = manpage.render().splitlines()
    tags = [lines[i + 1] for i, line in enumerate(lines) if line == ".TP"]
    for short, long, _kind, placeholder, _help in _OPTIONS:
        bold = "\\fB" + f"--{long}".replace("-", "\\-") + "\\fR"
        (tag,) = [tag for tag in tags if bold in tag]
        assert tag.startswith(f"\\fB\\-{short}\\fR, {bold}" if short else bold)
        if placeholder:
            assert f"\\fI{placeholder}\\fR" in tag


def test_man_page_markup_is_sane() -> None:
    """Without a formatter: only known macros, every hyphen and backslash escaped."""
    known = {".TH", ".SH", ".SY", ".YS", ".PP", ".TP", ".RS", ".RE", ".EX", ".EE", ".BR", '.\\"'}
    sections = []
    for line in manpage.render().splitlines():
        if line.startswith((".", "'")):
            macro = line.split()[0]
            assert macro in known, line
            if macro == ".SH":
                sections.append(line[4:])
            continue
        assert not re.search(r"(?<!\\)-", line), f"unescaped hyphen: {line}"
        assert not re.search(r"\\(?![-efI&BR])", line), f"stray backslash: {line}"
    assert sections == [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ]


def test_man_page_names_every_environment_variable_the_code_reads() -> None:
    names: set[str] = set()
    for source in (ROOT / "src" / "pyflom").rglob("*.py"):
        text = source.read_text()
        names.update(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"", text))
        names.update(re.findall(r"^[A-Z_]+_ENV = \"([A-Z_]+)\"", text, re.MULTILINE))
    assert {"FLOM_TRACE_MASK", "PYFLOM_LOG_LEVEL", "SSLKEYLOGFILE"} <= names
    environment = manpage.render().split(".SH ENVIRONMENT")[1].split(".SH FILES")[0]
    for name in sorted(names):
        assert f"\\fB{name}\\fR" in environment, name


def test_man_page_formats_without_warnings() -> None:
    if shutil.which("groff"):
        command = ["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN_PAGE)]
        shown = ["groff", "-man", "-Tutf8", "-ww", str(MAN_PAGE)]
    elif shutil.which("man"):
        command = shown = ["man", "--warnings", "-l", str(MAN_PAGE)]
    else:
        pytest.skip("neither groff nor man is installed (markup checked without them)")
    check = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    text = subprocess.run(
        shown, capture_output=True, text=True, timeout=60, env={**os.environ, "MANWIDTH": "100"}
    ).stdout
    text = re.sub(r".\x08|\x1b\[[0-9;]*m", "", text)  # bold, underline: overstrike or SGR
    for option in LONG_OPTIONS:
        assert option in text
    assert "EXIT STATUS" in text and "/usr/local/etc/flom.conf" in text


# -- bash completion ---------------------------------------------------------------------


def test_committed_completion_is_generated_from_the_option_table() -> None:
    assert COMPLETION.read_text() == completion.render(), (
        "completions/flom.bash is stale: run `python -m pyflom.completion > completions/flom.bash`"
    )


def test_completion_refuses_an_unknown_placeholder() -> None:
    with pytest.raises(ValueError, match="--frob"):
        completion._value_completion("frob", "WIDGET")


def _complete(*words: str, cwd: Path | None = None) -> list[str]:
    """COMPREPLY of the completion function for the command line ``words`` (the last one
    is the word under the cursor), computed by a real bash."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    function = "_flom_tls" if words[0] == "flom-tls" else "_flom"
    script = "\n".join(
        [
            f"source {shlex.quote(str(COMPLETION))}",
            f"COMP_WORDS=({' '.join(shlex.quote(word) for word in words)})",
            f"COMP_CWORD={len(words) - 1}",
            f'COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}; {function}',
            "printf '%s\\n' \"${COMPREPLY[@]}\"",
        ]
    )
    out = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=True,
    )
    assert out.stderr == ""
    return [line for line in out.stdout.split("\n") if line]


MODES = [mode.name for mode in LockMode] + [LONG_NAMES[mode] for mode in LockMode]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["flom", "--lock-m"], ["--lock-mode"]),
        (["flom", "-l", ""], MODES),
        (["flom", "--lock-mode", "P"], ["PR", "PW", "ProtectedRead", "ProtectedWrite"]),
        (["flom", "-lE"], ["-lEX", "-lExclusive"]),
        # bash splits --status=... at "=" (COMP_WORDBREAKS): the value is a word of its own
        (["flom", "--status", "="], ["table", "json"]),
        (["flom", "--status", "=", "j"], ["json"]),
        (["flom", "--status="], ["--status=table", "--status=json"]),
        (["flom", "--grant-policy", ""], ["flom", "fifo"]),
        (["flom", "--lock-loss", "=", ""], ["terminate", "keep"]),
        (["flom", "-e", ""], ["yes", "no"]),
        (["flom", "--append-trace-file=y"], ["--append-trace-file=yes"]),
        (["flom", "--ignore-signal", "SIGUSR"], ["SIGUSR1", "SIGUSR2"]),
        (["flom", "--debug-feature", "tls."], ["tls.client", "tls.server"]),
        (["flom", "-r", "R", "-o", ""], []),  # a number: nothing to offer
        (["flom", "-r", "-l", ""], None),  # "-l" is the resource name: a command follows
        (["flom-tls", "i"], ["init-ca", "issue"]),
        (["flom-tls", "issue", "--key-type", ""], ["ec", "rsa"]),
        (["flom-tls", "check", "--c"], ["--cert", "--ca", "--config"]),
    ],
)
def test_completion_of_options_and_values(words: list[str], expected: list[str] | None) -> None:
    reply = _complete(*words)
    if expected is None:
        assert "EX" not in reply and "echo" in _complete(*words[:-1], "ech")
    else:
        assert reply == expected


def test_completion_offers_every_option() -> None:
    assert set(_complete("flom", "--")) == {"--help", *LONG_OPTIONS}
    shorts = {f"-{entry[0]}" for entry in _OPTIONS if entry[0]}
    assert shorts | {"-h"} <= set(_complete("flom", "-"))
    assert set(_complete("flom", "--ignore-signal", "")) == set(SIGNAL_NAMES.values())


def test_completion_of_files_directories_and_commands(tmp_path: Path) -> None:
    (tmp_path / "conf.ini").write_text("")
    (tmp_path / "confdir").mkdir()
    prefix = str(tmp_path / "conf")
    files = [str(tmp_path / "conf.ini"), str(tmp_path / "confdir")]
    assert sorted(_complete("flom", "-c", prefix)) == files
    assert sorted(_complete("flom", "--tls-keylog=" + prefix)) == [
        "--tls-keylog=" + name for name in files
    ]
    assert _complete("flom", "-m", prefix) == [str(tmp_path / "confdir")]
    assert _complete("flom", "--mount-point-vfs", "=", prefix) == [str(tmp_path / "confdir")]
    # after "--": the command, then its arguments (files, or its own completion)
    assert "echo" in _complete("flom", "-r", "R", "--", "ech")
    assert sorted(_complete("flom", "-r", "R", "--", "cat", prefix)) == files
    # FLoM's quirk: a command without "--", options after it are still flom's
    assert "echo" in _complete("flom", "-l", "PR", "ech")
    assert _complete("flom", "ls", "--lock-m") == ["--lock-mode"]
    assert _complete("flom-tls", "init-ca", "--dir", prefix) == [str(tmp_path / "confdir")]


def test_completion_is_registered_for_both_commands() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    out = subprocess.run(
        [bash, "--norc", "-c", f"source {shlex.quote(str(COMPLETION))}; complete -p"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "complete -F _flom flom\n" in out.stdout
    assert "complete -F _flom_tls flom-tls\n" in out.stdout


# -- the wheel and the command -------------------------------------------------------------


def test_wheel_carries_typing_marker_licence_man_page_and_completion(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("pyflom-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = next(name.split("/")[0] for name in names if ".data/" in name)
        info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        assert "pyflom/py.typed" in names
        assert archive.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        assert archive.read(f"{data}/data/share/man/man1/flom.1") == MAN_PAGE.read_bytes()
        assert (
            archive.read(f"{data}/data/share/bash-completion/completions/flom")
            == COMPLETION.read_bytes()
        )
        metadata = HeaderParser().parsestr(archive.read(f"{info}/METADATA").decode())
    assert b"GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_bytes()
    assert b"Version 2, June 1991" in (ROOT / "LICENSE").read_bytes()
    assert metadata["License-Expression"] == "GPL-2.0-or-later"
    assert metadata["License-File"] == "LICENSE"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL") or [])
    assert urls["Issues"] == "https://github.com/pyflom/pyflom/issues"
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}


def run_in(
    sandbox: FlomSandbox, argv: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``sandbox`` (its environment unless ``env``), remembering the daemon."""
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env=sandbox.env if env is None else env,
        cwd=sandbox.root,
    )
    sandbox.remember_daemon()
    return out


def test_flom_command_does_not_load_the_generators(sandbox: FlomSandbox) -> None:
    flom_py = Path(sys.executable).with_name("flom")
    argv = [sys.executable, "-X", "importtime", str(flom_py)]
    out = run_in(sandbox, [*argv, *sandbox.args("-d", "1000", "true")[1:]])
    assert out.returncode == 0, out.stderr
    assert "pyflom.cli" in out.stderr  # the import trace is there
    assert "pyflom.manpage" not in out.stderr
    assert "pyflom.completion" not in out.stderr


# -- the console script: main, then a quick exit (pyflom.__main__) ------------------------


def test_console_script_and_python_m_pyflom_exit_with_the_command_status(
    sandbox: FlomSandbox,
) -> None:
    script = sandbox.run("-d", "5000", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (script.returncode, script.stdout, script.stderr) == (7, "out\n", "err\n")
    argv = [sys.executable, "-m", "pyflom", "-s", sandbox.socket, "--", "sh", "-c", "exit 9"]
    module = run_in(sandbox, argv)
    assert (module.returncode, module.stderr) == (9, "")


def test_console_script_flushes_its_own_output_before_the_quick_exit(
    sandbox: FlomSandbox,
) -> None:
    # The -V dump waits in Python's buffers (unless PYTHONUNBUFFERED is set, as it may be
    # where tests run): the quick exit must not lose it.
    env = {k: v for k, v in sandbox.env.items() if k != "PYTHONUNBUFFERED"}
    out = run_in(sandbox, sandbox.args("-d", "5000", "-V", "--", "true"), env)
    assert out.returncode == 0, out.stderr
    last = VERBOSE_DUMP_ORDER[-1]  # the last line of -V
    assert out.stdout.rstrip("\n").endswith(f"[{last.group}]/{last.key}=''")


@pytest.mark.parametrize("buffered", [True, False], ids=["at exit", "at write"])
@pytest.mark.parametrize(
    ("stdout", "reason"), [("closed pipe", "Broken pipe"), ("/dev/full", "No space left")]
)
def test_unwritable_standard_output_is_said_with_status_120(
    stdout: str, reason: str, buffered: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    if stdout == "closed pipe":
        read_end, target = os.pipe()
        os.close(read_end)
    else:
        target = os.open(stdout, os.O_WRONLY)
    try:
        out = subprocess.run(
            [str(Path(sys.executable).with_name("flom")), "-v"],
            stdout=target,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        os.close(target)
    assert out.returncode == 120
    assert out.stderr.startswith(f"flom: could not write standard output: {reason}")
    assert "Traceback" not in out.stderr
