"""The kernel type-checks: mypy (settings in pyproject.toml) over flowfront/ without its app layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

# the slow tier: mypy over the kernel takes ~20 s (make test-fast leaves it out)
pytestmark = pytest.mark.slow


def kernel_files() -> list[str]:
    root = PROJECT_ROOT / "flowfront"
    files = [p for p in root.rglob("*.py") if p.relative_to(root).parts[0] not in ("cli", "__init__.py")]
    return [str(p) for p in sorted(files) if p.name != "__init__.py" or p.parent != root]


def test_the_kernel_type_checks(tmp_path: Path) -> None:
    from mypy import api

    out, err, status = api.run(["--config-file", str(PROJECT_ROOT / "pyproject.toml"),
                                "--cache-dir", str(tmp_path / "cache"), *kernel_files()])
    assert status == 0, out + err
