"""Layers point one way: the kernel (flowfront/) imports nothing from compile, router, eval or service;
only its app layer (the facade ``flowfront/__init__.py`` and the CLI ``flowfront/cli/``) may. And no two
stage packages import each other in a cycle."""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

from tests.helpers import PROJECT_ROOT

STAGES = ("compile", "router", "eval", "service")
ORDER = {"flowfront": 0, "compile": 1, "router": 2, "eval": 3, "service": 3}  # who may import whom
APP_LAYER = ("__init__.py", "__main__.py", "cli")


def imports(path: Path, modules: Collection[str] = ()) -> list[str]:
    """Absolute imports of a module (function-level ones included: a lazy import is still an arrow).
    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is one of ``modules``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out += subs if len(subs) == len(node.names) else [node.module, *subs]
    return out


def package_of(module: str) -> str | None:
    head = module.split(".")
    if head[0] == "flowfront" and len(head) > 1 and head[1] in STAGES:
        return head[1]
    return head[0] if head[0] in ORDER else None


def violations(root: Path) -> list[str]:
    bad = []
    for pkg in ORDER:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root / pkg)
            if pkg == "flowfront" and rel.parts[0] in APP_LAYER:
                continue  # the app layer assembles every stage
            for module in imports(path):
                if module.split(".")[0] in STAGES:  # installed only as flowfront.<stage>
                    bad.append(f"{path.relative_to(root)} imports {module} (use flowfront.{module})")
                    continue
                target = package_of(module)
                if target is not None and target != pkg and ORDER[target] >= ORDER[pkg]:
                    bad.append(f"{path.relative_to(root)} imports {module}")
    return bad


def _empty_packages(root: Path) -> None:
    for pkg in ORDER:
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")


def test_layers_point_one_way() -> None:
    assert violations(PROJECT_ROOT) == []


def test_the_layer_test_catches_an_inverted_import(tmp_path: Path) -> None:
    _empty_packages(tmp_path)
    (tmp_path / "flowfront" / "executor.py").write_text(
        "def f():\n    from flowfront.router.select import select\n"
    )
    (tmp_path / "compile" / "proxy.py").write_text("import flowfront.service.app\n")
    (tmp_path / "router" / "model.py").write_text("from compile.artifact import Frontier\n")
    (tmp_path / "flowfront" / "cli").mkdir()
    (tmp_path / "flowfront" / "cli" / "__init__.py").write_text(
        "import flowfront.eval.jobs\n"
    )  # the app layer may
    assert sorted(violations(tmp_path)) == [
        "compile/proxy.py imports flowfront.service.app",
        "flowfront/executor.py imports flowfront.router.select",
        "router/model.py imports compile.artifact (use flowfront.compile.artifact)",
    ]


def test_tests_and_benchmarks_import_the_installed_names() -> None:
    """The checkout is on sys.path under pytest, so a stale ``from router...`` would still work here
    and fail against the wheel."""
    stale = [
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for folder in ("tests", "bench", "scripts")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
        for module in imports(path)
        if module.split(".")[0] in STAGES
    ]
    assert stale == []


def module_cycles(root: Path) -> list[list[str]]:
    """Import cycles between first-party modules (function-level imports included), by Tarjan's SCC."""
    paths: dict[str, Path] = {}
    for pkg in ORDER:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
            paths[".".join(["flowfront", *parts] if pkg != "flowfront" else parts)] = path
    # `from pkg import submodule` depends on the submodule, not on pkg's __init__
    edges = {
        name: {t for t in imports(path, paths) if t in paths and t != name} for name, path in paths.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    assert module_cycles(PROJECT_ROOT) == []


def test_the_cycle_test_catches_a_cycle(tmp_path: Path) -> None:
    _empty_packages(tmp_path)
    (tmp_path / "eval" / "harness.py").write_text("def f():\n    from flowfront.eval.summary import g\n")
    (tmp_path / "eval" / "summary.py").write_text("from flowfront.eval import harness\n")
    assert module_cycles(tmp_path) == [["flowfront.eval.harness", "flowfront.eval.summary"]]


def test_no_test_module_imports_another() -> None:
    """Helpers shared by tests live in helper modules (tests/helpers.py, tests/service/support.py,
    ...), never in a test module or a conftest another test imports: importing one runs its
    module-level code and re-collects its tests under another name."""
    import re

    root = Path(__file__).resolve().parent
    pattern = re.compile(r"^\s*(?:from|import)\s+tests\.((?:\w+\.)*)(test_\w+|conftest)\b", re.M)
    offenders = [f"{path.relative_to(root)} imports tests.{m.group(1)}{m.group(2)}"
                 for path in root.rglob("*.py") for m in pattern.finditer(path.read_text())]
    assert not offenders, offenders


def test_no_test_loads_code_from_scripts_or_research() -> None:
    """What a test relies on is product code or a helper in tests/, never a script loaded by path:
    scripts and research are free to change without a test noticing what they meant."""
    import re

    root = Path(__file__).resolve().parent
    pattern = re.compile(r"""spec_from_file_location\(|["'/](scripts|research)/\w+\.py""")
    offenders = [f"{path.relative_to(root)}: {m.group(0)}" for path in root.rglob("*.py")
                 if path.name != "test_layers.py" for m in pattern.finditer(path.read_text())]
    assert not offenders, offenders
