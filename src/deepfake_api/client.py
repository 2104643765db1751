"""Scoring images in-process or through a running service: one interface for the CLI and
for evaluation. Both return the /predict response body as a dict."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from deepfake_api.config import get_settings
from deepfake_api.errors import DeepfakeError
from deepfake_api.model import DeepfakeModel
from deepfake_api.preprocess import preprocess


class ScoreError(Exception):
    """An image could not be scored; `problem` holds the problem+json body when there is one."""

    def __init__(self, message: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problem = problem or {}


class Scorer(Protocol):
    def score(self, data: bytes, filename: str = "image") -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalScorer:
    """The model in this process, through the same preprocessing as the service."""

    def __init__(self, model_path: Path) -> None:
        self.model = DeepfakeModel(model_path, threads=get_settings().inference_threads)
        self.model.load()
        self.model.warm()

    def score(self, data: bytes, filename: str = "image") -> dict[str, Any]:
        started = time.perf_counter()
        try:
            decoded, inputs = preprocess(data)
        except DeepfakeError as exc:
            raise ScoreError(f"{exc.title}: {exc.detail}", {"type": exc.type, "status": exc.status}) from None
        logit = self.model.predict_logits(inputs.local[None], inputs.global_[None])
        decision = self.model.decision
        assert decision is not None
        score = float(decision.score(np.asarray(logit))[0])
        return {
            "label": decision.label(score),
            "score": score,
            "threshold": decision.threshold,
            "uncertain_band": [decision.band_low, decision.band_high],
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "image": {"width": decoded.width, "height": decoded.height, "format": decoded.format},
            "processing_time_ms": round((time.perf_counter() - started) * 1000, 2),
            "warnings": decoded.warnings,
        }

    def close(self) -> None:
        return None


class HttpScorer:
    """A running service's POST /predict, with retries on 503 (honouring Retry-After)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0, retries: int = 3) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries

    def score(self, data: bytes, filename: str = "image") -> dict[str, Any]:
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post("/predict", files={"file": (filename, data)})
            except httpx.HTTPError as exc:
                raise ScoreError(f"cannot reach the service: {exc}") from None
            if response.status_code == 503 and attempt < self.retries:
                time.sleep(float(response.headers.get("Retry-After", "1")))
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


def make_scorer(url: str | None, model_path: Path, api_key: str | None = None) -> Scorer:
    return HttpScorer(url, api_key=api_key) if url else LocalScorer(model_path)
