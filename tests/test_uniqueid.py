"""The unique id: read from the machine-id files, a clear error without one (Q11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyflom.uniqueid import NoUniqueId, read_unique_id


def test_first_valid_file_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("not an id\n")
    second.write_text("0123456789abcdef0123456789abcdef\n")
    assert read_unique_id((str(first), str(second))) == "0123456789abcdef0123456789abcdef"


def test_no_machine_id_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoUniqueId) as info:
        read_unique_id((str(tmp_path / "missing"),))
    message = str(info.value)
    assert "missing" in message and "systemd-machine-id-setup" in message
