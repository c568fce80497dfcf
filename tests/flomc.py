"""Where FLoM C 1.7.2 (the reference peer of the interop tests and benches) is installed.

``$FLOM_C_PREFIX`` when set, else the project-local ``.cache/flomc`` that ``make flomc``
builds from FLoM's source tarball (kept outside the repository). A prefix counts when it
holds ``bin/flom``, ``lib/libflom.so`` and ``include/flom.h``. Without one the interop tests
skip, unless ``PYFLOM_REQUIRE_FLOMC=1`` (CI): then they fail.

The benches import :func:`flom_c_prefix` from here too; only :func:`require_flom_c` needs
pytest.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_FLOM_C = PROJECT_ROOT / ".cache" / "flomc"
NEEDED = ("bin/flom", "lib/libflom.so", "include/flom.h")
INSTALL_HINT = (
    "run `make flomc` (builds FLoM 1.7.2 into .cache/flomc from ../shared/peers/"
    "flom-1.7.2.tar.gz, or from FLOM_C_TARBALL=path), or set FLOM_C_PREFIX=/its/prefix"
)


def flom_c_prefix() -> Path | None:
    """FLoM C's install prefix, or None when it is absent or incomplete."""
    explicit = os.environ.get("FLOM_C_PREFIX")
    prefix = Path(explicit) if explicit else LOCAL_FLOM_C
    if all((prefix / name).exists() for name in NEEDED):
        return prefix
    return None


def flom_c_env(prefix: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``prefix``'s libraries found first (libflom, for ``bin/flom``)."""
    return dict(env, LD_LIBRARY_PATH=str(prefix / "lib"))


def require_flom_c() -> Path:
    """FLoM C's prefix; skip the test without one (fail if PYFLOM_REQUIRE_FLOMC=1)."""
    import pytest

    prefix = flom_c_prefix()
    if prefix is not None:
        return prefix
    where = os.environ.get("FLOM_C_PREFIX") or str(LOCAL_FLOM_C)
    reason = f"FLoM C is not built at {where} (needs {', '.join(NEEDED)})"
    if os.environ.get("PYFLOM_REQUIRE_FLOMC") == "1":
        pytest.fail(f"PYFLOM_REQUIRE_FLOMC=1 but {reason}: {INSTALL_HINT}")
    pytest.skip(f"{reason}: {INSTALL_HINT}")
