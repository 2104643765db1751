"""deploy/k8s/: every manifest is valid against the Kubernetes schema, and the pieces fit together.

No cluster here: kubernetes-validate checks each document against the OpenAPI schema of a
Kubernetes release (strict: unknown fields are errors, so a typo cannot pass silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from tests.conftest import ROOT  # noqa: E402

K8S_DIR = ROOT / "deploy" / "k8s"
# The oldest release still supported upstream and the newest the package knows: the
# manifests use nothing that one of them lacks.
K8S_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


DOCS = _documents()


def _one(kind: str, component: str = "api") -> dict[str, Any]:
    found = [
        doc
        for _, doc in DOCS
        if doc["kind"] == kind and doc["metadata"]["labels"].get("app.kubernetes.io/component", "api") == component
    ]
    assert len(found) == 1, f"expected one {kind} of {component}, found {len(found)}"
    return found[0]


def _container(component: str = "api") -> dict[str, Any]:
    kind = "StatefulSet" if component == "redis" else "Deployment"
    containers = _one(kind, component)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_manifests_are_found() -> None:
    assert {doc["kind"] for _, doc in DOCS} >= {"Deployment", "Service", "HorizontalPodAutoscaler"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("path", "doc"), DOCS, ids=[f"{p.name}:{d['kind']}" for p, d in DOCS])
def test_manifest_matches_the_kubernetes_schema(path: Path, doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.name} ({doc['kind']}) is not valid for Kubernetes {version}: {exc.message}")


def test_probes_use_readiness_and_liveness_endpoints() -> None:
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
    port_names = {p["name"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names


@pytest.mark.parametrize("component", ["api", "worker"])
def test_pod_runs_as_non_root_on_a_read_only_root_with_tmp_in_an_empty_dir(component: str) -> None:
    pod = _one("Deployment", component)["spec"]["template"]["spec"]
    container = _container(component)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp[0]["name"]]


def test_container_has_cpu_and_memory_requests_and_a_memory_limit() -> None:
    resources = _container()["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


def test_grace_period_outlasts_uvicorn_graceful_shutdown() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 30  # `deepfake-api serve`: timeout_graceful_shutdown=30


def test_service_selects_the_deployment_pods_on_the_http_port() -> None:
    service, deployment = _one("Service"), _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in _container()["ports"]}


def test_autoscaler_targets_the_deployment_with_autoscaling_v2() -> None:
    hpa, deployment = _one("HorizontalPodAutoscaler"), _one("Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_config_map_keys_are_settings_the_service_reads() -> None:
    from deepfake_api.config import Settings

    known = {f"DEEPFAKE_{name.upper()}" for name in Settings.model_fields}
    assert set(_one("ConfigMap")["data"]) <= known


@pytest.mark.parametrize("component", ["api", "worker"])
def test_the_job_directory_is_writable_on_a_read_only_root(component: str) -> None:
    """DEEPFAKE_JOBS_DIR of the image (videos are spooled there) is an emptyDir on disk."""
    pod = _one("Deployment", component)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in _container(component)["volumeMounts"]}
    volume = {v["name"]: v for v in pod["volumes"]}[mounts["/var/lib/deepfake-api"]]
    assert "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory"


def test_workers_and_api_share_the_redis_service_and_only_workers_analyse() -> None:
    data = _one("ConfigMap")["data"]
    assert data["DEEPFAKE_JOBS_BACKEND"] == "redis" and data["DEEPFAKE_JOBS_EMBEDDED_WORKER"] == "false"
    redis_service = _one("Service", "redis")
    host_port = data["DEEPFAKE_REDIS_URL"].removeprefix("redis://").split("/")[0]
    assert host_port == f"{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}"
    labels = _one("StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]
    assert redis_service["spec"]["selector"].items() <= labels.items()
    worker = _container("worker")
    assert worker["command"] == ["deepfake-api", "worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["deepfake-api", "worker", "--check"]
    assert worker["envFrom"] == _container("api")["envFrom"]
