"""openapi.md at the repo root is generated from the app's schema and must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_openapi_md_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("gen_openapi_md", ROOT / "scripts" / "gen_openapi_md.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "openapi.md").read_text() == module.current(), "run scripts/gen_openapi_md.py"
