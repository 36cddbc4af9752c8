"""docs/python-api.md is a working session: its code blocks run in order, on the built-in data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT, private_settings

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow


def test_the_python_api_page_runs(imported_settings, trained, tmp_path: Path, capsys) -> None:
    import shutil

    import flowfront

    page = (PROJECT_ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert len(blocks) >= 4
    work = private_settings(imported_settings, tmp_path / "work").workdir
    # The session's replay caches (named by the hash of the candidates they ran: used only if the
    # page compiles the same frontier) spare the page replaying every candidate again. The page
    # still writes its own frontier and router, which the checks below look for.
    shutil.copytree(trained.workdir / "qa-cascade" / "outcomes", work / "qa-cascade" / "outcomes")
    namespace = {"WORKDIR": work}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)  # noqa: S102 - the doc is ours
    out = capsys.readouterr().out
    assert "candidates of" in out and "error: unknown benchmark" in out.lower() or "error:" in out
    assert (work / "qa-cascade" / "frontier.json").is_file() and (
        work / "qa-cascade" / "router-frontier"
    ).is_dir()
    assert "static" in namespace["results"]["strategies"]
    assert flowfront.__all__ and all(hasattr(flowfront, name) for name in flowfront.__all__)
