"""Inference engine: admission control, the face path in a thread pool, and micro-batching.

Each admitted request gets a Future on its event loop. A decode worker decodes the bytes, finds
and aligns the faces (faces.analyse) and hands the crops straight to the model thread, which
takes what is ready (up to `max_batch_size` faces), waits up to `max_wait_ms` for more only
while other admitted requests are still being decoded (so an idle service adds no latency),
makes one model call and resolves each caller's future with its own verdict: the most-fake of
its faces. An image with no face to judge is answered by its decode worker, without the model.
The event loop never waits on a thread and never runs model or decode code.
A failing image fails only its own request (decoding errors are answered before batching); a
failing model call reaches every waiter of that batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from deepfake_api import metrics
from deepfake_api.errors import ModelNotReady, Overloaded
from deepfake_api.faces import FaceCandidate, ImageFaces
from deepfake_api.model import Decision, FaceScores, Label
from deepfake_api.preprocess import accepted_format

ImageLabel = Label | Literal["no_face"]


class Predictor(Protocol):
    """What the engine needs of a model (DeepfakeModel, or a fake in tests)."""

    decision: Decision | None

    def predict_faces(self, crops: np.ndarray, explain: bool = False) -> FaceScores: ...


@dataclass(frozen=True)
class FaceVerdict:
    candidate: FaceCandidate
    score: float | None = None  # fused, calibrated; None when the face was not judged
    label: Label | None = None
    detectors: dict[str, float] = field(default_factory=dict)
    # Asked-for evidence (explain): the fused patch map over the aligned crop, GRID x GRID, in
    # fused-logit units (> 0 pushes towards fake); None unless explained.
    heatmap: np.ndarray | None = None
    # The kind head's probabilities (model.kind_head.kinds order); None without a kind head.
    kinds: np.ndarray | None = None


@dataclass(frozen=True)
class Verdict:
    """The image's verdict is its most-fake judged face; `no_face` when no face could be judged."""

    label: ImageLabel
    score: float | None
    image: ImageFaces
    faces: list[FaceVerdict]


def no_face_verdict(image: ImageFaces) -> Verdict:
    return Verdict("no_face", None, image, [FaceVerdict(c) for c in image.faces])


@dataclass
class _Pending:
    image: ImageFaces
    future: asyncio.Future[Verdict] | concurrent.futures.Future[Verdict]
    loop: asyncio.AbstractEventLoop | None  # None: a caller on a plain thread (a video job's frames)
    explain: bool = False
    queued_at: float = 0.0  # time.monotonic() when a video frame was queued

    @property
    def n_faces(self) -> int:
        return len(self.image.judged)


