"""HTML reports through the real app: kept only when asked for (`report=true`), self-contained and
offline (no http(s) URL, images inline), gone with their TTL; unknown ids are 404 problems."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from tests.utils.apps import serving
from tests.utils.faces import face_jpeg
from tests.utils.problems import assert_problem


def test_a_report_is_kept_only_when_asked_for_and_renders_offline() -> None:
    with serving() as client:
        files = {"file": ("face.jpg", face_jpeg(0), "image/jpeg")}
        plain = client.post("/predict", files=files)
        assert plain.status_code == 200 and plain.json()["report"] is None  # never stored by default

        r = client.post("/predict", params={"report": "true", "explain": "true"}, files=files)
        assert r.status_code == 200, r.text
        body = r.json()
        link = body["report"]
        assert link["url"] == f"/reports/{link['id']}" and link["expires_at"] > time.time()
        page = client.get(link["url"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert not re.search(r"https?://", html), "the report must not load or link anything"
        assert "<script" not in html.lower()
        assert re.search(r'<img [^>]*src="data:image/jpeg;base64,', html)
        assert body["label"] in html and body["model"]["sha256"] in html
        assert "What the labels promise" in html and "Heatmap method" in html
        for face in body["faces"]:
            if face["status"] == "judged":
                assert f"{face['score']:.3f}" in html

        # expired: the store forgets it, the route answers 404
        store = client.app.state.jobs.store  # type: ignore[attr-defined]
        store.modify(link["id"], lambda d: {**d, "expires_at": time.time() - 1})
        assert_problem(client.get(link["url"]), 404, "report-not-found")
        # a report id is not a job
        assert_problem(client.get(f"/jobs/{link['id']}"), 404, "job-not-found")


def test_unknown_reports_are_404_problems(client: TestClient) -> None:
    assert_problem(client.get("/reports/0123456789abcdef0123456789abcdef"), 404, "report-not-found")
    assert_problem(client.get("/jobs/0123456789abcdef0123456789abcdef/report"), 404, "report-not-found")


def test_report_with_a_list_of_urls_is_refused(client: TestClient) -> None:
    r = client.post("/predict/url", params={"report": "true"}, json={"urls": ["https://example.com/a.jpg"]})
    assert_problem(r, 400, "invalid-upload")
