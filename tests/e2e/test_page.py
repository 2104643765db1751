"""The demo page in a real browser: what it renders is what POST /predict answers."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deepfake_api.errors import Overloaded, PayloadTooLarge
from tests.conftest import DATASET_DIR
from tests.e2e.conftest import save_screenshot
from tests.utils.images import jpeg_bytes, png_bytes

WAIT_S = 30
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


class Page:
    """The demo page as a user sees it, read through its stable ids."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url, self.by = driver, url, By
        self.wait = WebDriverWait(driver, WAIT_S)

    def open(self) -> None:
        self.driver.get(self.url + "/")
        self.wait.until(lambda d: self.text("model-info") not in ("", "loading…"))

    def find(self, element_id: str) -> Any:
        return self.driver.find_element(self.by.ID, element_id)

    def text(self, element_id: str) -> str:
        return str(self.find(element_id).text)

    def shown(self, element_id: str) -> bool:
        return bool(self.find(element_id).is_displayed())

    def request_id(self) -> str:
        return str(self.find("outcome").get_attribute("data-request-id") or "")

    def _settled_after(self, before: str) -> None:
        """Wait until the outcome answers a request other than `before` and no request is in flight."""
        self.wait.until(lambda d: self.request_id() not in ("", before) and not self.shown("progress"))

    def upload(self, path: Path) -> None:
        before = self.request_id()
        self.find("file").send_keys(str(path))
        self._settled_after(before)

    def drop_or_paste(self, how: str, data: bytes, name: str, media_type: str) -> None:
        """Hand the page a file as a drag-and-drop or a clipboard paste would."""
        before = self.request_id()
        self.driver.execute_script(
            """
            const [how, b64, name, type] = arguments;
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type }));
            const init = { bubbles: true, cancelable: true };
            if (how === "drop") {
              const zone = document.getElementById("dropzone");
              zone.dispatchEvent(new DragEvent("drop", { ...init, dataTransfer: dt }));
            } else {
              document.dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: dt }));
            }
            """,
            how,
            base64.b64encode(data).decode(),
            name,
            media_type,
        )
        self._settled_after(before)

    def stub_predict(self, status: int, problem: dict[str, Any], headers: dict[str, str]) -> None:
        """Make the page's next /predict answer `status` with this problem (for errors hard to provoke)."""
        self.driver.execute_script(
            """
            const [status, body, headers] = arguments;
            window.fetch = async () => new Response(JSON.stringify(body),
              { status, headers: { "Content-Type": "application/problem+json", ...headers } });
            """,
            status,
            problem,
            headers,
        )

    def severe_logs(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def csp_violations(self) -> list[str]:
        return list(self.driver.execute_script("return window.__cspViolations || []"))


@pytest.fixture
def page(driver: Any, live_server: str) -> Iterator[Page]:
    """The page freshly loaded at desktop size, the browser log drained."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get_log("browser")
    p = Page(driver, live_server)
    p.open()
    yield p
    assert p.csp_violations() == [], "the page violates its Content-Security-Policy"


def _predict(live_server: str, data: bytes, name: str) -> dict[str, Any]:
    r = httpx.post(live_server + "/predict", files={"file": (name, data)}, timeout=WAIT_S)
    body: dict[str, Any] = r.json()
    return body


def _sample(label: str, tmp_path: Path, seed: int) -> Path:
    """A dataset image with this label when the dataset is there, else a generated JPEG."""
    folder = DATASET_DIR / "lfw-faceswap" / label
    found = sorted(folder.glob("*.jpg"))[:1] if folder.is_dir() else []
    if found:
        return found[0]
    path = tmp_path / f"generated-{label}.jpg"
    path.write_bytes(jpeg_bytes(240, 200, seed=seed))
    return path


def _assert_shows(page: Page, expected: dict[str, Any]) -> None:
    assert page.shown("result") and not page.shown("error")
    assert page.text("verdict-label").lower() == expected["label"]
    width, height = expected["image"]["width"], expected["image"]["height"]
    assert page.text("image-info") == f"{width} × {height} px, {expected['image']['format']}"
    assert len(page.driver.find_elements(page.by.CSS_SELECTOR, "#boxes .face-box")) == len(expected["faces"])
    if expected["score"] is None:  # no face: a clear message, no score bar
        assert page.text("score") == "–" and page.shown("no-face") and not page.shown("bar")
        return
    # Three decimals; a tolerance rather than string equality because JS and Python round halves apart.
    assert float(page.text("score")) == pytest.approx(expected["score"], abs=5e-4 + 1e-9)
    assert len(page.text("score").split(".")[1]) == 3
    assert page.text("processing-time").endswith(" ms")
    bar = page.find("bar").rect["width"]
    fill = page.find("bar-fill").rect["width"]
    assert fill / bar == pytest.approx(expected["score"], abs=0.01), "the bar shows the score"
    marker = page.find("bar-threshold").rect["x"] - page.find("bar").rect["x"]
    assert marker / bar == pytest.approx(expected["threshold"], abs=0.01), "the threshold is marked"


def test_page_shows_the_served_model_and_links_to_swagger(page: Page, live_server: str) -> None:
    health = httpx.get(live_server + "/health").json()
    assert page.text("model-info") == f"{health['model']['name']} {health['model']['version']}"
    assert page.find("docs-link").get_attribute("href") == live_server + "/docs"
    assert page.shown("choose") and page.shown("dropzone")
    assert not page.shown("result") and not page.shown("error") and not page.shown("progress")
    assert page.severe_logs() == []


def test_verdicts_for_a_real_and_a_fake_image_match_the_api(page: Page, live_server: str, tmp_path: Path) -> None:
    for seed, label in enumerate(("real", "fake")):
        path = _sample(label, tmp_path, seed)
        page.upload(path)
        _assert_shows(page, _predict(live_server, path.read_bytes(), path.name))
        assert page.shown("preview")
    items = page.driver.find_elements(page.by.CSS_SELECTOR, "#history li")
    assert len(items) == 2
    assert page.severe_logs() == []
    save_screenshot(page.driver, "desktop")


def test_drop_and_paste_are_checked_like_a_chosen_file(page: Page, live_server: str) -> None:
    for how, seed in (("drop", 5), ("paste", 6)):
        data = png_bytes(120, 90, seed=seed)
        page.drop_or_paste(how, data, f"{how}.png", "image/png")
        _assert_shows(page, _predict(live_server, data, f"{how}.png"))
    assert page.severe_logs() == []


def test_history_keeps_the_last_five_newest_first(page: Page, live_server: str, tmp_path: Path) -> None:
    for i in range(6):
        path = tmp_path / f"face-{i}.png"
        path.write_bytes(png_bytes(64, 64, seed=10 + i))
        page.upload(path)
    names = [e.text for e in page.driver.find_elements(page.by.CSS_SELECTOR, "#history .history-name")]
    assert names == [f"face-{i}.png" for i in (5, 4, 3, 2, 1)]
    oldest = page.driver.find_elements(page.by.CSS_SELECTOR, "#history button")[-1]
    oldest.click()
    expected = _predict(live_server, (tmp_path / "face-1.png").read_bytes(), "face-1.png")
    _assert_shows(page, expected)
    assert page.text("preview-name") == "face-1.png"


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("notes.txt", b"this is a text file, not an image\n", 415),
        ("tiny.png", png_bytes(16, 16), 422),
    ],
)
def test_a_rejected_upload_shows_the_problem(
    page: Page, live_server: str, tmp_path: Path, name: str, data: bytes, status: int
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    page.upload(path)
    problem = _predict(live_server, data, name)
    assert problem["status"] == status
    assert page.shown("error") and not page.shown("result")
    assert page.text("error-title") == f"{problem['title']} ({status})"
    assert page.text("error-detail") == problem["detail"]
    # The browser reports the failed request itself; nothing else may be logged as an error.
    unexpected = [m for m in page.severe_logs() if not ("/predict" in m and f"status of {status}" in m)]
    assert unexpected == []
    if status == 415:
        assert not page.shown("preview-box"), "a text file gets no broken preview"
        save_screenshot(page.driver, "desktop-415")


@pytest.mark.parametrize(
    ("error", "headers", "advice"),
    [
        (PayloadTooLarge("The upload exceeds the limit of 10485760 bytes (10.0 MiB)."), {}, None),
        (Overloaded("Too many requests in flight; retry later."), {"Retry-After": "2"}, "retry in 2 s"),
    ],
)
def test_too_large_and_unavailable_show_the_problem(
    page: Page, tmp_path: Path, error: Any, headers: dict[str, str], advice: str | None
) -> None:
    problem = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": "/predict",
        "request_id": f"stub-{error.status}",
    }
    page.stub_predict(error.status, problem, headers)
    path = tmp_path / "face.png"
    path.write_bytes(png_bytes(64, 64))
    page.upload(path)
    assert page.text("error-title") == f"{error.title} ({error.status})"
    assert page.text("error-detail").startswith(error.detail)
    if advice:
        assert advice in page.text("error-detail")
    assert page.severe_logs() == []


def test_controls_are_labelled_and_reachable_by_keyboard(page: Page) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    assert page.find("file").get_attribute("aria-label")
    assert page.text("choose") == "Choose images"
    # First the tab list (one stop: the selected tab; arrow keys move between tabs), then the panel.
    ActionChains(page.driver).send_keys(Keys.TAB).perform()
    assert page.driver.switch_to.active_element.get_attribute("id") == "tab-images"
    ActionChains(page.driver).send_keys(Keys.ARROW_RIGHT).perform()
    assert page.driver.switch_to.active_element.get_attribute("id") == "tab-video"
    assert page.shown("video-panel") and not page.shown("image-panel")
    ActionChains(page.driver).send_keys(Keys.ARROW_LEFT).perform()
    assert page.shown("image-panel") and not page.shown("video-panel")
    ActionChains(page.driver).send_keys(Keys.TAB).perform()
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("id") == "choose"
    assert focused.value_of_css_property("outline-style") == "solid", "keyboard focus is visible"
    order = []
    for _ in range(3):
        ActionChains(page.driver).send_keys(Keys.TAB).perform()
        order.append(page.driver.switch_to.active_element.get_attribute("data-testid"))
    assert order == ["image-url", "check-url", "docs-link"]
    assert page.driver.find_element(page.by.CSS_SELECTOR, "label[for=image-url]").text


def test_phone_viewport_keeps_the_controls_visible(page: Page, live_server: str, tmp_path: Path) -> None:
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    page.open()
    overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert page.driver.execute_script(overflow) <= 0, "no horizontal scrolling at phone width"
    for element_id in ("choose", "dropzone", "docs-link"):
        rect = page.find(element_id).rect
        assert page.shown(element_id) and rect["x"] >= 0 and rect["x"] + rect["width"] <= PHONE["width"]
    assert page.find("choose").rect["y"] + page.find("choose").rect["height"] <= PHONE["height"]
    path = _sample("fake", tmp_path, 1)
    page.upload(path)
    _assert_shows(page, _predict(live_server, path.read_bytes(), path.name))
    assert page.driver.execute_script(overflow) <= 0
    assert page.severe_logs() == []
    save_screenshot(page.driver, "phone")


def test_no_inline_script_or_style_in_the_page(live_server: str) -> None:
    """The CSP forbids them; the browser tests would see the violation, this says where."""
    html = httpx.get(live_server + "/").text
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, "inline <script>"
    assert re.search(r"<style|\sstyle=", html) is None, "inline style"
    assert re.search(r"\son[a-z]+=", html) is None, "inline event handler"


def test_a_photo_with_three_faces_shows_three_boxes_where_the_api_put_them(
    page: Page, live_server: str, tmp_path: Path
) -> None:
    from tests.utils.faces import compose, jpeg

    img, _ = compose((1500, 1000), [(80, 100), (650, 500), (1150, 150)])
    path = tmp_path / "three.jpg"
    path.write_bytes(jpeg(img))
    page.upload(path)
    expected = _predict(live_server, path.read_bytes(), path.name)
    _assert_shows(page, expected)
    shown = page.find("preview").rect
    boxes = page.driver.find_elements(page.by.CSS_SELECTOR, "#boxes .face-box")
    assert len(boxes) == 3
    scale = shown["width"] / expected["image"]["oriented_width"]
    for box, face in zip(boxes, expected["faces"], strict=True):
        r = box.rect
        assert r["x"] - shown["x"] == pytest.approx(face["box"]["x"] * scale, abs=2)
        assert r["y"] - shown["y"] == pytest.approx(face["box"]["y"] * scale, abs=2)
        assert r["width"] == pytest.approx(face["box"]["width"] * scale, abs=2)
    boxes[2].click()
    third = expected["faces"][2]
    assert page.find("face-detail").get_attribute("data-face") == "2"
    assert f"P(fake) {third['score']:.3f}" in page.text("face-detail")
    items = page.driver.find_elements(page.by.CSS_SELECTOR, "#faces li")
    assert len(items) == 3 and "selected" in (items[2].get_attribute("class") or "")
    assert page.severe_logs() == []
    save_screenshot(page.driver, "three-faces")


PENDING = '#queue li[data-state="waiting"], #queue li[data-state="checking"]'


def test_several_files_are_queued_and_each_gets_its_own_verdict(page: Page, live_server: str, tmp_path: Path) -> None:
    from tests.utils.faces import face_jpeg

    paths = []
    for i in range(3):
        path = tmp_path / f"face-{i}.jpg"
        path.write_bytes(face_jpeg(i))
        paths.append(path)
    (tmp_path / "notes.jpg").write_bytes(b"not an image\n" * 10)
    paths.append(tmp_path / "notes.jpg")
    page.find("file").send_keys("\n".join(str(p) for p in paths))
    page.wait.until(
        lambda d: (
            len(d.find_elements(page.by.CSS_SELECTOR, "#queue li")) == 4
            and not d.find_elements(page.by.CSS_SELECTOR, PENDING)
        )
    )
    items = page.driver.find_elements(page.by.CSS_SELECTOR, "#queue li")
    assert [i.get_attribute("data-state") for i in items] == ["done", "done", "done", "error"]
    for item, path in zip(items[:3], paths[:3], strict=True):
        expected = _predict(live_server, path.read_bytes(), path.name)
        text = item.text
        assert text.startswith(f"{path.name}: {expected['label']}"), text
        assert f"{expected['score']:.3f}" in text
    assert "Unsupported" in items[3].text
    items[1].find_element(page.by.TAG_NAME, "button").click()  # shows that file's result again
    _assert_shows(page, _predict(live_server, paths[1].read_bytes(), paths[1].name))


def test_a_pasted_url_is_checked_by_the_service_and_a_private_one_refused(page: Page) -> None:
    before = page.request_id()
    page.find("image-url").send_keys("http://127.0.0.1:9/face.jpg")
    page.find("check-url").click()
    page._settled_after(before)
    assert page.shown("error")
    assert "(403)" in page.text("error-title")
    assert "loopback" in page.text("error-detail")
    assert page.find("queue").find_elements(page.by.CSS_SELECTOR, 'li[data-state="error"]')


def _clip_of_two_faces(tmp_path: Path) -> Path:
    """3 s at 4 fps: one face throughout, a second one from 1.0 s to 2.25 s."""
    from PIL import Image

    from tests.utils.videos import canvas_with, write_video

    a, b = (Image.open(_sample(label, tmp_path, i)).convert("RGB") for i, label in enumerate(("real", "fake")))
    frames = [canvas_with([(a, (10, 30)), (b if 4 <= i < 10 else None, (330, 30))], size=(660, 360)) for i in range(12)]
    path = tmp_path / "two-faces.mp4"
    path.write_bytes(write_video(frames, fps=4))
    return path


def test_a_video_shows_upload_and_job_progress_each_track_over_time_and_the_top_frames(
    page: Page, live_server: str, tmp_path: Path
) -> None:
    css = page.by.CSS_SELECTOR
    page.find("tab-video").click()
    assert page.shown("video-panel") and not page.shown("image-panel")
    assert page.find("tab-video").get_attribute("aria-selected") == "true"
    page.find("video-file").send_keys(str(_clip_of_two_faces(tmp_path)))
    page.wait.until(lambda d: page.shown("video-result") or page.shown("video-error"))
    assert not page.shown("video-error"), page.text("video-error")
    job = httpx.get(f"{live_server}/jobs/{page.text('video-job-id')}", timeout=WAIT_S).json()
    res = job["result"]
    assert page.text("video-label").lower() == res["label"] and res["label"] != "no_face"
    assert float(page.text("video-score")) == pytest.approx(res["score"], abs=5e-4 + 1e-9)
    # Both bars full: the whole file went up, every planned frame was analysed.
    upload, analysis = page.find("video-upload"), page.find("video-analysis")
    assert float(upload.get_attribute("value")) == float(upload.get_attribute("max")) > 0
    assert int(float(analysis.get_attribute("value"))) == res["sampling"]["frames_analysed"]
    assert page.text("video-state") == "Done."
    # One line per face track, one point per frame the face was judged in.
    lines = page.driver.find_elements(css, "#video-plot g[data-track]")
    assert len(lines) == len(res["tracks"]) >= 2
    for line, track in zip(lines, res["tracks"], strict=True):
        assert line.get_attribute("data-label") == track["label"]
        assert len(line.find_elements(css, "circle")) == track["frames"]
    assert len(page.driver.find_elements(css, "#video-tracks li")) == len(res["tracks"])
    # The most-fake frames: served images, every face of the frame boxed, the evidence face marked.
    kept = [t for t in res["top_frames"] if t["image"]]
    shown = page.driver.find_elements(css, "#video-frames li")
    assert len(shown) == len(kept) >= 1
    page.wait.until(
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('#video-frames img')].every((i) => i.complete && i.naturalWidth > 0)"
        )
    )
    by_index = {f["index"]: f for f in res["frames"]}
    for item, top in zip(shown, kept, strict=True):
        boxes = item.find_elements(css, ".face-box")
        assert len(boxes) == len(by_index[top["index"]]["faces"])
        evidence = item.find_elements(css, ".face-box.evidence")
        assert [b.get_attribute("data-track") for b in evidence] == [str(top["track"])]
    assert page.severe_logs() == []
    save_screenshot(page.driver, "video")


def test_a_file_that_is_not_a_video_shows_the_problem(page: Page, tmp_path: Path) -> None:
    page.find("tab-video").click()
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"this is text, not a video\n" * 20)
    page.find("video-file").send_keys(str(path))
    page.wait.until(lambda d: page.shown("video-error"))
    assert page.text("video-error-title") == "Unsupported video type (415)"
    assert not page.shown("video-result")
