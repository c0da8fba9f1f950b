"""Webhooks following the Standard Webhooks specification (the `standardwebhooks` package signs them).

- An event is written as one `webhook_deliveries` row per subscribed webhook of the tenant, in the same
  transaction as the change it announces (an outbox): a job that ends announces it exactly once, and a
  change that rolls back announces nothing.
- Every worker (Celery workers, or the in-process worker) checks every second for deliveries that are due
  (`dispatch_due`, a conditional UPDATE claims each one) and hands them on: to the `webhooks` Celery queue
  with HEADSHOT_BROKER_URL, to a small pool of threads in the service otherwise. Never on a job's thread:
  a slow receiver delays only other deliveries, and only up to HEADSHOT_WEBHOOK_TIMEOUT_SECONDS.
- A delivery is one POST of the stored JSON body with the `webhook-id` (the delivery's id, the same on every
  retry), `webhook-timestamp` and `webhook-signature` headers. A 2xx answer delivers it; anything else
  (an error, a timeout, a redirect, which is never followed) is retried after HEADSHOT_WEBHOOK_RETRY_SECONDS,
  doubling each time, up to HEADSHOT_WEBHOOK_MAX_ATTEMPTS attempts; each attempt is logged on the row.
- The receiver's host is resolved before every attempt and the request goes to the address that was
  checked: a loopback, private, link-local or otherwise non-global address is refused (no retry) unless the
  host is listed in HEADSHOT_WEBHOOK_ALLOWED_HOSTS.
"""

import base64
import datetime as dt
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlmodel import Session

from service.tables import Job, Webhook, WebhookDelivery

log = logging.getLogger("headshot.webhooks")

EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "job.interrupted", "subject.erased", "consent.withdrawn")
JOB_ENDINGS = ("succeeded", "failed", "cancelled", "interrupted")
MAX_BACKOFF_SECONDS = 6 * 3600
KEPT_ATTEMPTS = 20
USER_AGENT = "headshot-webhooks"


class WebhookUrlError(ValueError):
    """The receiver's URL may not be used; the message says why."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# -- where deliveries may go -----------------------------------------------------------------------------


def resolve_receiver(url: str, allowed_hosts: list[str]) -> list[str]:
    """The addresses a delivery to `url` may connect to; WebhookUrlError for a bad URL, a host that does not
    resolve, or one that resolves to a non-global address (loopback, private, link-local...) unless allowed."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookUrlError(f"{url!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookUrlError(f"{url!r} is not an http:// or https:// URL with a host")
    if parsed.userinfo:
        raise WebhookUrlError("the URL may not carry a user name or password; authenticate with the signature")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise WebhookUrlError(f"the host {parsed.host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if parsed.host.lower() in {host.lower() for host in allowed_hosts}:
        return addresses
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        mapped = getattr(ip, "ipv4_mapped", None) or ip
        if not mapped.is_global or mapped.is_multicast:
            raise WebhookUrlError(
                f"the host {parsed.host} resolves to {address}, a loopback, private or link-local address: "
                "deliveries go to public addresses only, unless the host is listed in "
                "HEADSHOT_WEBHOOK_ALLOWED_HOSTS"
            )
    return addresses


# -- announcing events -----------------------------------------------------------------------------------


def enqueue(session: Session, tenant: str, event_type: str, data: dict) -> int:
    """Write a delivery for each of the tenant's webhooks subscribed to `event_type`, in `session`'s
    transaction (committed with the change it announces). Returns how many."""
    if event_type not in EVENTS:
        raise ValueError(f"unknown webhook event {event_type!r}")
    webhooks = session.execute(select(Webhook.id, Webhook.events).where(Webhook.tenant == tenant)).all()
    count = 0
    for webhook_id, events in webhooks:
        if event_type not in json.loads(events):
            continue
        body = {"type": event_type, "timestamp": _now().isoformat(), "data": data}
        session.add(
            WebhookDelivery(
                id=f"msg_{uuid.uuid4().hex}",
                webhook_id=webhook_id,
                tenant=tenant,
                event_type=event_type,
                payload=json.dumps(body, separators=(",", ":")),
            )
        )
        count += 1
    return count


def job_ended(session: Session, job_id: str) -> None:
    """Announce the job's end (job.succeeded, .failed, .cancelled or .interrupted), as the row reads now in
    this transaction; call it right after the UPDATE that ended the job."""
    row = session.execute(
        select(Job.tenant, Job.subject_id, Job.kind, Job.status, Job.error, Job.lora_sha256).where(Job.id == job_id)
    ).one_or_none()
    if row is None or row.status not in JOB_ENDINGS:
        return
    data = {"job_id": job_id, "subject_id": row.subject_id, "kind": row.kind, "status": row.status}
    if row.error:
        data["error"] = row.error
    if row.status == "succeeded" and row.lora_sha256:
        data["lora_sha256"] = row.lora_sha256
    enqueue(session, row.tenant, f"job.{row.status}", data)


# -- delivering ------------------------------------------------------------------------------------------


def dispatch_due(engine, dispatch: Callable[[str], None], claim_seconds: float, limit: int = 100) -> list[str]:
    """Claim the deliveries that are due and nobody holds, and hand each id to `dispatch`. Safe in every
    worker at once: each claim is a conditional UPDATE that one of them wins. A claim that is never acted on
    (a lost message, a dead process) runs out after `claim_seconds`, and the delivery is dispatched again."""
    now = _now()
    free = or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)
    claimed = []
    with Session(engine) as session:
        due = session.execute(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now, free)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        ).scalars()
        for delivery_id in list(due):
            won = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending", free)
                .values(claimed_until=now + dt.timedelta(seconds=claim_seconds))
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                claimed.append(delivery_id)
        session.commit()
    for delivery_id in claimed:
        try:
            dispatch(delivery_id)
        except Exception as exc:  # the broker is away: the claim runs out and the next round tries again
            log.warning("webhook delivery %s: could not dispatch (%s)", delivery_id, exc)
    return claimed


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    seconds: float
    refused: bool = False  # the receiver's address may not be used: do not try again

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver(services, delivery_id: str) -> str | None:
    """Make one attempt at a due delivery and record it; returns the delivery's status after it (None if
    the delivery was not due, or another sender has it)."""
    settings, engine = services.settings, services.engine
    now = _now()
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.next_attempt_at > now:
            return None
        webhook = session.get(Webhook, delivery.webhook_id)
        url, secret = (webhook.url, webhook.secret) if webhook else (None, None)
        attempt, payload = delivery.attempts + 1, delivery.payload
        won = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == delivery.attempts,
            )
            .values(attempts=attempt, claimed_until=now + dt.timedelta(seconds=settings.webhook_timeout_seconds + 30))
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    if not won:
        return None
    if url is None:
        result = AttemptResult(None, "the webhook was deleted", 0.0, refused=True)
    else:
        allowed, timeout = settings.webhook_allowed_hosts, settings.webhook_timeout_seconds
        result = send(url, secret, delivery_id, payload, allowed, timeout)
    return _record(engine, delivery_id, attempt, result, settings)


