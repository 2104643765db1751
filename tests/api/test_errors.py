"""Every error is application/problem+json with a stable type, the request id and no internals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from deepfake_api import errors
from deepfake_api.errors import PROBLEM_BASE, DeepfakeError
from tests.conftest import wait_ready
from tests.utils.apps import build_app

DOMAIN_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, DeepfakeError) and cls is not DeepfakeError
]


@pytest.fixture(scope="module")
def raising() -> TestClient:
    """The real app plus routes that raise, to see how each failure is rendered."""
    app = build_app()

    async def domain(name: str) -> None:
        cls = getattr(errors, name)
        raise cls(f"detail for {name}", headers={"Retry-After": "7"} if cls.status in (429, 503) else None)

    async def boom() -> None:
        raise RuntimeError("secret internal state /srv/keys")

    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    app.add_api_route("/test/domain/{name}", domain)
    app.add_api_route("/test/boom", boom)
    app.add_api_route("/test/typed", typed)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def _problem(r, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance", "request_id"}
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM_BASE)
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    return body


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda c: c.__name__)
def test_each_domain_error_keeps_its_status_type_and_headers(raising: TestClient, cls: type[DeepfakeError]) -> None:
    r = raising.get(f"/test/domain/{cls.__name__}")
    body = _problem(r, cls.status)
    assert body["type"] == PROBLEM_BASE + cls.slug
    assert body["title"] == cls.title
    assert body["detail"] == f"detail for {cls.__name__}"
    assert body["instance"] == f"/test/domain/{cls.__name__}"
    if cls.status in (429, 503):
        assert r.headers["retry-after"] == "7"


def test_domain_error_types_are_unique() -> None:
    slugs = [cls.slug for cls in DOMAIN_ERRORS]
    assert len(slugs) == len(set(slugs))
    assert all(400 <= cls.status < 600 for cls in DOMAIN_ERRORS)


def test_an_unexpected_exception_is_a_500_problem_without_internals(raising: TestClient) -> None:
    r = raising.get("/test/boom")
    body = _problem(r, 500)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert body["type"].endswith("/internal-error")
    assert "secret" not in body["detail"] and "RuntimeError" not in body["detail"]
    # The detail points at the log by the request id, which the body and the header both carry.
    assert "logged with this request id" in body["detail"]
    assert body["request_id"] == r.headers["x-request-id"] and len(body["request_id"]) == 32


def test_a_validation_error_lists_the_fields(raising: TestClient) -> None:
    body = _problem(raising.get("/test/typed", params={"n": "abc"}), 422)
    assert body["type"].endswith("/validation-error")
    assert body["errors"][0]["loc"] == ["query", "n"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/predict", 405),
        ("PUT", "/predict", 405),
        ("GET", "/static/nope.js", 404),
    ],
)
def test_routing_errors_are_problems(client: TestClient, method: str, path: str, status: int) -> None:
    _problem(client.request(method, path), status)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/jobs/0123", "DELETE, GET, HEAD"),
        ("PUT", "/jobs/0123", "DELETE, GET, HEAD"),
        ("GET", "/predict", "POST"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
def test_a_405_lists_every_method_of_the_path(client: TestClient, method: str, path: str, allow: str) -> None:
    """Issue 27 defect 15: OPTIONS /jobs/{id} answered Allow: GET (the first route's methods only)."""
    r = client.request(method, path)
    _problem(r, 405)
    assert r.headers["allow"] == allow


def test_every_documented_error_response_is_problem_json(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    documented = 0
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for status, resp in op["responses"].items():
                readiness = path.startswith("/health") and status == "503"  # a Health body, by design
                if status.startswith(("4", "5")) and "content" in resp and not readiness:
                    assert list(resp["content"]) == ["application/problem+json"], (status, resp)
                    documented += 1
    assert documented >= 7
