"""What the routes are given: the settings, the services built from them (service/services.py), a database
session, the caller (from its API key), the audit log."""

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlmodel import Session, select

from service.audit_chain import record
from service.services import Services
from service.settings import Settings
from service.tables import ApiKey, AuditEvent
from service.text import unsafe_character

ROLES = ("admin", "studio", "verifier", "auditor")
KEY_PREFIX = "hs_"


@dataclass(frozen=True)
class Caller:
    key_id: str
    key_name: str
    role: str
    tenant: str

    def sees(self, tenant: str) -> bool:
        return self.role == "admin" or self.tenant == tenant


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_services(request: Request) -> Services:
    return request.app.state.services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with Session(services.engine) as session:
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
    """Store a new key (hashed) and return it; it is shown this once. Its name is unique among the tenant's
    active keys, so that people can tell keys apart (the audit log records the key's id too)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    for label, text in (("name", name), ("tenant", tenant)):
        if not text.strip() or len(text) > 200 or unsafe_character(text):
            raise ValueError(f"the key's {label} must be 1 to 200 characters, without control characters")
    taken = session.exec(
        select(ApiKey).where(ApiKey.tenant == tenant, ApiKey.name == name, ApiKey.revoked_at.is_(None))
    ).first()
    if taken is not None:
        raise ValueError(
            f"tenant {tenant} already has an active key named {name!r} (id {taken.id}); choose another name, "
            "or revoke that key first"
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(name=name, role=role, tenant=tenant, key_hash=hash_key(key), prefix=key[:10], expires_at=expires_at)
    )
    session.commit()
    return key


async def authenticate(request: Request) -> Caller:
    """The caller the request guard authenticated (service/request_guard.py: 401 and 429 are answered there)."""
    caller = getattr(request.state, "caller", None)
    if caller is None:
        raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>`", {"WWW-Authenticate": "Bearer"})
    return caller


def require(*roles: str):
    """A dependency admitting callers with one of `roles` (admin always)."""

    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if caller.role != "admin" and caller.role not in roles:
            raise HTTPException(403, f"this needs a {' or '.join(roles)} key; yours is {caller.role}")
        return caller

    return check


def audit(session: Session, caller: Caller, action: str, object_type: str, object_id: str, detail: str = "") -> None:
    """Record who did what; chained onto the audit log when the caller's own change commits."""
    record(
        session,
        AuditEvent(
            key_id=caller.key_id,
            key_name=caller.key_name,
            role=caller.role,
            tenant=caller.tenant,
            action=action,
            object_type=object_type,
            object_id=object_id,
            detail=detail,
        ),
    )


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