def send(url: str, secret: str, delivery_id: str, payload: str, allowed_hosts: list[str], timeout: float):
    """One signed POST to the receiver, at the address that was checked, following no redirect."""
    import httpx
    from standardwebhooks import Webhook as Signer

    started = time.monotonic()
    try:
        addresses = resolve_receiver(url, allowed_hosts)
    except WebhookUrlError as exc:
        refused = "does not resolve" not in str(exc)
        return AttemptResult(None, f"refused: {exc}" if refused else str(exc), 0.0, refused=refused)
    parsed = httpx.URL(url)
    address = addresses[0]
    sent_at = _now()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": parsed.netloc.decode("ascii"),
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Signer(secret).sign(delivery_id, sent_at, payload),
    }
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST", parsed.copy_with(host=address), content=payload.encode(), headers=headers, extensions=extensions
            ) as response,
        ):
            status = response.status_code  # the body is never read: a receiver cannot make us hold it
    except httpx.HTTPError as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    error = None
    if not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
    return AttemptResult(status, error, time.monotonic() - started)


def _record(engine, delivery_id: str, attempt: int, result: AttemptResult, settings) -> str | None:
    now = _now()
    if result.delivered:
        changes = {"status": "succeeded", "finished_at": now}
    elif result.refused or attempt >= settings.webhook_max_attempts:
        changes = {"status": "failed", "finished_at": now}
    else:
        wait = min(settings.webhook_retry_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        changes = {"next_attempt_at": now + dt.timedelta(seconds=wait)}
    entry = {
        "attempt": attempt,
        "at": now.isoformat(),
        "status_code": result.status_code,
        "error": result.error,
        "duration_ms": round(result.seconds * 1000),
    }
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.attempts != attempt:  # deleted with its webhook, or taken over
            return None
        log_entries = [*json.loads(delivery.attempt_log), entry][-KEPT_ATTEMPTS:]
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempt)
            .values(
                claimed_until=None,
                last_status_code=result.status_code,
                last_error=result.error,
                attempt_log=json.dumps(log_entries),
                **changes,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
    if not result.delivered:
        log.warning("webhook delivery %s, attempt %s: %s", delivery_id, attempt, result.error)
    return changes.get("status", "pending")
