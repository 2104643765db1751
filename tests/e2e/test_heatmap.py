"""The page's heatmap overlay in headless Chromium: drawn over the judged faces where the API's
transforms put their crops (and nowhere else), with a legend, and hidden by its toggle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from deepfake_api import faces
from tests.e2e.conftest import save_screenshot
from tests.e2e.test_page import WAIT_S, Page, page  # noqa: F401 - `page` is the fixture
from tests.utils.faces import compose, jpeg

READ_CANVAS = """
const c = document.getElementById("heatmap");
const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
const alpha = new Array(c.width * c.height);
for (let i = 0; i < alpha.length; i++) alpha[i] = data[4 * i + 3];
return [c.width, c.height, alpha, c.dataset.faces];
"""


def _crop_bounds(heat: dict[str, Any], scale: float) -> tuple[float, float, float, float]:
    """The bounding box (canvas px) of a face's aligned crop mapped into the image."""
    n = faces.CROP_SIZE
    corners = np.array([[0, 0, 1], [n, 0, 1], [0, n, 1], [n, n, 1]], float) @ np.asarray(heat["transform"]).T
    (x0, y0), (x1, y1) = corners.min(axis=0) * scale, corners.max(axis=0) * scale
    return x0, y0, x1, y1


def test_the_heatmap_is_drawn_over_the_judged_faces_and_the_toggle_hides_it(
    page: Page,  # noqa: F811
    live_server: str,
    tmp_path: Path,
) -> None:
    img, _ = compose((900, 420), [(40, 60), (560, 120)])
    path = tmp_path / "two-faces.jpg"
    path.write_bytes(jpeg(img))
    api = httpx.post(
        live_server + "/predict",
        params={"explain": "true"},
        files={"file": ("p.jpg", path.read_bytes())},
        timeout=WAIT_S,
    ).json()
    judged = [f for f in api["faces"] if f["status"] == "judged"]
    assert len(judged) == 2

    page.upload(path)
    assert page.shown("heatmap") and page.shown("heat-legend")
    width, height, alpha, drawn = page.driver.execute_script(READ_CANVAS)
    assert drawn == "2"
    a = np.asarray(alpha, np.uint8).reshape(height, width)
    scale = width / api["image"]["oriented_width"]
    inside = np.zeros_like(a, bool)
    for face in judged:
        x0, y0, x1, y1 = _crop_bounds(face["heatmap"], scale)
        region = np.zeros_like(a, bool)
        region[max(0, int(y0)) : int(np.ceil(y1)) + 1, max(0, int(x0)) : int(np.ceil(x1)) + 1] = True
        if face["heatmap"]["max_contribution"] > 0:
            assert (a[region] > 0).any(), "a face with evidence has nothing drawn over it"
        inside |= region
    assert (a > 0).any() and not (a[~inside] > 0).any(), "colour outside every face's crop"
    save_screenshot(page.driver, "heatmap-two-faces")

    page.find("show-heatmaps").click()
    assert not page.shown("heatmap") and not page.shown("heat-legend")
    page.find("show-heatmaps").click()
    assert page.shown("heatmap")
