"""A report to keep: one analysis as a single printable HTML page with no external assets.

The image (or a video's most-fake frames) is embedded as a data: URI with the face boxes and, when
the analysis was explained, the heatmaps drawn over it; then the verdict, each face's scores, kind
and detector agreement, the model card's facts and what the labels promise. Everything from the
result is HTML-escaped; the page links nowhere (no http(s) URL, no script). Nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image

from deepfake_api import explain

THUMB_SIDE = 720

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d232a;margin:24px auto;max-width:880px;
padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #d5dbe1}
.muted{color:#5b6670}.verdict{font-size:20px;font-weight:600}.fake{color:#b3182b}.real{color:#1c7a3c}
.uncertain{color:#9a6a00}.no_face{color:#5b6670}figure{margin:12px 0}img{max-width:100%;border:1px solid #d5dbe1}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border:1px solid #d5dbe1;padding:4px 6px;text-align:left;
vertical-align:top}th{background:#f2f4f6}.legend{display:flex;align-items:center;gap:8px;font-size:12px}
.ramp{width:160px;height:10px;border:1px solid #aab}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
dt{font-weight:600}dd{margin:0}.warn{color:#b3182b;font-weight:600}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,figure{break-inside:avoid}}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def annotated(rgb: np.ndarray, faces: list[dict[str, Any]], *, side: int = THUMB_SIDE, scale: float = 1.0) -> str:
    """`rgb` shrunk to at most `side` px with the faces' heatmaps and boxes drawn on: a data: URI.
    `scale` maps the faces' coordinates to `rgb`'s pixels (a stored thumbnail of a video frame)."""
    h, w = rgb.shape[:2]
    shrink = min(1.0, side / max(h, w))
    if shrink < 1.0:
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * shrink)), max(1, round(h * shrink)))))
    s = scale * shrink
    maps = [f["heatmap"] for f in faces if f.get("heatmap")]
    out = explain.overlay(rgb, maps, scale=s) if maps else rgb
    out = explain.draw_boxes(out, [(f["box"], f.get("label") or "") for f in faces], scale=s)
    return _data_uri(out)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{float(v):.3f}"


def _faces_table(faces: list[dict[str, Any]], *, track: bool = False) -> str:
    rows = []
    for i, f in enumerate(faces, 1):
        if f.get("status") != "judged":
            continue
        dets = "<br>".join(f"{_e(d['name'])}: {_pct(d['score'])}" for d in f.get("detectors", []))
        agreement = f.get("agreement") or {}
        agree = ""
        if agreement:
            agree = (
                '<span class="warn">detectors disagree</span> '
                f"(fake: {_e(', '.join(agreement['says_fake']))}; real: {_e(', '.join(agreement['says_real']))})"
                if agreement["status"] == "disagree"
                else "agree"
            )
        kind = explain.kind_words(f.get("kind")) or ("–" if f.get("label") == "real" else "no kind head")
        heat = "yes" if f.get("heatmap") else "–"
        first = f"track {_e(f['track'])}" if track else str(i)
        rows.append(
            f'<tr><td>{first}</td><td class="{_e(f.get("label"))}">{_e(f.get("label"))}</td>'
            f"<td>{_pct(f.get('score'))}</td><td>{dets}</td><td>{_e(kind)}</td><td>{agree}</td><td>{heat}</td></tr>"
        )
    if not rows:
        return '<p class="muted">No face was judged.</p>'
    head = "<tr><th>Face</th><th>Label</th><th>P(fake)</th><th>Detectors</th><th>Kind</th><th>Agreement</th>"
    return f"<table>{head}<th>Heatmap</th></tr>{''.join(rows)}</table>"


def _legend() -> str:
    return (
        f'<p class="legend"><span>Heatmap: pushes towards fake</span><span>weak</span>'
        f'<img class="ramp" alt="colour ramp" src="{_data_uri(explain.legend(160, 10), "PNG")}"><span>strongest</span>'
        '<span class="muted">(uncoloured: no push towards fake)</span></p>'
    )


def _card(card: dict[str, Any], model: dict[str, Any]) -> str:
    decision = card.get("decision", {})
    dets = "".join(
        f"<li>{_e(d.get('name'))} {_e(d.get('version'))}: {_e(d.get('what', ''))}</li>"
        for d in card.get("detectors", [])
    )
    band = decision.get("uncertain_band", ["?", "?"])
    return (
        "<h2>What the labels promise</h2>"
        f"<p><b>fake</b> when P(fake) ≥ {_e(band[1])}, <b>real</b> when P(fake) ≤ {_e(band[0])}, "
        "<b>uncertain</b> in between: no evidence either way. "
        f"{_e(decision.get('rule', ''))}</p>"
        "<p>P(fake) is a calibrated probability on the sources the model was tested on; heatmaps show where "
        "the evidence lies, kinds what the face resembles: neither is proof. "
        f"{_e(card.get('limitations', ''))}</p>"
        "<h2>Model</h2><dl>"
        f"<dt>Name</dt><dd>{_e(model.get('name'))}</dd><dt>Version</dt><dd>{_e(model.get('version'))}</dd>"
        f"<dt>Card sha256</dt><dd><code>{_e(model.get('sha256'))}</code></dd>"
        f"<dt>Fusion</dt><dd>{_e(card.get('fusion', {}).get('method', ''))}</dd></dl><ul>{dets}</ul>"
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # The report loads nothing: images are inline, there is no script.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


def image_report(prediction: dict[str, Any], rgb: np.ndarray, card: dict[str, Any], *, created: str) -> str:
    """The report of one image's prediction (as JSON-ready dict) over its decoded, oriented pixels."""
    label = prediction["label"]
    faces = prediction.get("faces", [])
    explained = any(f.get("heatmap") for f in faces)
    img = annotated(rgb, faces)
    method = next((f["heatmap"]["method"] for f in faces if f.get("heatmap")), "")
    body = (
        "<h1>Deepfake check: image report</h1>"
        f'<p class="muted">Created {_e(created)} · request {_e(prediction.get("request_id"))}</p>'
        f'<p class="verdict {_e(label)}">{_e(label)} · P(fake) {_pct(prediction.get("score"))}</p>'
        f'<figure><img alt="The image with its faces boxed" src="{img}"><figcaption class="muted">'
        f"{_e(prediction['image']['oriented_width'])}×{_e(prediction['image']['oriented_height'])} px "
        f"{_e(prediction['image']['format'])}; boxes: red fake, green real, amber uncertain</figcaption></figure>"
        + (_legend() + f'<p class="muted">Heatmap method: {_e(method)}</p>' if explained else "")
        + "<h2>Faces</h2>"
        + _faces_table(faces)
        + "".join(f'<p class="warn">{_e(w)}</p>' for w in prediction.get("warnings", []))
        + _card(card, prediction["model"])
    )
    return _page("Deepfake check: image report", body)


