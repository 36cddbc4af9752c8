"""Layers point one way: the kernel (flowfront/) imports nothing from compile, router, eval or service;
only its app layer (the facade ``flowfront/__init__.py`` and the CLI ``flowfront/cli/``) may. And no two
stage packages import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from flowfront.settings import PROJECT_ROOT

STAGES = ("compile", "router", "eval", "service")
ORDER = {"flowfront": 0, "compile": 1, "router": 2, "eval": 3, "service": 3}  # who may import whom
APP_LAYER = ("__init__.py", "__main__.py", "cli")


def imports(path: Path) -> list[str]:
    """Absolute imports of a module (function-level ones included: a lazy import is still an arrow)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
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
                target = package_of(module)
                if target is not None and target != pkg and ORDER[target] >= ORDER[pkg]:
                    bad.append(f"{path.relative_to(root)} imports {module}")
    return bad


def test_layers_point_one_way() -> None:
    assert violations(PROJECT_ROOT) == []


def test_the_layer_test_catches_an_inverted_import(tmp_path: Path) -> None:
    for pkg in ORDER:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "flowfront" / "executor.py").write_text("def f():\n    from router.select import select\n")
    (tmp_path / "compile" / "proxy.py").write_text("import service.app\n")
    (tmp_path / "flowfront" / "cli").mkdir()
    (tmp_path / "flowfront" / "cli" / "__init__.py").write_text("import eval.jobs\n")  # the app layer may
    assert sorted(violations(tmp_path)) == ["compile/proxy.py imports service.app",
                                            "flowfront/executor.py imports router.select"]
