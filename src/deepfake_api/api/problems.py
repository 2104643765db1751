"""One renderer for every error: RFC 9457 `application/problem+json`, never a stack trace."""

from __future__ import annotations

import http
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from deepfake_api.api.middleware import SECURITY_HEADERS
from deepfake_api.errors import PROBLEM_BASE, DeepfakeError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("deepfake_api")


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def problem(
    request: Request,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id_of(request),
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_body(request: Request, exc: DeepfakeError) -> dict[str, Any]:
    """The problem object of a domain error, for a slot of a batch result."""
    return exc.problem(instance=request.url.path, request_id=request_id_of(request))


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeepfakeError)
    return problem(request, status=exc.status, slug=exc.slug, title=exc.title, detail=exc.detail, headers=exc.headers)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = http.HTTPStatus(exc.status_code).phrase
    slug = phrase.lower().replace(" ", "-").replace("'", "")
    detail = (
        exc.detail
        if isinstance(exc.detail, str) and exc.detail != phrase
        else {
            404: f"There is no resource at {request.url.path}.",
            405: f"{request.method} is not allowed on {request.url.path}.",
        }.get(exc.status_code, phrase)
    )
    headers = exc.headers
    if exc.status_code == 405:  # every method of every route at this path, not only the first route's
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return problem(request, status=exc.status_code, slug=slug, title=phrase, detail=detail, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods some route answers at this path (asked of the router itself: included routers too)."""
    methods = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.add(method)
    if "GET" in methods:
        methods.add("HEAD")  # HeadAsGet serves HEAD on every GET route
    return sorted(methods)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return problem(
        request,
        status=422,
        slug="validation-error",
        title="The request is not valid",
        detail="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
        errors=errors,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"request_id": request_id_of(request)})
    # Starlette sends this response from outside our middleware: add what RequestContext would.
    headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
    headers["X-Request-ID"] = request_id_of(request)
    return problem(
        request,
        status=500,
        slug="internal-error",
        title="Internal server error",
        detail="The server failed to handle the request; it has been logged with this request id.",
        headers=headers,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DeepfakeError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
