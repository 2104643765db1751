#!/usr/bin/env bash
# CI container stage (run by .ci/run when CI=true): build the image, prove it under
# docker-compose, then as a 2-replica swarm stack behind the nginx proxy, and clean up.
#
#   bash .ci/container.sh               the checks CI runs
#   bash .ci/container.sh --kill-test   also, under light load through the proxy: kill one
#                                       replica, then roll the service (start-first)
#
# Needs root (it may install and start a Docker engine) and the repo's .venv (made by
# `make test`) for the HTTP checks. Every wait is bounded; any failed check fails the stage
# with a message, and the trap removes what the stage created: containers, stack, the
# swarm it joined, and the engine it started.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
SHARED=${DEEPFAKE_SHARED_DIR:-$(dirname "$REPO")/shared}
PROJECT=deepfake-ci
STACK=deepfake
REPLICAS=2
KILL_TEST=0
[ "${1:-}" = "--kill-test" ] && KILL_TEST=1
PY=$REPO/.venv/bin/python
WORK=$(mktemp -d)
export COMPOSE_PROJECT_NAME=$PROJECT DEEPFAKE_TAG=${DEEPFAKE_TAG:-latest}
# A short lease, so the kill -9 check waits seconds, not a minute, for the takeover.
export DEEPFAKE_JOBS_LEASE_S=${DEEPFAKE_JOBS_LEASE_S:-15}

STARTED=$(date +%s)
STAGE_NAME="" STAGE_START=0
ENGINE_PID=0 SWARM_JOINED=0 COMPOSE_UP=0 STACK_UP=0

say() { echo "[container $(($(date +%s) - STARTED))s] $*"; }
fail() { echo "CONTAINER STAGE FAILED: $*" >&2; exit 1; }
stage() {
  [ -n "$STAGE_NAME" ] && say "-- $STAGE_NAME: $(($(date +%s) - STAGE_START)) s"
  STAGE_NAME=$1 STAGE_START=$(date +%s)
  [ -n "$1" ] && echo "== container: $1"
  return 0
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    echo "== container: diagnostics after failure (exit $rc)"
    [ "$COMPOSE_UP" = 1 ] && docker-compose ps && docker-compose logs --no-color --tail=60
    if [ "$STACK_UP" = 1 ]; then
      docker service ps --no-trunc "${STACK}_api" "${STACK}_proxy" "${STACK}_worker" "${STACK}_redis"
      docker service logs --tail 40 "${STACK}_worker"
      docker service logs --tail 40 "${STACK}_api"
      docker service logs --tail 40 "${STACK}_proxy"
    fi
  fi
  echo "== container: cleanup"
  [ "$COMPOSE_UP" = 1 ] && docker-compose down --remove-orphans --timeout 40 >/dev/null 2>&1
  if [ "$STACK_UP" = 1 ]; then
    remove_stack >/dev/null 2>&1
  fi
  [ "$SWARM_JOINED" = 1 ] && docker swarm leave --force >/dev/null 2>&1
  if [ "$ENGINE_PID" != 0 ]; then
    kill "$ENGINE_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$WORK"
  say "container stage $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(($(date +%s) - STARTED)) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `docker stack rm` races its own tasks: it can fail with "network ... is in use by task"
# while the task containers are still stopping. Repeat it until the stack's containers,
# services and networks are gone, for at most 90 s.
stack_leftovers() {
  local label="label=com.docker.stack.namespace=$STACK"
  docker ps -aq --filter "$label"
  docker service ls -q --filter "$label"
  docker network ls -q --filter "$label"
}
remove_stack() {
  local deadline=$(($(date +%s) + 90))
  while true; do
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    [ -z "$(stack_leftovers)" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "stack $STACK not removed after 90 s; left: $(stack_leftovers | tr '\n' ' ')" >&2
      return 1
    fi
    sleep 2
  done
}

# Poll until "$@" succeeds, for at most $1 seconds.
wait_for() {
  local limit=$1; shift
  local deadline=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 2
  done
}
http_ok() { curl -fsS -o /dev/null --max-time 3 "$1"; }
healthy_api_tasks() {
  docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_api" --filter health=healthy | wc -l
}
enough_healthy_tasks() { [ "$(healthy_api_tasks)" -ge "$REPLICAS" ]; }
compose_healthy() {  # compose_healthy SERVICE: its (first) container's HEALTHCHECK says healthy
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$(docker-compose ps -q "$1" 2>/dev/null | head -1)")" = healthy ]
}
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------
stage "engine"
[ -x "$PY" ] || fail "no $PY: run 'make test' (or .ci/run) first, it creates the venv"
[ -d "$SHARED/container" ] || fail "no $SHARED/container (start-docker.sh, local-base-images.sh)"
if ! out=$(nice -n 19 bash "$SHARED/container/start-docker.sh" 2>&1); then
  echo "$out" | tail -25 >&2
  fail "the Docker engine could not start on this machine (see above); nothing was tested"
fi
ENGINE_PID=$(echo "$out" | tail -1)
[[ "$ENGINE_PID" =~ ^[0-9]+$ ]] || fail "start-docker.sh did not end with a PID: $out"
say "engine ready (dockerd pid $ENGINE_PID; 0 = was already running, left running)"
docker-compose version --short >/dev/null || fail "docker-compose (v1) is missing"

stage "base images"
nice -n 19 bash "$SHARED/container/local-base-images.sh" || fail "local base images could not be built"

stage "build"
nice -n 19 docker-compose build >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "image build failed"; }
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^deepfake-(api|proxy):$DEEPFAKE_TAG "

