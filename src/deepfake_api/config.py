"""Settings, read once from the environment (prefix DEEPFAKE_); defaults serve the committed model."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
MEMINFO = Path("/proc/meminfo")


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's
    `cpus:` / Kubernetes CPU limit), which os.cpu_count() ignores: 64 threads on a 2-CPU quota
    would be throttled, not faster."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def memory_limit(memory_max: Path = CGROUP_MEMORY_MAX, meminfo: Path = MEMINFO) -> int | None:
    """Bytes this process may use: the cgroup v2 memory limit (a container's `memory:` / Kubernetes
    memory limit), else the machine's memory; None when neither can be read."""
    try:
        value = memory_max.read_text().strip()
        if value != "max":
            return int(value)
    except (OSError, ValueError):
        pass
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


BODY_BUDGET_SHARE = 4
"""Without DEEPFAKE_BODY_BUDGET_BYTES, bodies may hold a quarter of the memory limit (split over the
workers), at most BODY_BUDGET_CAP each: the model, decoded images and the runtime need the rest."""
BODY_BUDGET_CAP = 512 * 1024 * 1024


def checkout_root(start: Path | None = None) -> Path | None:
    """The source checkout this package runs from (`make run`: an editable install), found by its
    pyproject.toml beside src/deepfake_api, however deep the file is; None when installed elsewhere
    (a wheel, the container), where the settings name the model."""
    for parent in Path(start or __file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "deepfake_api").is_dir():
            return parent
    return None


def models_dir(start: Path | None = None) -> Path:
    """models/ of the checkout, else of the working directory."""
    return (checkout_root(start) or Path.cwd()) / "models"


