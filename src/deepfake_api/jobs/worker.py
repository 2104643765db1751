"""`deepfake-api worker`'s healthcheck; the worker itself is wired in runtime.run_worker (its own
copy of the model, analysing queued videos only).

With jobs_backend=redis, API replicas queue the jobs and any number of these consume them
(compose, Swarm and k8s run them as their own service). SIGTERM stops it after the current
frame's batch; a job cut off that way, or by kill -9, is taken over after jobs_lease_s.
"""

from __future__ import annotations

import time
from pathlib import Path

from deepfake_api.config import Settings

ALIVE_NAME = "worker.alive"


def alive_file(settings: Settings) -> Path:
    return settings.jobs_dir / ALIVE_NAME


def check(settings: Settings) -> tuple[bool, str]:
    """`deepfake-api worker --check` (a container healthcheck): alive when this host's worker
    reached the job store within the last minute (or 3 leases)."""
    try:
        age = time.time() - alive_file(settings).stat().st_mtime
    except OSError:
        return False, "no worker heartbeat yet"
    stale = age > max(60.0, 3 * settings.jobs_lease_s)
    return not stale, f"last heartbeat {age:.0f} s ago{' (stale)' if stale else ''}"
