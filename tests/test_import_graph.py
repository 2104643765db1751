"""The import graph (pyproject's [tool.importlinter] contracts): no import from a lower floor to a
higher one, jobs/ knows nothing of alerts/ or HTTP, services know no HTTP; and no module cycle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")  # the dev extra's import-linter
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    checked = subprocess.run([str(lint)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("deepfake_api")
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(imports[module]):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                visit(imported, [*path, imported])
        done.add(module)

    for module in sorted(imports):
        if module not in done:
            visit(module, [module])
    assert cycles == []
