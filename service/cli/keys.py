"""`headshot keys ...`: the API keys of the HTTP service."""

from typing import Annotated

import typer

from service.cli.common import console, errors, fail, group, reports_errors, services

keys_app = group("keys", "API keys of the HTTP service (roles: admin, studio, verifier, auditor).")


@keys_app.command("create")
@reports_errors
def keys_create(
    role: Annotated[str, typer.Option(help="admin, studio, verifier or auditor.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in the audit log).")],
    tenant: Annotated[str, typer.Option(help="The tenant whose subjects the key sees.")] = "default",
    expires_days: Annotated[int | None, typer.Option(help="Expire after this many days.", min=1)] = None,
) -> None:
    """Create a key and print it once (only its hash is stored). Names are unique among a tenant's active keys."""
    import datetime as dt

    from sqlmodel import Session, select

    from service.deps import create_key, hash_key
    from service.tables import ApiKey

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days) if expires_days else None
    with Session(services().engine) as session:
        try:
            key = create_key(session, name, role, tenant, expires)
        except ValueError as exc:
            fail(str(exc))
        key_id = session.exec(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).one()
    errors.print(
        f"{role} key {key_id} for {name} (tenant {tenant}); the key is shown only now:", highlight=False, markup=False
    )
    print(key)


@keys_app.command("list")
@reports_errors
def keys_list() -> None:
    """Keys with their id, prefix, name, role, tenant and state (never the keys themselves)."""
    from sqlmodel import Session, select

    from service.tables import ApiKey

    with Session(services().engine) as session:
        for key in session.exec(select(ApiKey).order_by(ApiKey.created_at)).all():
            state = (
                "revoked" if key.revoked_at else f"expires {key.expires_at:%Y-%m-%d}" if key.expires_at else "active"
            )
            console.print(
                f"{key.id}  {key.prefix}…  {key.name:24} {key.role:9} tenant {key.tenant:12} {state}",
                highlight=False,
                markup=False,
            )


@keys_app.command("revoke")
@reports_errors
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (see `keys list`), its prefix, or its name.")],
    tenant: Annotated[str | None, typer.Option(help="The tenant, when a name is used in several.")] = None,
) -> None:
    """Revoke one key: it is refused from now on. A name that fits several active keys revokes none."""
    import datetime as dt

    from sqlmodel import Session, or_, select

    from service.tables import ApiKey

    with Session(services().engine) as session:
        query = select(ApiKey).where(
            or_(ApiKey.id == key, ApiKey.prefix == key, ApiKey.name == key), ApiKey.revoked_at.is_(None)
        )
        if tenant is not None:
            query = query.where(ApiKey.tenant == tenant)
        matches = session.exec(query).all()
        if not matches:
            fail(f"no active key with the id, prefix or name {key!r}" + (f" in tenant {tenant}" if tenant else ""))
        if len(matches) > 1:
            listed = "; ".join(f"{row.id} ({row.name}, tenant {row.tenant})" for row in matches)
            fail(f"{len(matches)} active keys match {key!r}: {listed}; give the id of the one to revoke")
        row = matches[0]
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.add(row)
        session.commit()
        console.print(f"revoked key {row.id} ({row.name}, tenant {row.tenant})", highlight=False, markup=False)
