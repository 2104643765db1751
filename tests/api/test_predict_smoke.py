from fastapi.testclient import TestClient

from tests.utils.images import jpeg_bytes


def test_predict_returns_a_verdict_for_a_jpeg(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in {"real", "fake", "uncertain"}
    assert 0.0 <= body["score"] <= 1.0
