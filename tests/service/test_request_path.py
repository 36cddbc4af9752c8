"""A served request's calls between packages point down only (docs/architecture.md, "A request").

The import-layering test cannot see a lower layer calling an object handed to it from above;
this one profiles a real warm request through the app and checks every call between packages.
"""

from __future__ import annotations

from pathlib import Path

from flowfront.settings import Settings
from tests import request_path as rp
from tests.service.support import BENCH, copy_workdir, make_client


def test_a_served_request_only_calls_down_between_packages(trained: Settings, workflows_dir: Path,
                                                           test_queries: list[str], tmp_path: Path) -> None:
    work = copy_workdir(trained, tmp_path)  # its own store: the session's apps keep theirs open
    seen, edges = rp.trace_request(lambda: make_client(work, workflows_dir), BENCH, test_queries[:2])
    # The request went through all three layers, so an upward call had the chance to show.
    assert {rp.package(m) for m in seen} == {"service", "router", "kernel"}
    assert ("service", "router") in edges and ("service", "kernel") in edges
    upward = {pair: sites for pair, sites in edges.items() if rp.LAYER[pair[0]] < rp.LAYER[pair[1]]}
    assert not upward, f"a lower layer calls up on a served request: {upward}"
    # The executor's calls reach the guarded backend inside the kernel (not a service wrapper).
    assert "flowfront.backends.guard" in seen and "flowfront.executor" in seen
