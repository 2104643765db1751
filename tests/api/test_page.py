"""The demo page and its assets are served, CSP-friendly."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_page_is_served_and_calls_predict(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert scripts, "the page loads its script from a file"
    assert "<script>" not in html, "no inline script (CSP)"
    js = "".join(client.get(src).text for src in scripts)
    assert "/predict" in js
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_swagger_ui_is_served_without_a_cdn(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert "cdn.jsdelivr.net" not in r.text
    assert client.get("/openapi.json").json()["paths"]["/predict"]["post"]
