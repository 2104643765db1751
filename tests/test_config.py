"""Settings that depend on the machine: how many CPUs, and how workers share them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepfake_api.config import Settings, available_cpus, checkout_root, models_dir

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", AFFINITY),  # no quota
        ("50000 100000\n", 1),  # half a CPU still gets one thread
        (f"{AFFINITY * 100000} 100000\n", AFFINITY),
        ("100000 100000\n", 1),
        ("garbage\n", AFFINITY),
    ],
)
def test_a_cgroup_cpu_quota_caps_the_cpus(tmp_path: Path, cpu_max: str, expected: int) -> None:
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert available_cpus(path) == expected


def test_no_cgroup_file_means_the_affinity(tmp_path: Path) -> None:
    assert available_cpus(tmp_path / "absent") == AFFINITY


def test_workers_share_the_cores_and_explicit_values_win() -> None:
    one, many = Settings(workers=1), Settings(workers=64)
    assert one.inference_threads == available_cpus() and one.decode_threads == max(1, available_cpus() // 2)
    assert (many.inference_threads, many.decode_threads) == (1, 1)
    assert (
        Settings(inference_threads=3, decode_threads=5).inference_threads,
        Settings(decode_threads=5).decode_threads,
    ) == (3, 5)


def test_the_checkout_is_found_by_its_pyproject_not_by_a_fixed_depth(tmp_path: Path) -> None:
    """Issue 27 defect 7: parents[2] named a directory beside site-packages once installed."""
    checkout = tmp_path / "work" / "repo"
    (checkout / "src" / "deepfake_api" / "api").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\n")
    deep = checkout / "src" / "deepfake_api" / "api" / "x.py"
    assert checkout_root(deep) == checkout
    assert models_dir(deep) == checkout / "models"
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "deepfake_api" / "config.py"
    installed.parent.mkdir(parents=True)
    assert checkout_root(installed) is None
    assert models_dir(installed) == Path.cwd() / "models"
    assert checkout_root() == Path(__file__).resolve().parents[1]  # this checkout