PORT=${DEEPFAKE_PROXY_PORT:-8000}
if ! port_free "$PORT"; then
  PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  say "port ${DEEPFAKE_PROXY_PORT:-8000} is taken on this machine: publishing the proxy on $PORT"
fi
export DEEPFAKE_PROXY_PORT=$PORT
URL=http://127.0.0.1:$PORT

# A face from the shared data when there is one, else a generated JPEG.
PROBE=$WORK/probe.jpg
sample=$(find "$SHARED/datasets" -name '*.jpg' -size +2k 2>/dev/null | sort | head -1 || true)
if [ -n "$sample" ]; then cp "$sample" "$PROBE"; else
  "$PY" -c 'import sys; from PIL import Image; Image.linear_gradient("L").convert("RGB").resize((320, 320)).save(sys.argv[1], quality=90)' "$PROBE"
fi

# POST the probe to /predict through the proxy and check the verdict's shape.
check_predict() {
  "$PY" - "$URL" "$PROBE" <<'PY'
import sys
import httpx
url, path = sys.argv[1], sys.argv[2]
with open(path, "rb") as fh:
    r = httpx.post(f"{url}/predict", files={"file": ("probe.jpg", fh, "image/jpeg")}, timeout=30)
if r.status_code != 200:
    sys.exit(f"/predict answered {r.status_code}: {r.text[:300]}")
body = r.json()
problems = [k for k in ("label", "score", "threshold", "model", "faces") if k not in body]
judged = body.get("label") in ("real", "fake", "uncertain") and 0 <= (body.get("score") or 0) <= 1
if problems or not (judged or (body.get("label") == "no_face" and body.get("score") is None)):
    sys.exit(f"/predict returned an unexpected body: {body}")
print(f"/predict 200: label={body['label']} score={body['score']} faces={len(body['faces'])} "
      f"model={body['model']['name']}@{body['model']['version']} "
      f"request-id={r.headers.get('x-request-id')}")
PY
}

# ---------------------------------------------------------------------------------------
stage "compose: up to ready"
COMPOSE_UP=1
up_start=$(date +%s)
docker-compose up -d --scale api=1 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "docker-compose up failed"; }
wait_for 240 http_ok "$URL/health/ready" || fail "/health/ready through the proxy not 200 within 240 s"
say "ready through the proxy $(($(date +%s) - up_start)) s after 'up'"
wait_for 60 compose_healthy api || fail "the api container's HEALTHCHECK did not report healthy"
say "container HEALTHCHECK: healthy $(($(date +%s) - up_start)) s after 'up'"

stage "compose: checks"
check_predict || fail "/predict check failed under docker-compose"
api=$(docker-compose ps -q api 2>/dev/null | head -1)
proxy=$(docker-compose ps -q proxy 2>/dev/null | head -1)

stage "compose: video jobs on Redis, a worker killed with -9, an API restart"
wait_for 180 compose_healthy worker || fail "the worker container's healthcheck did not report healthy"
"$PY" .ci/video_jobs.py "$URL" "$PROBE" quick || fail "a short video through the proxy was not analysed"
job=$("$PY" .ci/video_jobs.py "$URL" "$PROBE" submit) || fail "POST /videos failed"
"$PY" .ci/video_jobs.py "$URL" "$PROBE" wait-running "$job" --timeout 180 || fail "no worker started the job"
worker=$(docker-compose ps -q worker | head -1)
kill -9 "$(docker inspect -f '{{.State.Pid}}' "$worker")"
say "kill -9 of the worker's process mid-job; the job's lease is ${DEEPFAKE_JOBS_LEASE_S} s"
"$PY" .ci/video_jobs.py "$URL" "$PROBE" wait-done "$job" --attempts 2 --timeout 300 \
  || fail "the killed worker's job was not taken over and finished"
