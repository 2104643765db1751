"""Inference engine: admission control, decoding in a thread pool, and micro-batching.

Each request gets a Future. A single batch loop takes what is queued, and waits up to
`max_wait_ms` for more only while other admitted requests are still being decoded (so an
idle service adds no latency), then makes one model call in the model's own thread and
hands each caller its own result. A failing image fails only its own request: decoding
errors happen before batching; a failing model call reaches every waiter of that batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deepfake_api import metrics
from deepfake_api.errors import ModelNotReady, Overloaded
from deepfake_api.model import Decision, Label
from deepfake_api.preprocess import DecodedImage, ModelInputs, preprocess


class Predictor(Protocol):
    """What the engine needs of a model (DeepfakeModel, or a fake in tests)."""

    decision: Decision | None

    def predict_logits(self, local: np.ndarray, global_: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Verdict:
    label: Label
    score: float
    image: DecodedImage


@dataclass
class _Pending:
    inputs: ModelInputs
    future: asyncio.Future[float]


class InferenceEngine:
    def __init__(
        self,
        model: Predictor,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 2.0,
        max_in_flight: int = 64,
        decode_threads: int = 2,
        retry_after_s: int = 1,
        decode: Callable[[bytes], tuple[DecodedImage, ModelInputs]] = preprocess,
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self._decode = decode
        self._decode_pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._in_flight = 0
        self._decoding = 0
        # Created in start(): an asyncio.Queue belongs to the loop that runs it.
        self._queue: asyncio.Queue[_Pending] | None = None
        self._more: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._more = asyncio.Event()
        self._task = asyncio.create_task(self._batch_loop(), name="batch-loop")

    async def stop(self) -> None:
        """Finish what is queued, then stop the loop and the pools."""
        if self._task is not None:
            while self._in_flight:
                await asyncio.sleep(0.01)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._decode_pool.shutdown(wait=True)
        self._model_pool.shutdown(wait=True)

    async def predict(self, data: bytes) -> Verdict:
        """Admit, decode, batch and score one image; raises domain errors for bad input."""
        if not self.running or self.model.decision is None:
            raise ModelNotReady("The model is still loading; retry shortly.", headers=self._retry())
        if self._in_flight >= self.max_in_flight:
            metrics.REJECTED.labels("overloaded").inc()
            raise Overloaded(
                f"{self._in_flight} requests are in progress, the limit is {self.max_in_flight}.",
                headers=self._retry(),
            )
        self._in_flight += 1
        metrics.IN_FLIGHT.set(self._in_flight)
        try:
            return await self._predict(data)
        finally:
            self._in_flight -= 1
            metrics.IN_FLIGHT.set(self._in_flight)

    async def _predict(self, data: bytes) -> Verdict:
        loop = asyncio.get_running_loop()
        self._decoding += 1
        try:
            decoded, inputs = await loop.run_in_executor(self._decode_pool, self._decode, data)
        finally:
            self._decoding -= 1
            self._notify()
        assert self._queue is not None and self.model.decision is not None
        future: asyncio.Future[float] = loop.create_future()
        self._queue.put_nowait(_Pending(inputs, future))
        metrics.QUEUE_DEPTH.set(self._queue.qsize())
        self._notify()
        logit = await future
        score = float(self.model.decision.score(np.array([logit]))[0])
        label = self.model.decision.label(score)
        metrics.PREDICTIONS.labels(label).inc()
        return Verdict(label=label, score=score, image=decoded)

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}

    def _notify(self) -> None:
        if self._more is not None:
            self._more.set()

    async def _gather_batch(self) -> tuple[list[_Pending], str]:
        """The next batch and why it was closed: "full", "idle" (nothing decoding) or "wait" (time cap)."""
        assert self._queue is not None and self._more is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        closed_by = "full"
        while len(batch) < self.max_batch_size:
            while not self._queue.empty() and len(batch) < self.max_batch_size:
                batch.append(self._queue.get_nowait())
            remaining = deadline - time.monotonic()
            if len(batch) >= self.max_batch_size:
                break
            if self._decoding == 0:
                closed_by = "idle"
                break
            if remaining <= 0:
                closed_by = "wait"
                break
            # Others are mid-decode: wait (without spinning) for one to arrive or for the cap.
            self._more.clear()
            try:
                await asyncio.wait_for(self._more.wait(), remaining)
            except TimeoutError:
                closed_by = "wait"
                break
        metrics.QUEUE_DEPTH.set(self._queue.qsize())
        return batch, closed_by

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, closed_by = await self._gather_batch()
            # Callers past their deadline have gone (their futures are cancelled): under overload,
            # scoring them would only delay the live ones behind them.
            batch = [p for p in batch if not p.future.done()]
            if not batch:
                continue
            metrics.BATCHES.labels(closed_by).inc()
            local = np.stack([p.inputs.local for p in batch])
            global_ = np.stack([p.inputs.global_ for p in batch])
            started = time.perf_counter()
            try:
                logits = await loop.run_in_executor(self._model_pool, self.model.predict_logits, local, global_)
            except Exception as exc:  # every waiter of this batch learns of the failure
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(len(batch))
            for p, logit in zip(batch, logits, strict=True):
                if not p.future.done():  # a caller past its deadline has gone
                    p.future.set_result(float(logit))
