"""GET /: the demo page (static files shipped inside the package)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["page"])
STATIC_DIR = files("deepfake_api") / "static"


@cache
def _index_html() -> str:
    """Read once: the page ships with the package and does not change while serving."""
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(_index_html())