say "worker restarted by its restart policy $(docker inspect -f '{{.RestartCount}}' "$worker") time(s)"
docker-compose stop -t 20 worker >/dev/null 2>&1
job=$("$PY" .ci/video_jobs.py "$URL" "$PROBE" submit) || fail "POST /videos with no worker running failed"
docker-compose restart -t 40 api >/dev/null 2>&1
wait_for 240 http_ok "$URL/health/ready" || fail "the API did not come back after a restart"
docker-compose start worker >/dev/null 2>&1
"$PY" .ci/video_jobs.py "$URL" "$PROBE" wait-done "$job" --timeout 300 \
  || fail "a job queued before an API restart was lost"
say "a job queued while no worker ran survived an API restart and was analysed"
check_predict || fail "/predict check failed after the video checks"

stage "compose: 128 concurrent 9.5 MB uploads and hostile headers through the proxy"
"$PY" -m bench.memory --url "$URL" --rounds 1 --concurrency 128 --header-clients 8 --json "$WORK/memory.json" \
  >"$WORK/memory.out" 2>&1 || { cat "$WORK/memory.out"; fail "big uploads through the proxy: an answer other than 200/503, a connection error, or a header client held"; }
"$PY" - "$WORK/memory.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u = r["uploads"]
print(f"128 x {r['upload_bytes'] / 1e6:.1f} MB through the proxy in {r['uploads_s']} s: statuses {u['statuses']}, "
      f"problems {u['problem_types']}, p50 {u['p50_s']} s")
for name, h in r.get("headers", {}).items():
    print(f"{name}: {h['answers']}, held at most {h['held_max_s']} s")
PY
for c in "$api" "$proxy"; do
  state=$(docker inspect -f '{{.Name}} OOMKilled={{.State.OOMKilled}} restarts={{.RestartCount}} running={{.State.Running}}' "$c")
  say "after the upload storm: $state"
  case "$state" in *"OOMKilled=false restarts=0 running=true"*) ;; *) fail "a container died under big uploads: $state";; esac
done
peak_of() {  # cgroup v2 memory.peak (kernel >= 5.19), else v1 max_usage_in_bytes, else n/a
  docker exec "$1" sh -c 'cat /sys/fs/cgroup/memory.peak 2>/dev/null || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null || echo n/a'
}
say "api memory peak: $(peak_of "$api") bytes (limit $(docker inspect -f '{{.HostConfig.Memory}}' "$api"))"
say "proxy memory peak: $(peak_of "$proxy") bytes (limit $(docker inspect -f '{{.HostConfig.Memory}}' "$proxy"))"
check_predict || fail "/predict check failed after the upload storm"
uid=$(docker exec "$api" id -u)
[ "$uid" != 0 ] || fail "the api container runs as root"
say "api runs as uid $uid (image user '$(docker inspect -f '{{.Config.User}}' "$api")')"
[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$api")" = true ] || fail "api root filesystem is not read-only"
docker exec "$api" sh -c 'touch /app/x' 2>/dev/null && fail "api could write to its root filesystem"
docker exec "$api" sh -c 'touch /tmp/x' || fail "api cannot write to /tmp"
say "read-only root, writable /tmp; memory limit $(docker inspect -f '{{.HostConfig.Memory}}' "$api") bytes"
docker stats --no-stream --format 'api memory in use: {{.MemUsage}}' "$api"
stop_start=$(date +%s)
docker stop -t 40 "$api" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$api")
[ "$code" = 0 ] || fail "api exited $code on SIGTERM (expected a clean uvicorn shutdown, 0)"
say "SIGTERM: api exited 0 in $(($(date +%s) - stop_start)) s (graceful shutdown, PID 1 got the signal)"
docker-compose down --remove-orphans --timeout 40 >/dev/null 2>&1
COMPOSE_UP=0

# ---------------------------------------------------------------------------------------
stage "swarm: deploy $REPLICAS replicas"
state=$(docker info -f '{{.Swarm.LocalNodeState}}')
if [ "$state" != active ]; then
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "docker swarm init failed"
  SWARM_JOINED=1
fi
STACK_UP=1
deploy_start=$(date +%s)
docker stack deploy --resolve-image never -c docker-compose.yml "$STACK" >"$WORK/deploy.log" 2>&1 \
  || { cat "$WORK/deploy.log"; fail "docker stack deploy failed"; }
wait_for 300 enough_healthy_tasks \
  || fail "only $(healthy_api_tasks) of $REPLICAS api tasks became healthy within 300 s"
