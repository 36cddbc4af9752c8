"""The one atomic writer every artifact goes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowfront.artifacts import package_versions, write_atomic


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "frontier.json"
    assert write_atomic(path, b"old") == path and path.read_bytes() == b"old"
    write_atomic(path, b"new", durable=False)
    assert path.read_bytes() == b"new" and sorted(p.name for p in path.parent.iterdir()) == ["frontier.json"]


def test_a_failed_write_keeps_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_atomic(tmp_path / "results.json", b"previous")

    def refuse(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("flowfront.artifacts.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"half")
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_package_versions_name_what_is_installed() -> None:
    versions = package_versions(("numpy", "no-such-package-here"))
    assert set(versions) == {"numpy"} and versions["numpy"][0].isdigit()
