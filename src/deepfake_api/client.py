"""Scoring images in-process or through a running service: one interface for the CLI and
for evaluation. Both return the /predict response body as a dict."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from deepfake_api.config import get_settings


class ScoreError(Exception):
    """An image could not be scored; `problem` holds the problem+json body when there is one."""

    def __init__(self, message: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problem = problem or {}


class Scorer(Protocol):
    def score(self, data: bytes, filename: str = "image") -> dict[str, Any]: ...

    def score_many(self, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]: ...

    def score_urls(self, urls: list[str]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...

    def submit_video(self, path: Path) -> dict[str, Any]: ...

    def wait_job(
        self, job_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None, poll_s: float = 0.5
    ) -> dict[str, Any]: ...


def retry_after(value: str | None, default: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds; an HTTP date or junk → default)."""
    try:
        return min(cap, max(0.0, float(value))) if value is not None else default
    except ValueError:
        return default


class HttpScorer:
    """A running service's POST /predict, with retries on 503 (honouring Retry-After)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        client: httpx.Client | None = None,
        explain: bool = False,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.params = {"explain": "true"} if explain else {}  # heatmaps for every judged face
        self.client = client or httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries

    def score(self, data: bytes, filename: str = "image") -> dict[str, Any]:
        return self._post("/predict", files={"file": (filename, data)}, params=self.params)

    def score_many(self, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """One /predict/batch call: per file, its prediction, or {"error": ..., "problem": ...}.
        Files refused with 503 in their slot (the service was busy) are sent again, alone."""
        body = self._post("/predict/batch", files=[("file", (name, data)) for name, data in files], params=self.params)
        return [
            self._slot(slot, lambda i=i: self.score(files[i][1], files[i][0])) for i, slot in enumerate(body["results"])
        ]

    def score_urls(self, urls: list[str]) -> list[dict[str, Any]]:
        body = self._post("/predict/url", json={"urls": urls}, params=self.params)
        return [
            self._slot(slot, lambda u=u: self._post("/predict/url", json={"url": u}, params=self.params))
            for u, slot in zip(urls, body["results"], strict=True)
        ]

    def submit_video(self, path: Path) -> dict[str, Any]:
        """POST /videos (streamed from the file): the job."""
        with Path(path).open("rb") as fh:
            return self._post("/videos", files={"file": (Path(path).name, fh)})

    def job(self, job_id: str) -> dict[str, Any]:
        try:
            response = self.client.get(f"/jobs/{job_id}")
        except httpx.HTTPError as exc:
            raise ScoreError(f"cannot reach the service: {exc}") from None
        if not response.is_success:
            problem = response.json()
            raise ScoreError(f"{problem.get('title')}: {problem.get('detail')}", problem)
        body: dict[str, Any] = response.json()
        return body

    def wait_job(
        self, job_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None, poll_s: float = 0.5
    ) -> dict[str, Any]:
        """Poll the job until it is done, failed or cancelled; `on_progress` sees every state."""
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            time.sleep(poll_s)

    def _slot(self, slot: dict[str, Any], again: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if slot["status"] == 200:
            prediction: dict[str, Any] = slot["prediction"]
            return prediction
        if slot["status"] == 503 and self.retries:
            try:
                retried: dict[str, Any] = again()
                return retried
            except ScoreError as exc:
                return {"error": str(exc), "problem": exc.problem}
        problem = slot["problem"]
        return {"error": f"{problem.get('title')}: {problem.get('detail')}", "problem": problem}

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(path, **kwargs)
            except httpx.HTTPError as exc:
                raise ScoreError(f"cannot reach the service: {exc}") from None
            if response.status_code == 503 and attempt < self.retries:
                time.sleep(retry_after(response.headers.get("Retry-After")))
                continue
            if response.is_success:
                body: dict[str, Any] = response.json()
                return body
            try:
                problem = response.json()
            except ValueError:
                problem = {"status": response.status_code, "detail": response.text[:200]}
            raise ScoreError(f"{problem.get('title', response.status_code)}: {problem.get('detail', '')}", problem)
        raise ScoreError("the service stayed unavailable")  # pragma: no cover - loop always returns

    def close(self) -> None:
        self.client.close()


class LocalScorer(HttpScorer):
    """The service's own app in this process (no socket): the same face path, model and response."""

    def __init__(self, model_path: Path, *, explain: bool = False, verbose: bool = False) -> None:
        import tempfile

        self._explain = explain
        self._verbose = verbose
        # Videos are jobs of this process's own embedded worker: a private queue, gone at exit.
        self._jobs_dir = tempfile.TemporaryDirectory(prefix="deepfake-jobs-")
        try:
            self._start(model_path)
        except BaseException:
            self._jobs_dir.cleanup()  # a scorer that never started leaves nothing behind
            raise

    def _start(self, model_path: str | Path) -> None:
        from fastapi.testclient import TestClient

        from deepfake_api.app import create_app

        settings = get_settings().model_copy(
            update={
                "model_path": Path(model_path),
                "api_key": None,
                "jobs_backend": "sqlite",
                "jobs_dir": Path(self._jobs_dir.name),
                "jobs_embedded_worker": True,
                # The service's access log would interleave with the progress bars: only trouble,
                # unless asked (--verbose).
                "log_level": "INFO" if self._verbose else "WARNING",
            }
        )
        app = create_app(settings)
        client = TestClient(app, base_url="http://in-process")
        client.__enter__()  # runs the lifespan: loads and warms the model
        super().__init__("http://in-process", client=client, retries=1, explain=self._explain)
        deadline = time.monotonic() + 300
        while (health := client.get("/health/ready")).status_code != 200:
            if app.state.load_error or time.monotonic() > deadline:
                client.__exit__(None, None, None)
                raise ScoreError(f"the model did not load: {app.state.load_error or health.json()}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.__exit__(None, None, None)  # type: ignore[attr-defined]
        self._jobs_dir.cleanup()


def make_scorer(
    url: str | None, model_path: Path, api_key: str | None = None, *, explain: bool = False, verbose: bool = False
) -> Scorer:
    if url:
        return HttpScorer(url, api_key=api_key, explain=explain)
    return LocalScorer(model_path, explain=explain, verbose=verbose)
