"""The face path with the real YuNet file: boxes land on faces, EXIF orientation, caps, small faces,
the file check, and training and serving cutting byte-identical face crops."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfake_api import assets, faces
from deepfake_api.errors import ModelCardError
from deepfake_api.training.features import face_crop
from tests.utils.faces import compose, face_jpeg, jpeg
from tests.utils.images import jpeg_bytes


@pytest.fixture(scope="module")
def finder() -> faces.FaceFinder:
    return faces.FaceFinder(assets.path("yunet"), assets.ASSETS["yunet"].sha256)


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _inside(point: tuple[float, float], rect: tuple[int, int, int, int]) -> bool:
    x, y, w, h = rect
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_faces_pasted_on_a_large_photo_are_each_found_where_they_are(finder: faces.FaceFinder) -> None:
    img, rects = compose((3000, 2000), [(100, 150), (1400, 900), (2600, 1650)], tile_scale=1.4)
    found = faces.analyse(jpeg(img), finder).faces
    assert len(found) == 3
    for rect in rects:
        hits = [c for c in found if _inside(_centre(c.face.box), rect)]
        assert len(hits) == 1, f"no single face inside {rect}: {[c.face.box for c in found]}"
        # the face is the middle of an lfw tile: its centre lies near the tile's centre
        cx, cy = _centre(hits[0].face.box)
        assert abs(cx - (rect[0] + rect[2] / 2)) < rect[2] * 0.15
        assert abs(cy - (rect[1] + rect[3] / 2)) < rect[3] * 0.2
    assert all(c.status == "judged" and c.crop is not None for c in found)
    assert {c.crop.shape for c in found if c.crop is not None} == {(faces.CROP_SIZE, faces.CROP_SIZE, 3)}


def test_boxes_are_in_the_coordinates_of_the_exif_oriented_image(finder: faces.FaceFinder) -> None:
    img, _ = compose((900, 600), [(600, 50)])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; shown rotated 90 degrees clockwise
    stored = img.transpose(Image.Transpose.ROTATE_90)  # what a phone writes for orientation 6
    rotated = faces.analyse(jpeg(stored, exif=exif), finder)
    upright = faces.analyse(jpeg(img), finder)
    assert (rotated.oriented_width, rotated.oriented_height) == (900, 600)
    assert (rotated.width, rotated.height) == (600, 900)
    assert len(rotated.faces) == len(upright.faces) == 1
    a, b = _centre(rotated.faces[0].face.box), _centre(upright.faces[0].face.box)
    assert abs(a[0] - b[0]) < 8 and abs(a[1] - b[1]) < 8


def test_an_image_of_noise_has_no_face(finder: faces.FaceFinder) -> None:
    assert faces.analyse(jpeg_bytes(640, 480, seed=3), finder).faces == []


def test_faces_beyond_the_cap_are_listed_but_not_judged(finder: faces.FaceFinder) -> None:
    places = [(60 + 300 * i, 100) for i in range(5)]
    img, _ = compose((1600, 500), places)
    found = faces.analyse(jpeg(img), finder, max_faces=2).faces
    assert len(found) == 5
    assert [c.status for c in found].count("judged") == 2
    assert [c.status for c in found].count("not_judged") == 3
    assert all(c.crop is None for c in found if c.status == "not_judged")


def test_a_face_below_the_minimum_size_is_too_small_to_judge(finder: faces.FaceFinder) -> None:
    img, _ = compose((400, 300), [(150, 100)], tile_scale=0.4)  # face ~45 px wide on a 100 px tile
    found = faces.analyse(jpeg(img), finder).faces
    assert found, "the small face should still be detected"
    assert all(c.status == "too_small" and c.face.too_small and c.crop is None for c in found)


def test_a_face_cut_by_the_border_keeps_its_box_inside_the_image(finder: faces.FaceFinder) -> None:
    img, _ = compose((500, 400), [(-60, 100)])
    found = faces.analyse(jpeg(img), finder).faces
    for c in found:
        x, y, w, h = c.face.box
        assert x >= 0 and y >= 0 and x + w <= 500 and y + h <= 400


def test_training_and_serving_cut_byte_identical_face_crops(finder: faces.FaceFinder) -> None:
    detector = faces.FaceDetector(assets.path("yunet"), assets.ASSETS["yunet"].sha256)
    for data in (face_jpeg(0), face_jpeg(1), jpeg(compose((2400, 1600), [(1800, 1200)])[0])):
        trained, n, _ = face_crop(data, detector)
        served = faces.analyse(data, finder).faces
        assert trained is not None and n == len(served)
        assert served[0].crop is not None
        assert np.array_equal(trained, served[0].crop)


def test_alignment_puts_the_landmarks_on_the_template(finder: faces.FaceFinder) -> None:
    rgb = np.asarray(Image.open(io.BytesIO(face_jpeg(2))).convert("RGB"))
    face = finder.detect(rgb)[0]
    matrix = faces._similarity(np.asarray(face.landmarks), faces.TEMPLATE)
    mapped = np.c_[np.asarray(face.landmarks), np.ones(5)] @ matrix.T
    # five points, four degrees of freedom: a least-squares fit, off by a few pixels for a turned head
    assert np.abs(mapped - faces.TEMPLATE).mean() < 6


def test_a_detector_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(assets.path("yunet").read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        faces.FaceFinder(bad, assets.ASSETS["yunet"].sha256)
    with pytest.raises(ModelCardError, match="missing"):
        faces.FaceFinder(tmp_path / "absent.onnx", assets.ASSETS["yunet"].sha256)


@pytest.mark.parametrize(
    "landmarks",
    [
        ((float("nan"), 1.0), (2.0, 1.0), (1.5, 2.0), (1.0, 3.0), (2.0, 3.0)),
        ((0.0, 0.0), (4e12, 0.0), (2e12, 2e12), (0.0, 4e12), (4e12, 4e12)),
        ((5.0, 5.0),) * 5,
    ],
    ids=["not-a-number", "spread-over-terapixels", "all-in-one-point"],
)
def test_landmarks_no_similarity_can_map_give_a_blank_crop_not_an_error(landmarks: tuple) -> None:  # type: ignore[type-arg]
    """A fuzzed video frame once gave the detector a face that made the alignment cast NaN to int (a 500)."""
    rgb = np.full((480, 640, 3), 128, np.uint8)
    face = faces.Face(box=(10.0, 10.0, 50.0, 50.0), landmarks=landmarks, score=0.9)
    crop = faces.align_face(rgb, face)
    assert crop.shape == (faces.CROP_SIZE, faces.CROP_SIZE, 3) and crop.dtype == np.uint8