def video_report(job: dict[str, Any], frames: dict[int, np.ndarray], card: dict[str, Any]) -> str:
    """The report of a finished video job: its verdict, tracks and most-fake frames (decoded thumbnails)."""
    result = job.get("result") or {}
    label = result.get("label", job.get("state"))
    parts = []
    for top in result.get("top_frames", []):
        rgb = frames.get(int(top["index"]))
        if rgb is None:
            continue
        faces = top.get("faces") or []
        # The kept frame is the upright frame shrunk as a whole: its long side over the frame's (a
        # rotation swaps width and height, never the long side).
        video = result.get("video") or {}
        long_side = max(video.get("width") or rgb.shape[1], video.get("height") or rgb.shape[0])
        scale = max(rgb.shape[:2]) / max(1, long_side)
        img = annotated(rgb, faces, scale=scale)
        parts.append(
            f'<figure><img alt="Frame {_e(top["index"])}" src="{img}"><figcaption class="muted">'
            f"frame {_e(top['index'])} at {_e(top['time_s'])} s, track {_e(top['track'])}, "
            f"P(fake) {_pct(top['score'])}</figcaption></figure>" + (_faces_table(faces, track=True) if faces else "")
        )
    tracks = "".join(
        f'<tr><td>{_e(t["id"])}</td><td class="{_e(t["label"])}">{_e(t["label"])}</td><td>{_pct(t["score"])}</td>'
        f"<td>{_pct(t['max_score'])}</td><td>{_e(t['frames'])}</td>"
        f"<td>{_e(t['first_time_s'])}–{_e(t['last_time_s'])} s</td></tr>"
        for t in result.get("tracks", [])
    )
    explained = any(f.get("heatmap") for top in result.get("top_frames", []) for f in (top.get("faces") or []))
    body = (
        "<h1>Deepfake check: video report</h1>"
        f'<p class="muted">Job {_e(job.get("id"))} · file {_e((job.get("upload") or {}).get("filename", ""))}</p>'
        f'<p class="verdict {_e(label)}">{_e(label)} · P(fake) {_pct(result.get("score"))}</p>'
        "<h2>Face tracks</h2>"
        + (
            "<table><tr><th>Track</th><th>Label</th><th>Mean P(fake)</th><th>Max</th><th>Frames</th><th>Time</th></tr>"
            f"{tracks}</table>"
            if tracks
            else '<p class="muted">No face was judged.</p>'
        )
        + "<h2>Most-fake frames</h2>"
        + (_legend() if explained else "")
        + ("".join(parts) or '<p class="muted">No frame kept.</p>')
        + "".join(f'<p class="warn">{_e(w)}</p>' for w in result.get("warnings", []))
        + _card(card, result.get("model", {}))
    )
    return _page("Deepfake check: video report", body)
