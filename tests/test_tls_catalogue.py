"""The troubleshooting guide and the code cannot drift: same catalogue, same ids."""

from __future__ import annotations

import re
from pathlib import Path

from pyflom.tls.diagnosis import CATALOGUE, troubleshooting_markdown

ROOT = Path(__file__).resolve().parent.parent
IDENT = re.compile(r"\bTLS-[A-Z][A-Z0-9-]*[A-Z0-9]\b")


def idents_in_code() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "pyflom").rglob("*.py"):
        text = path.read_text()
        if path.name == "diagnosis.py":
            text = text.split("CATALOGUE: dict", 1)[0]  # where failures are named
        found |= set(IDENT.findall(text))
    return found


def test_docs_are_generated_from_the_catalogue() -> None:
    docs = (ROOT / "docs" / "tls-troubleshooting.md").read_text()
    assert docs == troubleshooting_markdown(), (
        "regenerate: python -m pyflom.tls.diagnosis > docs/tls-troubleshooting.md"
    )


def test_every_reported_id_is_documented_and_every_entry_is_reported() -> None:
    used = idents_in_code()
    assert used - set(CATALOGUE) == set()
    assert set(CATALOGUE) - used == set()
