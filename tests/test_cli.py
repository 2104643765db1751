"""`deepfake-api predict`: in-process with the committed model, and through a running service."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from deepfake_api.cli import main
from tests.conftest import MODEL_PATH
from tests.utils.faces import face_jpeg, png_of
from tests.utils.images import jpeg_bytes

TEXT = b"this is a text file, not an image\n"
TABLE_ROW = re.compile(
    r"^(?P<file>\S+)\s+(?P<face>\d+)\s+(?P<box>\d+,\d+,\d+x\d+)\s+(?P<label>real|fake|uncertain)\s+(?P<score>[01]\.\d{3})$"
)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "face-a.jpg", tmp_path / "face-b.png"]
    paths[0].write_bytes(face_jpeg(1))
    paths[1].write_bytes(png_of(face_jpeg(2)))
    return paths


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _expected_exit(rows: list[dict[str, Any]]) -> int:
    return 1 if any(r["label"] == "fake" for r in rows) else 0


def _api(live_server: str, path: Path) -> dict[str, Any]:
    r = httpx.post(live_server + "/predict", files={"file": (path.name, path.read_bytes())})
    body: dict[str, Any] = r.json()
    return body


def test_predict_json_gives_one_verdict_per_file(capsys: pytest.CaptureFixture[str], images: list[Path]) -> None:
    code, out, _ = _run(capsys, *images, "--model", MODEL_PATH, "--json")
    rows = json.loads(out)
    assert [r["file"] for r in rows] == [str(p) for p in images]
    for row in rows:
        assert row["label"] in {"real", "fake", "uncertain"}
        assert 0.0 <= row["score"] <= 1.0
    assert [(r["image"]["width"], r["image"]["height"]) for r in rows] == [(250, 250), (250, 250)]
    assert all(len(r["faces"]) == 1 for r in rows)
    assert code == _expected_exit(rows)


def test_predict_in_process_keeps_the_service_logs_behind_verbose(
    capsys: pytest.CaptureFixture[str], images: list[Path]
) -> None:
    """Issue 27 defect 17: the in-process service's JSON access log went into the terminal."""
    _, _, quiet = _run(capsys, *images, "--model", MODEL_PATH, "--no-progress")
    assert "deepfake_api" not in quiet  # not one of the service's records
    _, _, verbose = _run(capsys, *images, "--model", MODEL_PATH, "--no-progress", "--verbose")
    access = [json.loads(line) for line in verbose.splitlines() if '"deepfake_api.access"' in line]
    assert {(r["method"], r["path"]) for r in access} >= {("POST", "/predict/batch")}


def test_predict_table_shows_the_service_verdicts(
    capsys: pytest.CaptureFixture[str], images: list[Path], live_server: str
) -> None:
    code, out, _ = _run(capsys, *images, "--model", MODEL_PATH)
    header, *lines = out.splitlines()
    assert header.split() == ["file", "face", "box", "label", "P(fake)"]
    rows = [m.groupdict() for m in map(TABLE_ROW.match, lines) if m]
    assert len(rows) == len(lines) == 2, out
    for row, path in zip(rows, images, strict=True):
        expected = _api(live_server, path)  # in-process and served scoring agree
        assert row["file"] == str(path)
        assert row["label"] == expected["faces"][0]["label"]
        assert float(row["score"]) == pytest.approx(expected["faces"][0]["score"], abs=5e-4 + 1e-9)
        b = expected["faces"][0]["box"]
        assert row["box"] == f"{b['x']:.0f},{b['y']:.0f},{b['width']:.0f}x{b['height']:.0f}"
    assert code == _expected_exit(rows)


