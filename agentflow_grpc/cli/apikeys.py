"""`agentflow apikey list|revoke|rotate`: a running server's AdminService, as an admin.

They call the server that `cli/remote.py` finds with the admin key it finds (AGENTFLOW_API_KEY),
so they work against any deployment, and every change is in that tenant's audit log under the
key's name. (`apikey create --tenant` is the operator's bootstrap on the database itself:
cli/storage.py.) Exit codes: 0 done; 2 refused, unreachable or bad arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from agentflow_grpc.cli.common import Duration, fail
from agentflow_grpc.cli.remote import api_key, server_address
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import AgentFlowError

T = TypeVar("T")

_ADDRESS = click.option(
    "--address",
    metavar="HOST:PORT",
    help="The gRPC server (default: the running `agentflow dev`, else AGENTFLOW_GRPC_HOST:PORT).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON, for machines.")


def _key_name(value: str) -> str:
    """`apiKeys/{id}` from a key's id or name."""
    return value if value.startswith("apiKeys/") else f"apiKeys/{value}"


def _admin_call(settings: Settings, address: str | None, call: Callable[[Any, Any], T]) -> T:
    """`call(stub, metadata)` on the server's AdminService; gRPC errors become one clear line."""
    import grpc

    from agentflow_grpc._gen.agentflow.v1 import admin_pb2_grpc

    try:
        target = server_address(settings, address)
        key = api_key(settings)
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    with grpc.insecure_channel(target) as channel:
        try:
            return call(admin_pb2_grpc.AdminServiceStub(channel), (("x-api-key", key),))
        except grpc.RpcError as error:
            code, details = error.code(), error.details()
            if code is grpc.StatusCode.UNAVAILABLE:
                raise fail(f"cannot reach the server at {target}: {details}") from None
            raise fail(f"{code.name}: {details}") from None


def _as_dict(message: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@click.command("list")
@_ADDRESS
@_JSON
@click.pass_obj
def apikey_list(settings: Settings, address: str | None, as_json: bool) -> None:
    """List the tenant's API keys: prefix, role, state, created, last used, expiry."""
    from agentflow_grpc._gen.agentflow.v1 import admin_pb2

    response = _admin_call(
        settings,
        address,
        lambda stub, md: stub.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=md, timeout=30),
    )
    keys = [_as_dict(key) for key in response.api_keys]
    if as_json:
        click.echo(json.dumps(keys, indent=2))
        return
    for key in keys:
        state = key.get("state", "").removeprefix("STATE_").lower()
        workflows = ",".join(key.get("workflows", [])) or "all workflows"
        click.echo(
            f"{key['name']}  {key.get('prefix', '')}…  {key.get('role', '')}  {state}  "
            f"created {key.get('create_time', '-')}  last used {key.get('last_use_time', 'never')}"
            f"  expires {key.get('expire_time', 'never')}  {workflows}"
            + (f"  {key['description']}" if key.get("description") else "")
        )
    click.echo(f"{len(keys)} keys", err=True)


@click.command("revoke")
@click.argument("key")
@_ADDRESS
@click.pass_obj
def apikey_revoke(settings: Settings, key: str, address: str | None) -> None:
    """Revoke KEY (its id or `apiKeys/{id}`): refused at once, on every server."""
    from agentflow_grpc._gen.agentflow.v1 import admin_pb2

    request = admin_pb2.RevokeApiKeyRequest(name=_key_name(key))
    revoked = _admin_call(
        settings, address, lambda stub, md: stub.RevokeApiKey(request, metadata=md, timeout=30)
    )
    click.echo(f"revoked {revoked.name} ({revoked.prefix}…)")


@click.command("rotate")
@click.argument("key")
@click.option(
    "--grace",
    type=Duration(),
    default="0s",
    show_default=True,
    help="How long the old key keeps working: 90s, 15m, 12h, 30d (at most 30 days).",
)
@_ADDRESS
@_JSON
@click.pass_obj
def apikey_rotate(
    settings: Settings, key: str, grace: timedelta, address: str | None, as_json: bool
) -> None:
    """A new key in place of KEY (same role, description and workflows); prints it once."""
    from google.protobuf import duration_pb2

    from agentflow_grpc._gen.agentflow.v1 import admin_pb2

    period = duration_pb2.Duration()
    period.FromTimedelta(grace)
    request = admin_pb2.RotateApiKeyRequest(name=_key_name(key), grace_period=period)
    rotated = _admin_call(
        settings, address, lambda stub, md: stub.RotateApiKey(request, metadata=md, timeout=30)
    )
    if as_json:
        click.echo(json.dumps(_as_dict(rotated), indent=2))
        return
    click.echo(rotated.secret)
    expires = rotated.previous.expire_time.ToDatetime().isoformat() + "Z"
    click.echo(
        f"new key {rotated.api_key.name}; the old {rotated.previous.name} works until {expires}",
        err=True,
    )


REMOTE_COMMANDS = (apikey_list, apikey_revoke, apikey_rotate)
