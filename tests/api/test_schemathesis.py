"""Schemathesis against the app's own OpenAPI schema, in process (ASGI), with all default checks.

Generated `file` parts follow the schema's `encoding.contentType` (the accepted image and video
types): for those media types we register strategies that make real images of a size the model
can judge, and real short videos in each container, so "schema-valid upload" means what it means
for a client. Negative cases come from
schemathesis as usual and must all be 4xx, unknown query parameters included (the routes with query
options refuse the ones they do not declare). A negative case is judged by the request that was sent:
an extra query key whose value is an empty array never reaches the server (see `_sent_a_valid_query`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi

from deepfake_api.preprocess import MEDIA_TYPES
from deepfake_api.video import VIDEO_TYPES
from tests.utils.apps import build_app
from tests.utils.images import encode, noise_rgb
from tests.utils.videos import write_video

URL_ROUTE = "/predict/url"
EXAMPLES = {GenerationMode.POSITIVE: 250, GenerationMode.NEGATIVE: 250}


@st.composite
def _image(draw: st.DrawFn, fmt: str) -> bytes:
    width, height = draw(st.integers(32, 160)), draw(st.integers(32, 160))
    img = Image.fromarray(noise_rgb(width, height, seed=draw(st.integers(0, 2**16))))
    if fmt == "GIF" or draw(st.booleans()) and fmt in ("PNG", "BMP", "TIFF"):
        img = img.convert(draw(st.sampled_from(["P", "L"])))
    return encode(img, fmt)


# container -> (PyAV muxer, encoder) for the generated videos
VIDEO_CODECS = {
    "mp4": ("mp4", "libx264"),
    "mov": ("mov", "libx264"),
    "webm": ("webm", "libvpx"),
    "mkv": ("matroska", "libx264"),
    "avi": ("avi", "mpeg4"),
}


@st.composite
def _video(draw: st.DrawFn, container: str) -> bytes:
    width, height = 2 * draw(st.integers(16, 80)), 2 * draw(st.integers(16, 80))
    seed = draw(st.integers(0, 2**16))
    frames = [noise_rgb(width, height, seed=seed + i) for i in range(draw(st.integers(1, 6)))]
    fmt, codec = VIDEO_CODECS[container]
    return write_video(frames, fps=draw(st.sampled_from([2, 4, 25])), fmt=fmt, codec=codec)


for _fmt, _media_type in MEDIA_TYPES.items():
    schemathesis.openapi.media_type(_media_type, _image(_fmt))
for _container, _media_type in VIDEO_TYPES.items():
    schemathesis.openapi.media_type(_media_type, _video(_container))


def _sent_a_valid_query(case: schemathesis.Case, response: schemathesis.Response) -> bool:
    """Whether a negative case negated only its query string and the HTTP client put none of the
    negation on the wire: a generated extra key whose value is an empty array (`{'ÿ': []}`,
    `{'k': [[], []]}`) is not sent at all, so the server receives e.g. `?explain=true`, a request the
    schema allows, and 200 is the right answer. Judged on the URL actually sent against the schema's
    declared query parameters (booleans as `true`/`false`), not against the app's own parsing."""
    meta = case.meta
    others = (ParameterLocation.PATH, ParameterLocation.HEADER, ParameterLocation.COOKIE, ParameterLocation.BODY)
    if meta is None or any(meta.is_negative_at(location) for location in others):
        return False
    declared = {
        p["name"]: p.get("schema", {}).get("type")
        for p in case.operation.definition.raw.get("parameters", [])
        if p.get("in") == "query"
    }
    sent = parse_qsl(urlsplit(str(response.request.url)).query, keep_blank_values=True)
    return all(declared.get(name) == "boolean" and value in ("true", "false") for name, value in sent)


@pytest.fixture
def api_schema() -> Iterator[schemathesis.schemas.BaseSchema]:
    app = build_app()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    # Not `with`: entering the client would run a second lifespan, and leaving it stop the engine.
    client = asgi.get_client(app)
    deadline = time.monotonic() + 300  # loading the model is slow on a busy machine
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "the app did not become ready"
        time.sleep(0.05)
    yield schema
    asgi.shutdown_lifespans()


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_the_app_conforms_to_its_openapi_schema(
    api_schema: schemathesis.schemas.BaseSchema, mode: GenerationMode
) -> None:
    seen: Counter[tuple[str, int]] = Counter()
    valid_on_the_wire: Counter[tuple[str, int]] = Counter()  # negative cases whose negation was not sent
    # /predict/url fetches what it is given: schema-valid URLs name hosts that do not exist (422 by
    # design, and real DNS lookups). Its positive cases are the tests of tests/test_fetch.py.
    schema = api_schema.exclude(path=URL_ROUTE) if mode is GenerationMode.POSITIVE else api_schema

    @given(case=schema.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate()  # every default check
        seen[(case.operation.label, response.status_code)] += 1
        if mode is GenerationMode.NEGATIVE and _sent_a_valid_query(case, response):
            valid_on_the_wire[(case.operation.label, response.status_code)] += 1

    run()
    statuses = {status for _, status in seen}
    assert not any(500 <= s for s in statuses), seen
    if mode is GenerationMode.POSITIVE:
        operations = {result.ok().label for result in schema.get_all_operations()}
        assert {label for label, _ in seen} == operations, seen
        assert seen[("POST /predict", 200)] > 0, seen
        assert seen[("POST /videos", 202)] + seen[("POST /videos", 200)] > 0, seen
    else:
        # POST /videos is not in this list: a negated *declared* part type around a real video is
        # still a video (the type is read from the bytes), so 202 is right there.
        negative = seen - valid_on_the_wire
        assert all(400 <= s < 500 for label, s in negative if label == "POST /predict"), (seen, valid_on_the_wire)
