"""What the routes are given: the settings, a database session, the caller (from its API key), the audit log."""

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlmodel import Session, select

from service.audit_chain import record
from service.settings import Settings
from service.tables import ApiKey, AuditEvent

ROLES = ("admin", "studio", "verifier", "auditor")
KEY_PREFIX = "hs_"


@dataclass(frozen=True)
class Caller:
    key_name: str
    role: str
    tenant: str

    def sees(self, tenant: str) -> bool:
        return self.role == "admin" or self.tenant == tenant


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    from service.database import engine_for

    with Session(engine_for(settings.resolved_database_url)) as session:
        yield session


def get_owned(session: Session, caller: Caller, table, object_id: str, noun: str):
    """The row if the caller's tenant owns it; another tenant's row is 404, as if it did not exist."""
    row = session.get(table, object_id)
    if row is None or not caller.sees(row.tenant):
        raise HTTPException(404, f"no {noun} {object_id}")
    return row


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str, role: str, tenant: str = "default", expires_at=None) -> str:
    """Store a new key (hashed) and return it; it is shown this once."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(name=name, role=role, tenant=tenant, key_hash=hash_key(key), prefix=key[:10], expires_at=expires_at)
    )
    session.commit()
    return key


def authenticate(request: Request, session: Annotated[Session, Depends(get_session)]) -> Caller:
    """The caller behind the bearer key; 401 without a valid one, 429 when the key is over its rate limit."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>`", {"WWW-Authenticate": "Bearer"})
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key.strip()))).first()
    now = dt.datetime.now(dt.UTC)
    if row is None or row.revoked_at is not None or (row.expires_at and _aware(row.expires_at) <= now):
        raise HTTPException(401, "invalid, revoked or expired API key", {"WWW-Authenticate": "Bearer"})
    limiter = request.app.state.key_limiter
    if wait := limiter.take(row.id):
        raise HTTPException(
            429,
            f"rate limit of {request.app.state.settings.rate_limit_per_minute} requests per minute for this key "
            f"reached; retry in {limiter.retry_after(wait)} s",
            {"Retry-After": limiter.retry_after(wait)},
        )
    caller = Caller(row.name, row.role, row.tenant)
    session.commit()  # hand the connection back to the pool while the route works (e.g. verifies an image)
    return caller


def require(*roles: str):
    """A dependency admitting callers with one of `roles` (admin always)."""

    def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if caller.role != "admin" and caller.role not in roles:
            raise HTTPException(403, f"this needs a {' or '.join(roles)} key; yours is {caller.role}")
        return caller

    return check


def audit(session: Session, caller: Caller, action: str, object_type: str, object_id: str, detail: str = "") -> None:
    """Record who did what; chained onto the audit log when the caller's own change commits."""
    record(
        session,
        AuditEvent(
            key_name=caller.key_name,
            role=caller.role,
            tenant=caller.tenant,
            action=action,
            object_type=object_type,
            object_id=object_id,
            detail=detail,
        ),
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