_REPO_MODEL = models_dir() / "model_card.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPFAKE_", env_ignore_empty=True, extra="ignore")

    model_path: Path = _REPO_MODEL
    """The model card (or any file beside it): it lists the detectors, their files beside it, the fusion
    and the decision rule; every file is checked against its sha256 at load."""
    assets_dir: Path | None = None
    """Where the third-party weights (face detector, image encoder) were extracted by
    `python -m deepfake_api.assets` (default: models/vendor/ of the checkout)."""
    max_faces: int = Field(4, ge=1, le=64)
    """Faces judged per image (the most confident first); the others are listed as `not_judged`.
    Each judged face costs one encoder pass (0.08-0.11 s on 2 cores with AVX-512 VNNI, several times
    that without), so this bounds a request's cost."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    """uvicorn worker processes; each loads its own copy of the model."""

    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Largest accepted request body; enforced while it streams in (413 beyond)."""
    body_budget_bytes: int = Field(0, ge=0)
    """Request-body bytes all requests of one worker may hold at once, reserved before a body is read
    (its Content-Length, or max_upload_bytes when unknown); beyond it 503 + Retry-After at once.
    0: a quarter of the container's (or machine's) memory, split over the workers, at most 512 MiB."""
    max_batch_files: int = Field(16, ge=1, le=256)
    """Files in one /predict/batch request (or URLs in one /predict/url request)."""
    max_batch_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest /predict/batch body (413 beyond); each file is still held to max_upload_bytes."""
    url_timeout_s: float = Field(10.0, gt=0)
    """Whole fetch of one image by URL, redirects included."""
    url_max_redirects: int = Field(3, ge=0, le=10)
    url_allow_hosts: list[str] = []
    """When set, /predict/url fetches only from these hosts (`example.com`, or `.example.com` for its
    subdomains), and they may resolve to private addresses; empty: any host with public addresses."""
    url_deny_hosts: list[str] = []
    """Hosts /predict/url never fetches from."""
    url_allow_ports: list[int] = [80, 443]
    """Ports a URL may name (hosts on url_allow_hosts may use any)."""
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    """Largest request line + headers when served directly (431 beyond)."""
    header_timeout_s: float = Field(10.0, gt=0)
    """Longest a client may take to send a request's line and headers (408 and closed beyond)."""
    forwarded_allow_ips: str = ""
    """Comma-separated proxy addresses (or "*") whose X-Forwarded-For/-Proto are trusted;
    empty: none (the default; set it to the proxy's address behind one)."""
    max_pixels: int = Field(40_000_000, ge=10_000)
    """Largest width x height, read from the image header before decoding (413 beyond)."""
    min_side: int = Field(32, ge=1)
    """Smallest accepted image side in pixels (422 below)."""

    max_batch_size: int = Field(8, ge=1, le=256)
    """Most faces in one model call (whole images only; an image with more faces goes alone)."""
    max_batch_wait_ms: float = Field(2.0, ge=0.0, le=100.0)
    """How long a batch waits for requests already being decoded; never waits when idle."""
    max_in_flight: int = Field(64, ge=1)
    """Requests admitted at once (decoding, queued or in the model); beyond it 503 + Retry-After."""
    decode_threads: int = Field(0, ge=0)
    """Threads decoding uploads per worker (0: half of the worker's share of the cores, at least 1).
    Decoding is about a third of the CPU per image and the model's threads use the worker's cores;
    on 2 cores one decode thread answered c=1 ~0.6 ms faster than two (bench/REPORT.md)."""
    inference_threads: int = Field(0, ge=0)
    """Threads inside one model call per worker (0: the worker's share of the cores)."""
    request_timeout_s: float = Field(30.0, gt=0)
    """Per-request deadline for /predict once the upload is in (503 beyond)."""
    upload_timeout_s: float = Field(30.0, gt=0)
    """Longest a /predict body may take to arrive (408 and the connection closed beyond): a client
    trickling its upload would otherwise hold a connection and its buffered bytes indefinitely
    (uvicorn has no body timeout; nginx in deploy/ has the same 30 s as client_body_timeout)."""
    retry_after_s: int = Field(1, ge=1)

    # Videos (POST /videos) are analysed as jobs by a worker; see jobs/.
    video_max_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    """Largest video upload; it streams to the job spool on disk (never held in memory) and is
    deleted once analysed, cancelled or failed."""
    video_max_duration_s: float = Field(600.0, gt=0)
    """Longest video, read from the container header at upload (413 beyond); decoding stops there
    too if the header understated it."""
    video_max_pixels: int = Field(3840 * 2160, ge=10_000)
    """Largest frame (width x height) from the header, refused before any frame is decoded (413)."""
    video_min_side: int = Field(32, ge=1)
    """Smallest frame side (422 below)."""
    video_sample_fps: float = Field(2.0, gt=0, le=60)
    """Frames analysed per second of video (fewer when video_max_frames would be exceeded)."""
    video_max_frames: int = Field(240, ge=1, le=10_000)
    """Most frames analysed per video: longer videos are sampled evenly over their whole length."""
    video_frame_max_wait_ms: float = Field(200.0, ge=0)
    """Video frames go to the model after the image requests waiting then (they fill the room a
    batch has left), but a frame that has waited this long is the next batch, on its own: under
    image load a video still moves, a frame about every bound + one batch (README: "Images and
    video frames"). 0: frames first."""
    video_max_wait_s: float = Field(60.0, ge=0)
    """Longest POST /videos?wait=… may hold the request for a result (202 with the job after)."""
    jobs_backend: str = Field("sqlite", pattern="^(sqlite|redis)$")
    """`sqlite`: an embedded queue and job store in jobs_dir (no server; `make run`); `redis`: the
    broker at redis_url, shared by API replicas and separate workers (compose, Swarm, k8s)."""
    jobs_dir: Path = Path.home() / ".local" / "state" / "deepfake-api"
    """The SQLite queue and job store, and the spool of uploaded videos awaiting analysis."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    jobs_embedded_worker: bool = True
    """Run a worker inside the API process (one thread, sharing the served model); false when
    workers run as their own service (`deepfake-api worker`)."""
    jobs_max_active: int = Field(32, ge=1)
    """Videos queued or running at once, over all clients; beyond it 503 + Retry-After."""
    jobs_max_per_client: int = Field(4, ge=1)
    """Videos queued or running at once per client address; beyond it 429."""
    jobs_retry_after_s: int = Field(30, ge=1)
    jobs_admission_lease_s: float = Field(60.0, ge=1)
    """An admitted video holds its place while it uploads and, for this long after, while it is
    checked, stored and queued; a place whose upload or queueing failed half-way (disk full, broker
    gone) is freed after it by itself, even when the clean-up could not reach the store."""
    jobs_result_ttl_s: int = Field(24 * 3600, ge=10)
    """How long a finished job (its result and evidence frames) is kept."""
    jobs_lease_s: float = Field(60.0, ge=1)
    """A running job whose worker has not reported for this long is taken as lost (worker killed):
    it is queued again, or failed after jobs_max_attempts."""
    jobs_max_attempts: int = Field(2, ge=1, le=10)
    jobs_timeout_s: float = Field(1800.0, gt=0)
    """Longest analysis of one video before the job fails with job-timeout."""

    alert_subscriptions: list[dict[str, object]] = []
    """Alert subscriptions of a single-tenant deployment, JSON: each {"url": "https://…", "secret":
    "whsec_…"} or {"emails": ["a@example.com"]}, with "events" (image.fake, image.uncertain,
    video.done, video.fake, video.uncertain) and "min_score". More through /subscriptions when an
    API key is set."""
    alert_allow_private: bool = False
    """Let webhook targets be private, loopback or link-local addresses, and plain http (a lab, an
    internal receiver). Off: https to public addresses only, checked again at every delivery."""
    alert_timeout_s: float = Field(5.0, gt=0, le=60)
    """Longest one webhook attempt (connect + answer) or SMTP conversation may take."""
    alert_max_attempts: int = Field(6, ge=1, le=20)
    """Attempts per alert before it is marked failed (retried on timeouts, 5xx, connection errors)."""
    alert_backoff_s: float = Field(2.0, gt=0)
    """First retry delay; doubled per attempt, with ±50 % jitter, at most alert_backoff_max_s."""
    alert_backoff_max_s: float = Field(600.0, gt=0)
    public_url: str = ""
    """The service's public base URL (https://deepfake.example.com), for job links in alerts."""
    smtp_host: str = ""
    """The SMTP server for e-mail alerts (empty: e-mail subscriptions are refused)."""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: str = Field("starttls", pattern="^(starttls|tls|none)$")
    """starttls (submission, 587), tls (implicit TLS, 465), none (a local relay)."""
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = "deepfake-api@localhost"

    api_key: SecretStr | None = None
    """When set, /predict requires it in the X-API-Key header."""
    cors_origins: list[str] = []
    """Origins allowed to call the API from a browser (none by default)."""
    rate_limit: str = ""
    """Per-client limit on the image routes (/predict, /predict/batch, /predict/url) in `limits`
    notation, e.g. "60/minute"; empty: no limit. Each route class has its own bucket."""
    rate_limit_jobs: str = ""
    """Per-client limit on /videos and /jobs/… (uploads and polling), e.g. "600/minute"; empty: none."""
    rate_limit_subscriptions: str = ""
    """Per-client limit on /subscriptions/…, e.g. "60/minute"; empty: none."""

    log_level: str = "INFO"
    log_json: bool = True

    @property
    def cores_per_worker(self) -> int:
        return max(1, available_cpus() // self.workers)

    @model_validator(mode="after")
    def _share_the_cores(self) -> Settings:
        """Each worker is a process with its own threads: together they should not exceed the cores."""
        if self.inference_threads == 0:
            self.inference_threads = self.cores_per_worker
        if self.decode_threads == 0:
            self.decode_threads = max(1, self.cores_per_worker // 2)
        if self.body_budget_bytes == 0:
            memory = memory_limit() or 4 * BODY_BUDGET_CAP
            self.body_budget_bytes = min(BODY_BUDGET_CAP, memory // BODY_BUDGET_SHARE // self.workers)
        # One upload (and one batch) of the largest size must always fit, or it could never be accepted.
        self.body_budget_bytes = max(self.body_budget_bytes, self.max_upload_bytes, self.max_batch_bytes)
        return self

    @field_validator("api_key")
    @classmethod
    def _header_safe(cls, v: SecretStr | None) -> SecretStr | None:
        # The key travels in an HTTP header (latin-1 on the wire): any other character could never match.
        if v is not None and not (v.get_secret_value().isascii() and v.get_secret_value().isprintable()):
            raise ValueError("api_key must be printable ASCII: it is sent in the X-API-Key header")
        return v

    @field_validator("rate_limit", "rate_limit_jobs", "rate_limit_subscriptions")
    @classmethod
    def _rate_limit_spec(cls, v: str) -> str:
        if v:
            from limits import parse  # a wrong spec fails at startup, not on the first request

            parse(v)
        return v

    @field_validator("log_level")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


@lru_cache
def get_settings() -> Settings:
    return Settings()