def _resolve(future: asyncio.Future[Verdict], verdict: Verdict | None, error: BaseException | None) -> None:
    """On the caller's loop: hand over the answer unless the caller has gone (deadline, disconnect)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(verdict)  # type: ignore[arg-type]


def _deliver(
    loop: asyncio.AbstractEventLoop | None,
    future: asyncio.Future[Verdict] | concurrent.futures.Future[Verdict],
    verdict: Verdict | None,
    error: BaseException | None = None,
) -> None:
    """From a worker thread: schedule `_resolve` on the caller's loop, if that loop still runs
    (or resolve a plain thread's concurrent Future at once)."""
    if loop is None:
        assert isinstance(future, concurrent.futures.Future)
        if future.set_running_or_notify_cancel():
            future.set_exception(error) if error is not None else future.set_result(verdict)  # type: ignore[arg-type]
        return
    try:
        loop.call_soon_threadsafe(_resolve, future, verdict, error)
    except RuntimeError:  # the loop has closed (its caller is long gone): nobody to tell
        pass


class InferenceEngine:
    def __init__(
        self,
        model: Predictor,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        max_in_flight: int = 64,
        decode_threads: int = 2,
        retry_after_s: int = 1,
        frame_max_wait_ms: float = 200.0,
        decode: Callable[[bytes], ImageFaces],
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.frame_max_wait = frame_max_wait_ms / 1000.0
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self._decode = decode
        self._decode_pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")
        self._in_flight = 0  # touched on the event loop only
        # Shared by the decode workers and the model thread, under `_changed`:
        self._changed = threading.Condition()
        self._decoding = 0
        self._ready: deque[_Pending] = deque()  # decoded image requests, first come first served
        self._frames: deque[_Pending] = deque()  # video frames: after the images, but not for long
        self._model_busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def queue_depth(self) -> int:
        """Decoded requests and video frames waiting for the model."""
        return len(self._ready) + len(self._frames)

    async def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._model_loop, name="model", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Finish what was admitted, then stop the model thread and the decode pool."""
        if self._thread is not None:
            while self._in_flight:
                await asyncio.sleep(0.01)
            with self._changed:
                self._stopping = True
                self._changed.notify_all()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._decode_pool.shutdown(wait=True)

    def ensure_ready(self) -> None:
        """ModelNotReady (503) until the model is loaded and the model thread runs."""
        if not self.running or self.model.decision is None:
            raise ModelNotReady("The model is still loading; retry shortly.", headers=self._retry())

    async def predict(self, data: bytes | bytearray, explain: bool = False) -> Verdict:
        """Admit, decode, batch and score one image; raises domain errors for bad input. With
        `explain`, its judged faces also get their heatmaps (a no-face image is answered as ever)."""
        self.ensure_ready()
        accepted_format(data)  # a wrong type is 415 at once, not queued behind images or told to retry
        if self._in_flight >= self.max_in_flight:
            metrics.REJECTED.labels("overloaded").inc()
            raise Overloaded(
                f"{self._in_flight} requests are in progress, the limit is {self.max_in_flight}.",
                headers=self._retry(),
            )
        self._in_flight += 1
        metrics.IN_FLIGHT.set(self._in_flight)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Verdict] = loop.create_future()
        with self._changed:
            self._decoding += 1
        try:
            try:
                self._decode_pool.submit(self._decode_then_queue, data, future, loop, explain)
            except RuntimeError:  # the pool is shutting down
                with self._changed:
                    self._decoding -= 1
                raise ModelNotReady("The service is shutting down; retry shortly.", headers=self._retry()) from None
            verdict = await future
        finally:
            self._in_flight -= 1
            metrics.IN_FLIGHT.set(self._in_flight)
        metrics.PREDICTIONS.labels(verdict.label).inc()
        return verdict

    def score_frame(self, image: ImageFaces, explain: bool = False) -> concurrent.futures.Future[Verdict]:
        """From a thread that is not an event loop (a video job): the judged faces of one decoded
        frame go to the model thread and are batched with the images being served."""
        future: concurrent.futures.Future[Verdict] = concurrent.futures.Future()
        if not image.judged:
            future.set_result(no_face_verdict(image))
            return future
        with self._changed:
            if not self.running:
                raise ModelNotReady("The model is not running.")
            self._frames.append(_Pending(image, future, None, explain, time.monotonic()))
            metrics.QUEUE_DEPTH.set(self.queue_depth)
            self._changed.notify_all()
        return future

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}

    def _decode_then_queue(
        self, data: bytes, future: asyncio.Future[Verdict], loop: asyncio.AbstractEventLoop, explain: bool = False
    ) -> None:
        """In a decode worker: decode, then hand the inputs straight to the model thread.

        A bad image is answered from here and never reaches a batch. When nothing else is
        decoding, queued or in the model, there is no batch to form: this worker makes the
        model call itself (a batch of one), which saves a thread hand-off on an idle service.
        """
        pending = None
        try:
            image = self._decode(data)
            if image.judged:
                pending = _Pending(image, future, loop, explain)
            else:
                _deliver(loop, future, no_face_verdict(image))
        except Exception as exc:
            _deliver(loop, future, None, exc)
        inline = False
        with self._changed:
            self._decoding -= 1
            if pending is not None and not future.done():  # a caller past its deadline has gone
                inline = self._decoding == 0 and not self._ready and not self._frames and not self._model_busy
                if inline:
                    self._model_busy = True
                else:
                    self._ready.append(pending)
                    metrics.QUEUE_DEPTH.set(self.queue_depth)
            self._changed.notify_all()
        if inline:
            assert pending is not None
            try:
                self._run([pending], "idle")
            finally:
                self._release_model()

    def _release_model(self) -> None:
        with self._changed:
            self._model_busy = False
            self._changed.notify_all()

    def _next_batch(self) -> tuple[list[_Pending], str] | None:
        """In the model thread: the next batch and why it closed ("full", "idle" or "wait"); None to stop.

        Waits (without spinning) for more only while other admitted requests are still
        decoding and for at most `max_wait`: an idle service adds no latency.
        """
        with self._changed:
            while not (self._ready or self._frames) or self._model_busy:
                if self._stopping and not (self._ready or self._frames):
                    return None
                self._changed.wait()
            deadline = time.monotonic() + self.max_wait
            closed_by = "full"
            while self._queued_faces() < self.max_batch_size:
                if self._decoding == 0:
                    closed_by = "idle"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._changed.wait(remaining):
                    closed_by = "wait"
                    break
            batch = self._take()
            self._model_busy = True
            metrics.QUEUE_DEPTH.set(self.queue_depth)
        return batch, closed_by

    def _queued_faces(self) -> int:
        return sum(p.n_faces for p in self._ready) + sum(p.n_faces for p in self._frames)

    def _take(self) -> list[_Pending]:
        """Whole images, up to max_batch_size faces (an image with more faces than that goes alone).

        The priority (README, "Images and video frames"): image requests first, in order, and
        video frames fill the room a batch has left; a frame that has waited `frame_max_wait`
        goes next, in a batch of its own (the images behind it wait for its faces either way, and
        its own answer is not held up by theirs). So under image load a video still moves, a
        frame about every bound plus one batch, and an image waits at most one frame's faces more.
        """
        overdue = bool(self._frames) and time.monotonic() - self._frames[0].queued_at >= self.frame_max_wait
        batch: list[_Pending] = []
        faces = 0
        for queue in (self._frames,) if overdue else (self._ready, self._frames):
            while queue and (not batch or faces + queue[0].n_faces <= self.max_batch_size):
                faces += queue[0].n_faces
                batch.append(queue.popleft())
        return batch

    def _model_loop(self) -> None:
        while (taken := self._next_batch()) is not None:
            batch, closed_by = taken
            # Callers past their deadline have gone (their futures are cancelled): under overload,
            # scoring them would only delay the live ones behind them.
            batch = [p for p in batch if not p.future.done()]
            try:
                if batch:
                    self._run(batch, closed_by)
            finally:
                self._release_model()

    def _run(self, batch: list[_Pending], closed_by: str) -> None:
        """One model call for `batch`; every waiter gets its verdict, or the error if anything fails
        (the model, or a wrong-sized answer): the thread itself survives for the next batch."""
        try:
            verdicts = self._score(batch, closed_by)
        except Exception as exc:
            for p in batch:
                _deliver(p.loop, p.future, None, exc)
            return
        for p, verdict in zip(batch, verdicts, strict=True):
            _deliver(p.loop, p.future, verdict)

    def _score(self, batch: list[_Pending], closed_by: str) -> list[Verdict]:
        metrics.BATCHES.labels(closed_by).inc()
        decision = self.model.decision
        assert decision is not None
        # Images that asked for explanations go in their own model call: the others' cost stays as it was.
        groups = [[p for p in batch if not p.explain], [p for p in batch if p.explain]]
        scored: dict[int, tuple[FaceScores, int]] = {}  # id(pending) -> (its group's scores, its first face)
        for explain, group in enumerate(groups):
            if not group:
                continue
            crops = np.stack([c.crop for p in group for c in p.image.judged])  # type: ignore[misc]
            started = time.perf_counter()
            scores = self.model.predict_faces(crops, explain=True) if explain else self.model.predict_faces(crops)
            if len(scores.fused) != len(crops):
                raise RuntimeError(f"the model answered {len(scores.fused)} scores for {len(crops)} faces")
            metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(len(crops))
            first = 0
            for p in group:
                scored[id(p)] = (scores, first)
                first += p.n_faces
        verdicts = []
        for p in batch:
            scores, i = scored[id(p)]
            fused = scores.fused
            faces = []
            for c in p.image.faces:
                if c.status != "judged":
                    faces.append(FaceVerdict(c))
                    continue
                s = round(float(fused[i]), 6)
                detectors = {name: round(float(v[i]), 6) for name, v in scores.by_detector.items()}
                heatmap = scores.heatmap[i] if scores.heatmap is not None else None
                kinds = scores.kinds[i] if scores.kinds is not None else None
                faces.append(FaceVerdict(c, s, decision.label(s), detectors, heatmap, kinds))
                i += 1
            top = max((f.score for f in faces if f.score is not None), default=None)
            assert top is not None  # only images with judged faces reach a batch
            verdicts.append(Verdict(decision.label(top), top, p.image, faces))
        return verdicts