say "$REPLICAS api tasks healthy $(($(date +%s) - deploy_start)) s after deploy"
wait_for 60 http_ok "$URL/health/ready" || fail "the stack's proxy does not answer on $URL"
docker service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Mode}} {{.Replicas}} {{.Image}}'

stage "swarm: traffic through the proxy"
check_predict || fail "/predict through the swarm proxy failed"
"$PY" - "$URL" "$REPLICAS" <<'PY' || fail "requests through the proxy did not reach every replica"
import collections
import sys
import httpx
url, replicas = sys.argv[1], int(sys.argv[2])
seen: collections.Counter[str] = collections.Counter()
with httpx.Client(timeout=10) as client:
    for _ in range(20):
        r = client.get(f"{url}/health")
        if r.status_code != 200:
            sys.exit(f"GET /health through the proxy answered {r.status_code}")
        seen[r.json()['replica']] += 1
print("GET /health x20 through the proxy, by replica:", dict(seen))
sys.exit(0 if len(seen) >= replicas else f"only {len(seen)} replica(s) answered")
PY

stage "swarm: a video through the proxy, analysed by the worker service on Redis"
worker_task_healthy() {
  [ "$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_worker" --filter health=healthy | wc -l)" -ge 1 ]
}
wait_for 240 worker_task_healthy || fail "the stack's worker task did not become healthy"
"$PY" .ci/video_jobs.py "$URL" "$PROBE" quick || fail "a short video through the stack was not analysed"

if [ "$KILL_TEST" = 1 ]; then
  # Light load through the proxy (4 clients) until $WORK/stop appears; bounded in count and time.
  cat >"$WORK/load.py" <<'PY'
import collections
import sys
import threading
import time
from pathlib import Path
import httpx
url, image, stop, limit = sys.argv[1], Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]), int(sys.argv[4])
statuses: collections.Counter[str] = collections.Counter()
lock = threading.Lock()
started = time.monotonic()

def client() -> None:
    with httpx.Client(timeout=30) as http:
        while not stop.exists() and time.monotonic() - started < 300:
            with lock:
                if sum(statuses.values()) >= limit:
                    return
            try:
                key = str(http.post(f"{url}/predict", files={"file": ("p.jpg", image, "image/jpeg")}).status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            with lock:
                statuses[key] += 1

threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
total = sum(statuses.values())
failed = total - statuses["200"]
print(f"POST /predict x{total} (4 clients, {time.monotonic() - started:.0f} s): failed {failed}/{total}, {dict(statuses)}")
sys.exit(0 if failed <= total // 100 else "more than 1% of the requests failed")
PY
  run_load() {  # run_load LIMIT ACTION...: the action runs while the load does
    local limit=$1; shift
    rm -f "$WORK/stop"
    "$PY" "$WORK/load.py" "$URL" "$PROBE" "$WORK/stop" "$limit" &
    local load=$!
    sleep 5
    "$@" || { touch "$WORK/stop"; wait "$load"; return 1; }
    touch "$WORK/stop"
    wait "$load"
  }

  stage "swarm: kill one replica under load"
  kill_one() {
    local victim
    victim=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_api" | head -1)
    docker kill "$victim" >/dev/null && say "killed api task container $victim"
    while kill -0 "$load" 2>/dev/null; do sleep 1; done  # $load: run_load's; all 600 requests
  }
  run_load 600 kill_one || fail "requests failed while a replica was killed"
  recover_start=$(date +%s)
  wait_for 300 enough_healthy_tasks || fail "swarm did not bring the killed replica back within 300 s"
  say "swarm replaced the killed replica: $REPLICAS healthy again $(($(date +%s) - recover_start)) s after the load ended"

  stage "swarm: rolling update (start-first) under load"
  roll() { docker service update --force --detach=false --quiet "${STACK}_api" >/dev/null; }
  before=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_api" | sort)
  roll_start=$(date +%s)
  run_load 10000 roll || fail "requests failed during a rolling update"
  after=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_api" | sort)
  [ -z "$(comm -12 <(echo "$before") <(echo "$after"))" ] || fail "the rolling update left old tasks running"
  say "rolling update replaced all $REPLICAS tasks in $(($(date +%s) - roll_start)) s"
  enough_healthy_tasks || fail "fewer than $REPLICAS healthy api tasks after the rolling update"
fi

stage "swarm: remove"
remove_stack || fail "docker stack rm left parts of the stack behind"
STACK_UP=0
if [ "$SWARM_JOINED" = 1 ]; then docker swarm leave --force >/dev/null && SWARM_JOINED=0; fi
stage ""
