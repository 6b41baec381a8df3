"""Operator commands on the database: migrate, tenant create, apikey create, rotate-keys,
generate-key. Each uses `DATABASE_URL`, or starts the embedded server under AGENTFLOW_HOME.

What a script needs (a new key, a tenant id) is printed alone on stdout; notes go to stderr.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from agentflow_grpc.cli.common import Duration, fail, run_coroutine
from agentflow_grpc.config import Settings

T = TypeVar("T")

OPERATOR = "operator:cli"


@click.command()
@click.option(
    "--revision",
    default="head",
    show_default=True,
    help="Target revision: `head`, an id, `+1`/`-1`, or `base` (an empty schema).",
)
@click.option("--status", "show_status", is_flag=True, help="Print the revisions; change nothing.")
@click.pass_obj
def migrate(settings: Settings, revision: str, show_status: bool) -> None:
    """Bring the database schema to REVISION (the newest by default)."""
    from agentflow_grpc.app import database_dsn
    from agentflow_grpc.storage import migrations

    async def apply() -> migrations.MigrationStatus:
        async with database_dsn(settings) as (dsn, _):
            if show_status:
                return await migrations.status(dsn)
            return await migrations.migrate_to(dsn, revision)

    result = run_coroutine(apply())
    current = result.current or "base (empty)"
    state = "up to date" if result.up_to_date else f"newest is {result.head}"
    click.echo(f"database at revision {current} ({state})")


@click.group()
def tenant() -> None:
    """Tenants: each has its own workflows, sources, executions and API keys."""


@tenant.command("create")
@click.argument("name")
@click.pass_obj
def tenant_create(settings: Settings, name: str) -> None:
    """Create the tenant NAME (lower-case letters, digits, dashes); print its id."""
    from agentflow_grpc.app import open_app

    async def create() -> Any:
        async with open_app(settings) as app:
            return await app.tenants.create_tenant(name, actor=OPERATOR)

    created = run_coroutine(create())
    click.echo(f"created tenant {created.name}", err=True)
    click.echo(str(created.id))


@click.group()
def apikey() -> None:
    """API keys: how services and browsers authenticate, each key with one role."""


@apikey.command("create")
@click.option("--tenant", "tenant_name", required=True, help="The tenant's name.")
@click.option(
    "--role",
    type=click.Choice(["admin", "editor", "runner", "viewer"]),
    required=True,
    help="admin: everything; editor: change workflows and sources; runner: run; viewer: read.",
)
@click.option("--description", default="", help="What the key is for (shown in listings).")
@click.option(
    "--expires-in",
    type=Duration(),
    default=None,
    help="The key stops working after this long, e.g. 30d, 12h, 45m (default: never).",
)
@click.option(
    "--workflow",
    "workflow_ids",
    type=click.UUID,
    multiple=True,
    help="Restrict the key to this workflow (its id; repeat for several). Default: every "
    "workflow of the tenant.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
@click.pass_obj
def apikey_create(
    settings: Settings,
    tenant_name: str,
    role: str,
    description: str,
    expires_in: timedelta | None,
    workflow_ids: tuple[uuid.UUID, ...],
    as_json: bool,
) -> None:
    """Create an API key and print it, once: only its hash is stored."""
    from agentflow_grpc.app import open_app
    from agentflow_grpc.model.records import Role

    if expires_in is not None and expires_in <= timedelta(0):
        raise click.BadParameter("must be longer than 0", param_hint="'--expires-in'")

    async def create() -> Any:
        async with open_app(settings) as app:
            return await app.tenants.create_api_key(
                tenant_name,
                role=Role(role),
                description=description,
                expires_at=None if expires_in is None else datetime.now(UTC) + expires_in,
                workflow_ids=workflow_ids or None,
                actor=OPERATOR,
            )

    record, key = run_coroutine(create())
    if as_json:
        document = {
            "key": key,
            "id": str(record.id),
            "tenant_id": str(record.tenant_id),
            "role": record.role.value,
            "prefix": record.prefix,
            "expires_at": None if record.expires_at is None else record.expires_at.isoformat(),
            "workflow_ids": (
                None if record.workflow_ids is None else [str(w) for w in record.workflow_ids]
            ),
        }
        click.echo(json.dumps(document))
        return
    click.echo(f"API key {record.prefix}… for tenant {tenant_name}, role {role}:", err=True)
    click.echo(key)
    if record.expires_at is not None:
        click.echo(f"It expires at {record.expires_at.isoformat(timespec='seconds')}.", err=True)
    if record.workflow_ids is not None:
        count = len(record.workflow_ids)
        click.echo(f"It may use {count} workflow{'s' if count != 1 else ''} only.", err=True)
    click.echo("Keep it now: it cannot be shown again.", err=True)


@click.command("rotate-keys")
@click.option("--batch", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def rotate_keys(settings: Settings, batch: int) -> None:
    """Re-encrypt every source secret under the newest key of AGENTFLOW_SECRET_KEYS.

    The service keeps running: it reads secrets under any key in the list. Add the new key at
    the end of AGENTFLOW_SECRET_KEYS everywhere, run this, then remove the old key.
    """
    from agentflow_grpc.app import open_app
    from agentflow_grpc.services.keys import rotate_secrets

    async def rotate() -> Any:
        async with open_app(settings) as app:
            return await rotate_secrets(app.database, app.keyring, batch=batch), app.keyring

    report, keyring = run_coroutine(rotate())
    click.echo(
        f"re-encrypted {report.resealed} source secret(s) under key {keyring.newest_key_id}; "
        f"secrets by key now: {json.dumps(report.by_key_after, sort_keys=True)}"
    )


@click.command("generate-key")
@click.option("--id", "key_id", default="k1", show_default=True, help="The key's id.")
def generate_key(key_id: str) -> None:
    """Print a new AES-256 key as an AGENTFLOW_SECRET_KEYS entry (`ID:BASE64`)."""
    from agentflow_grpc.storage.crypto import Keyring, SecretKeyError

    entry = f"{key_id}:{Keyring.generate_key()}"
    try:
        Keyring.parse(entry)
    except SecretKeyError as exc:
        raise fail(exc.message) from None
    click.echo(entry)


COMMANDS = (migrate, tenant, apikey, rotate_keys, generate_key)
