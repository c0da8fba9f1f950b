"""Integrators: webhooks of a tenant (Standard Webhooks), and the log of their deliveries."""

import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, Field
from sqlalchemy import delete
from sqlmodel import select

from service.deps import Caller, ServicesDep, SessionDep, audit, get_owned, require
from service.tables import Webhook, WebhookDelivery
from service.webhooks import EVENTS, WebhookUrlError, new_secret, resolve_receiver

router = APIRouter(tags=["webhooks"])
Studio = Annotated[Caller, Depends(require("studio"))]
MAX_URL_LENGTH = 2000
LISTED_DELIVERIES = 100


class WebhookIn(BaseModel):
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description="The receiver: an http(s) URL.")
    events: list[str] = Field(min_length=1, description=f"Any of {', '.join(EVENTS)}.")


def webhook_out(webhook: Webhook) -> dict:
    return {
        "id": webhook.id,
        "tenant": webhook.tenant,
        "url": webhook.url,
        "events": json.loads(webhook.events),
        "created_by": webhook.created_by,
        "created_at": webhook.created_at.isoformat(),
    }


def delivery_out(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.status == "pending" else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "attempt_log": json.loads(delivery.attempt_log),
        "payload": json.loads(delivery.payload),
        "created_at": delivery.created_at.isoformat(),
        "finished_at": delivery.finished_at.isoformat() if delivery.finished_at else None,
    }


@router.post("/v1/webhooks", status_code=201)
def create_webhook(body: WebhookIn, caller: Studio, session: SessionDep, services: ServicesDep) -> dict:
    """Register a receiver for the caller's tenant; the answer holds its signing secret, shown only now."""
    unknown = sorted(set(body.events) - set(EVENTS))
    if unknown:
        raise HTTPException(422, f"unknown event {', '.join(unknown)}; use any of {', '.join(EVENTS)}")
    try:
        resolve_receiver(body.url, services.settings.webhook_allowed_hosts)
    except WebhookUrlError as exc:
        raise HTTPException(422, str(exc)) from None
    webhook = Webhook(
        tenant=caller.tenant,
        url=body.url,
        events=json.dumps(sorted(set(body.events))),
        secret=new_secret(),
        created_by=caller.key_name,
    )
    session.add(webhook)
    audit(session, caller, "create", "webhook", webhook.id, body.url)
    session.commit()
    return {**webhook_out(webhook), "secret": webhook.secret}


@router.get("/v1/webhooks")
def list_webhooks(caller: Studio, session: SessionDep) -> dict:
    query = select(Webhook).order_by(Webhook.created_at)
    if caller.role != "admin":
        query = query.where(Webhook.tenant == caller.tenant)
    return {"webhooks": [webhook_out(webhook) for webhook in session.exec(query).all()]}


@router.get("/v1/webhooks/{webhook_id}")
def read_webhook(webhook_id: str, caller: Studio, session: SessionDep) -> dict:
    return webhook_out(get_owned(session, caller, Webhook, webhook_id, "webhook"))


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, caller: Studio, session: SessionDep) -> Response:
    """Stop deliveries to it; its pending deliveries and its delivery log go with it."""
    webhook = get_owned(session, caller, Webhook, webhook_id, "webhook")
    session.exec(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    session.delete(webhook)
    audit(session, caller, "delete", "webhook", webhook.id, webhook.url)
    session.commit()
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries")
def list_deliveries(webhook_id: str, caller: Studio, session: SessionDep) -> dict:
    """The latest deliveries, newest first, each with its attempts."""
    webhook = get_owned(session, caller, Webhook, webhook_id, "webhook")
    deliveries = session.exec(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id)
        .order_by(WebhookDelivery.created_at.desc())
        .limit(LISTED_DELIVERIES)
    ).all()
    return {"webhook_id": webhook.id, "deliveries": [delivery_out(delivery) for delivery in deliveries]}
