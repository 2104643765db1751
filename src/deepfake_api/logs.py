"""Logging for the API, the worker and the CLI: one JSON line per record, no server directories,
written off the event loop; quiet unless asked (the CLI) and never a traceback storm (the worker).

Records are queued where they happen and formatted and written by a listener thread, so the event
loop never formats JSON or blocks on stderr. Libraries' records (huey, redis, uvicorn) go through
the same writer: a worker that loses Redis says so in JSON, once per `REPEAT_S` for the same
message, with the exception's type and message instead of a traceback.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import re
import sys
import threading
import time
import warnings
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from deepfake_api.config import Settings

PATH_DIRS = re.compile(r"(?:/[^/\s:,'\"()]+)+/")
"""Directories in a message or traceback (`/srv/app/.venv/lib/.../x.py` → `x.py`)."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
OURS = "deepfake_api"
REPEAT_S = 10.0

_listener: logging.handlers.QueueListener | None = None


def strip_dirs(text: str) -> str:
    return PATH_DIRS.sub("", text)


class PathlessJsonFormatter(JsonFormatter):
    """One JSON object per line; messages and tracebacks without the server's directories."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return strip_dirs(str(super().formatMessage(record)))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return strip_dirs(str(super().formatException(ei)))

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        message = log_record.get("message")
        if isinstance(message, str):
            log_record["message"] = strip_dirs(message)
        return log_record


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stderr as it is when a record is written, not as it was when the app was built:
    an app built in process (the CLI's in-process scorer, tests) outlives a swapped-out stderr."""

    @property
    def stream(self) -> Any:
        return self.__dict__.get("_fixed") or sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        # setStream() to another stream sticks; sys.stderr itself is followed wherever it points.
        self.__dict__["_fixed"] = None if value is sys.stderr else value


class LibraryRecords(logging.Filter):
    """For records that are not ours: the same message at most once per `REPEAT_S` (a consumer
    that cannot reach its broker logs every poll), and the exception as one line, not a traceback."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        super().__init__()
        self.repeat_s = repeat_s
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == OURS or record.name.startswith(OURS + "."):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.repeat_s) < self.repeat_s:
                return False
            self._last[key] = now
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.error = f"{type(exc).__name__}: {strip_dirs(str(exc))}"
            record.exc_info = record.exc_text = None
        return True


def configure_logging(settings: Settings, *, libraries: bool = False) -> logging.StreamHandler:  # type: ignore[type-arg]
    """Our records (and, with `libraries`, every library's through the root logger, as a worker
    needs: it has no uvicorn log config) go to one queued JSON writer on stderr. Returns the writer."""
    global _listener
    flush_logs()
    handler = CurrentStderr()
    if settings.log_json:
        handler.setFormatter(PathlessJsonFormatter(LOG_FORMAT))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    ours = logging.getLogger(OURS)
    ours.handlers[:] = [logging.handlers.QueueHandler(records)]
    ours.setLevel(settings.log_level)
    ours.propagate = False
    if libraries:
        root = logging.getLogger()
        enqueue = logging.handlers.QueueHandler(records)
        enqueue.addFilter(LibraryRecords())  # before the queue: it would merge the traceback into the message
        root.handlers[:] = [enqueue]
        root.setLevel(logging.WARNING)
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    return handler


def flush_logs(*, keep_logging: bool = False) -> None:
    """Write out every queued record: at exit or before reconfiguring (the writer stops), or when
    an app shuts down in a process that goes on (`keep_logging`: the writer starts again)."""
    global _listener
    if _listener is not None:
        _listener.stop()  # drains the queue, then joins the writer thread
        if keep_logging:
            _listener.start()
        else:
            _listener = None


atexit.register(flush_logs)


def log_warnings() -> None:
    """Python warnings become log records (category and message, no file path or source line)."""
    logger = logging.getLogger("py.warnings")

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        logger.warning("%s: %s", category.__name__, strip_dirs(str(message)))

    warnings.showwarning = show
