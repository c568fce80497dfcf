"""The docs are tested where they show code (README.md and docs/*.md).

* Every ```python block runs as a program of its own against a real daemon, which it
  starts on demand as a user's program would: in a directory and ``HOME`` of the test's
  own, whose ``~/.flom`` names the test's own socket.  It must exit 0 and print nothing
  on stderr.
* A ```sh block runs (``bash -e``, the virtual environment's ``flom`` first on ``PATH``)
  only when the line before its fence is ``<!-- run -->``.
* A block whose line before is ``<!-- output -->`` is the exact stdout of the run block
  just before it.
* A Python block that cannot run here has ``<!-- not run: REASON -->`` before it: it is
  reported as skipped, with that reason.
* Every relative link points at a file that exists, and its ``#anchor`` at a heading.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from conftest import FlomSandbox, daemon_pid

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent

FENCE = re.compile(r"^(```+)([\w-]*)\s*$")
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A block that locks without saying where must use the test's daemon (~/.flom's socket).
LOCKS = re.compile(r"pyflom\.(aio\.)?(lock|Handle)\(|^flom ", re.M)
OWN_PLACE = re.compile(r"settings=|socket_name|(^|\s)-s |(^|\s)-a |(^|\s)-A ", re.M)


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None  # the HTML comment on the line before the fence, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """The reason given by ``<!-- not run: REASON -->``, or None."""
        if self.marker is not None and self.marker.startswith("not run:"):
            return self.marker.removeprefix("not run:").strip()
        return None

    @property
    def runs(self) -> bool:
        if self.lang == "python":
            return self.not_run is None
        return self.lang == "sh" and self.marker == "run"


def fenced_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end] != opening.group(1):
            end += 1
        assert end < len(lines), f"{page.name}:{i + 1}: a fence that never closes"
        before = MARKER.match(lines[i - 1]) if i else None
        code = "\n".join(lines[i + 1 : end]) + "\n"
        marker = before.group(1) if before else None
        found.append(Block(page, i + 1, opening.group(2), code, marker))
        i = end + 1
    return found


def expected_outputs() -> dict[Block, str]:
    """Each run block followed by an ``<!-- output -->`` block: that block's text."""
    outputs = {}
    for page in PAGES:
        blocks = fenced_blocks(page)
        for previous, block in pairwise(blocks):
            if block.marker == "output":
                outputs[previous] = block.code
    return outputs


ALL_BLOCKS = [block for page in PAGES for block in fenced_blocks(page)]
OUTPUTS = expected_outputs()
TRIED = [block for block in ALL_BLOCKS if block.runs or block.not_run is not None]


def test_markers_are_used_as_documented() -> None:
    problems = []
    for page in PAGES:
        blocks = fenced_blocks(page)
        for previous, block in pairwise([None, *blocks]):
            if block.marker is None:
                continue
            if block.marker == "output":
                if previous is None or not previous.runs:
                    problems.append(f"{block.where}: an output block after no run block")
            elif block.marker == "run":
                if block.lang != "sh":
                    problems.append(f"{block.where}: <!-- run --> is for ```sh blocks")
            elif block.not_run is not None:
                if block.lang != "python" or not block.not_run:
                    problems.append(f"{block.where}: <!-- not run: REASON --> on a python block")
            else:
                problems.append(f"{block.where}: unknown marker <!-- {block.marker} -->")
    assert not problems, "\n".join(problems)
    assert any(b.lang == "python" and b.runs for b in ALL_BLOCKS)  # the parser finds them
    assert any(b.lang == "sh" and b.runs for b in ALL_BLOCKS)


def _sockets_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_socket()]


@pytest.mark.parametrize("block", TRIED, ids=[block.where for block in TRIED])
def test_code_block_runs(block: Block, sandbox: FlomSandbox) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.where}: not run: {block.not_run}")
    sandbox.path(".flom").write_text(f"[Daemon]\nSocketName={sandbox.socket}\n")
    env = sandbox.env
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    argv = [sys.executable, "-c", block.code]
    if block.lang == "sh":
        argv = ["bash", "-e", "-c", block.code]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=sandbox.root, timeout=120
        )
        used_our_daemon = sandbox.remember_daemon() is not None
    finally:  # daemons the block started on sockets of its own end with the test too
        for path in _sockets_under(sandbox.root):
            pid = daemon_pid(str(path))
            if pid is not None:
                sandbox.daemon_pids.add(pid)
    shown = f"{block.where} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, shown
    if block.lang == "python":
        assert result.stderr == "", shown
    if block in OUTPUTS:
        assert result.stdout == OUTPUTS[block], shown
    if LOCKS.search(block.code) and not OWN_PLACE.search(block.code):
        assert used_our_daemon, f"{block.where} did not lock through the test's ~/.flom"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    lines = page.read_text().splitlines()
    inside = _fenced_lines(lines)
    seen: dict[str, int] = {}
    result = set()
    for number, line in enumerate(lines):
        heading = re.match(r"^#{1,6} (.*)$", line)
        if heading is None or number in inside:
            continue
        anchor = github_anchor(heading.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def _fenced_lines(lines: list[str]) -> set[int]:
    inside: set[int] = set()
    fence: str | None = None
    for number, line in enumerate(lines):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            inside.add(number)
        elif fence is not None:
            inside.add(number)
            if line == fence:
                fence = None
    return inside


def links(page: Path) -> list[str]:
    lines = page.read_text().splitlines()
    inside = _fenced_lines(lines)
    prose = "\n".join(line for number, line in enumerate(lines) if number not in inside)
    prose = re.sub(r"`[^`\n]*`", "", prose)  # a code span is no link
    return LINK.findall(prose)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_point_at_files_and_headings(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_readme_is_short_and_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    # CI (.ci/run) and the contributors' guide run the README's setup commands.
    for command in ("make demo", "make test", ".venv/bin/flom", "pip install .", "pipx install ."):
        assert command in readme, command
    linked = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in linked, f"README does not link docs/{page.name}"


@pytest.mark.parametrize(
    ("page", "needles"),
    [
        ("docs/cli.md", ["flom --status", "--status=json", "FLM050I", "FLM053I"]),
        ("docs/cli.md", ["PYFLOM_LOG_LEVEL", "FLOM_LOCK_GENERATION", "--state-file"]),
        ("docs/library.md", ["pyflom.aio.lock", "await handle.lock()", "lock_generation"]),
        ("docs/network.md", ["-a ", "-A ", "--tcp-keepalive-time", "-d 0"]),
        ("docs/tls.md", ["flom-tls init-ca", "flom-tls issue", "tls-troubleshooting.md"]),
    ],
)
def test_pages_document_their_subject(page: str, needles: list[str]) -> None:
    text = (ROOT / page).read_text()
    missing = [needle for needle in needles if needle not in text]
    assert not missing, f"{page} lacks {missing}"