def test_predict_exits_2_on_a_missing_or_non_image_file(
    capsys: pytest.CaptureFixture[str], images: list[Path], tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(TEXT)
    missing = tmp_path / "missing.jpg"
    code, out, _ = _run(capsys, missing, notes, images[0], "--model", MODEL_PATH)
    assert code == 2
    lines = out.splitlines()
    assert re.search(r"missing\.jpg\s+error: .*No such file", lines[1])
    assert re.search(r"notes\.txt\s+error: Unsupported image type: ", lines[2])
    assert TABLE_ROW.match(lines[3]), "the other files are still judged"


def test_predict_through_a_running_service(
    capsys: pytest.CaptureFixture[str], images: list[Path], live_server: str
) -> None:
    code, out, _ = _run(capsys, images[0], "--url", live_server, "--json")
    body = json.loads(out)  # one file: one object, not a list
    expected = _api(live_server, images[0])
    assert body["file"] == str(images[0])
    for key in ("label", "score", "image", "model"):
        assert body[key] == expected[key]
    assert body["request_id"] != expected["request_id"]
    assert code == _expected_exit([body])


def test_predict_through_a_service_reports_its_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, live_server: str
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(TEXT)
    code, out, _ = _run(capsys, notes, "--url", live_server, "--json")
    assert code == 2
    assert json.loads(out)["error"].startswith("Unsupported image type: ")


def test_predict_exits_2_when_the_service_is_unreachable(
    capsys: pytest.CaptureFixture[str], images: list[Path]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket closes
    code, out, _ = _run(capsys, images[0], "--url", closed)
    assert code == 2
    assert "cannot reach the service" in out


def test_console_script_runs_predict(images: list[Path], live_server: str) -> None:
    script = Path(sys.executable).with_name("deepfake-api")
    if not script.is_file():
        pytest.skip(f"the console script is not installed at {script} (pip install -e .)")
    done = subprocess.run(
        [script, "predict", *map(str, images), "--url", live_server, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rows = json.loads(done.stdout)
    assert [r["file"] for r in rows] == [str(p) for p in images]
    assert done.returncode == _expected_exit(rows), done.stderr


def test_predict_exits_2_when_the_model_cannot_load(
    capsys: pytest.CaptureFixture[str], images: list[Path], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, images[0], "--model", tmp_path / "absent.keras")
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")


def test_predict_prints_one_row_per_face_and_no_face_for_a_faceless_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.utils.faces import compose, jpeg

    group = tmp_path / "group.jpg"
    group.write_bytes(jpeg(compose((1200, 500), [(40, 100), (450, 120), (860, 90)])[0]))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(jpeg_bytes(300, 300, seed=4))
    code, out, _ = _run(capsys, group, empty, "--model", MODEL_PATH)
    lines = out.splitlines()[1:]
    faces = [m.groupdict() for m in map(TABLE_ROW.match, lines) if m]
    assert [f["face"] for f in faces] == ["1", "2", "3"] and all(f["file"] == str(group) for f in faces)
    assert re.match(rf"^{re.escape(str(empty))}\s+-\s+-\s+no_face\s+-$", lines[3])
    assert code in (0, 1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(face_jpeg(1))
    (root / "sub" / "b.png").write_bytes(png_of(face_jpeg(2)))
    (root / "sub" / "broken.jpg").write_bytes(TEXT)
    (root / "notes.md").write_bytes(TEXT)  # not an image suffix: not walked
    return root


def test_predict_walks_a_folder_writes_a_csv_row_per_face_and_shows_progress_on_stderr(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path
) -> None:
    out_csv = tmp_path / "out.csv"
    code, out, err = _run(capsys, folder, "--model", MODEL_PATH, "--csv", out_csv, "--batch", "2")
    assert code == 2  # one file is not an image
    assert "3/3" in err and "img" in err  # tqdm's bar, on stderr only
    assert "3/3" not in out
    import csv

    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    files = [r["file"] for r in rows]
    assert files == [str(folder / "a.jpg"), str(folder / "sub" / "b.png"), str(folder / "sub" / "broken.jpg")]
    face_rows = rows[:2]
    for r in face_rows:
        assert r["face"] == "1" and r["status"] == "judged"
        assert r["label"] in {"real", "fake", "uncertain"} and 0 <= float(r["score"]) <= 1
        assert int(r["width"]) > 40
        assert any(k.startswith("detector:") and r[k] for k in r)
    assert rows[2]["label"] == "error" and "Unsupported" in rows[2]["error"]


def test_predict_through_a_service_in_batches_writes_jsonl(
    capsys: pytest.CaptureFixture[str], folder: Path, tmp_path: Path, live_server: str
) -> None:
    out = tmp_path / "out.jsonl"
    code, _, err = _run(
        capsys, folder, "--url", live_server, "--jsonl", out, "--batch", "2", "--concurrency", "2", "--quiet"
    )
    assert code == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["file"]).name for r in lines] == ["a.jpg", "b.png", "broken.jpg"]
    expected = _api(live_server, folder / "a.jpg")
    assert lines[0]["score"] == pytest.approx(expected["score"], abs=1e-6)
    assert lines[2]["problem"]["status"] == 415
    assert "3/3" in err
