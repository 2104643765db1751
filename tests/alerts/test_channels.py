"""E-mail alerts to a real SMTP server (aiosmtpd), read back by the test: the verdict and the
request id in plain text and HTML, no image attached."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from tests.alerts.conftest import API_KEY, Mailbox, predict, wait_delivery
from tests.utils.apps import serving

KEY = {"X-API-Key": API_KEY}


def test_an_email_alert_arrives_with_the_verdict_and_no_image(
    tmp_path: Path, smtp_server: tuple[Mailbox, int], fake_png: bytes
) -> None:
    box, port = smtp_server
    with serving(
        jobs_dir=tmp_path,
        api_key=API_KEY,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from="alerts@deepfake.example.com",
    ) as client:
        sub = client.post("/subscriptions", json={"emails": ["mod@example.com", "kyc@example.com"]}, headers=KEY)
        assert sub.status_code == 201, sub.text
        answer = predict(client, fake_png)
        ((sender, rcpts, raw),) = box.wait_for(1)
        delivery = wait_delivery(client, sub.json()["id"], "delivered")
    assert sender == "alerts@deepfake.example.com" and sorted(rcpts) == ["kyc@example.com", "mod@example.com"]
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert "fake" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert answer["request_id"] in text and f"{answer['score']:.3f}" in text
    assert answer["request_id"] in html
    assert not [p for p in msg.walk() if p.get_content_disposition() == "attachment"]
    assert msg["X-Deepfake-Alert-Id"] == delivery["id"]
    assert [(a["outcome"], a["status"]) for a in delivery["attempts"]] == [("delivered", 250)]
