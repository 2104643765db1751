"""Alert subscriptions and their delivery logs. Managing them needs an API key (DEEPFAKE_API_KEY):
without one there is no caller to own them, and the settings' subscriptions are the only ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from deepfake_api.alerts.delivery import Alerts
from deepfake_api.alerts.subscriptions import public
from deepfake_api.api import access
from deepfake_api.api.deps import AlertsDep, JobsDep
from deepfake_api.api.responses import PROBLEM, json_response
from deepfake_api.errors import SubscriptionNotFound, SubscriptionReadOnly
from deepfake_api.schemas import Deliveries, Delivery, Subscription, SubscriptionCreate, Subscriptions
from deepfake_api.services.jobs import JobService

router = APIRouter(dependencies=[Depends(access.subscriptions)], tags=["alerts"])
COMMON: dict[int | str, dict[str, Any]] = {
    400: {**PROBLEM, "description": "The body is not JSON"},
    401: {**PROBLEM, "description": "API key missing or wrong"},
    403: {**PROBLEM, "description": "No API key is configured: subscriptions come from the settings only"},
    422: {**PROBLEM, "description": "Not a valid subscription (unknown event, refused webhook target, …)"},
    503: {**PROBLEM, "description": "The job store cannot be reached; see Retry-After"},
}
NOT_FOUND = {404: {**PROBLEM, "description": "No such subscription"}}


async def _subscription(jobs: JobService, alerts: Alerts, sub_id: str) -> dict[str, Any]:
    doc = await jobs.call(alerts.subscription, sub_id)
    if doc is None:
        raise SubscriptionNotFound(f"No subscription {sub_id[:64]!r}.")
    return doc


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=Subscription,
    summary="Subscribe a webhook or e-mail addresses to alerts",
    description=(
        "Webhooks are signed as Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`: "
        "v1, HMAC-SHA256 with the subscription's secret); the secret is in this answer only. The target must "
        "be https on a public address (checked now and at every delivery) unless the service allows private ones."
    ),
    responses=COMMON,
)
async def create_subscription(body: SubscriptionCreate, jobs: JobsDep, alerts: AlertsDep) -> Response:
    doc = await jobs.call(alerts.subscribe, body.model_dump(exclude_none=True))
    created = Subscription(**{k: v for k, v in doc.items() if k not in ("state", "expires_at")})
    return json_response(created, 201, {"Location": f"/subscriptions/{doc['id']}"})


@router.get("/subscriptions", response_model=Subscriptions, summary="Every subscription (no secrets)", responses=COMMON)
async def list_subscriptions(jobs: JobsDep, alerts: AlertsDep) -> Response:
    docs = await jobs.call(alerts.subscriptions)
    return json_response(Subscriptions(subscriptions=[Subscription(**public(d)) for d in docs]))


@router.get(
    "/subscriptions/{sub_id}",
    response_model=Subscription,
    summary="One subscription (no secret)",
    responses={**COMMON, **NOT_FOUND},
)
async def get_subscription(sub_id: str, jobs: JobsDep, alerts: AlertsDep) -> Response:
    return json_response(Subscription(**public(await _subscription(jobs, alerts, sub_id))))


@router.delete(
    "/subscriptions/{sub_id}",
    status_code=204,
    summary="Remove a subscription (its pending alerts are then dropped)",
    responses={
        **COMMON,
        **NOT_FOUND,
        409: {**PROBLEM, "description": "A subscription from the settings"},
    },
)
async def delete_subscription(sub_id: str, jobs: JobsDep, alerts: AlertsDep) -> Response:
    doc = await _subscription(jobs, alerts, sub_id)
    if doc["source"] == "settings":
        raise SubscriptionReadOnly("This subscription is configured in DEEPFAKE_ALERT_SUBSCRIPTIONS; change it there.")
    await jobs.call(alerts.unsubscribe, sub_id)
    return Response(status_code=204)


@router.get(
    "/subscriptions/{sub_id}/deliveries",
    response_model=Deliveries,
    summary="The subscription's alerts, newest first: every attempt with its status and time",
    responses={**COMMON, **NOT_FOUND},
)
async def list_deliveries(sub_id: str, jobs: JobsDep, alerts: AlertsDep) -> Response:
    await _subscription(jobs, alerts, sub_id)
    docs = await jobs.call(alerts.deliveries, sub_id)
    fields = Delivery.model_fields
    return json_response(Deliveries(deliveries=[Delivery(**{k: v for k, v in d.items() if k in fields}) for d in docs]))
