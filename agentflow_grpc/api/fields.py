"""Checks of request fields that the protos cannot express: field masks, request ids, and what
no field may hold (NUL characters, non-finite JSON numbers)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from agentflow_grpc.model.errors import InvalidArgumentError

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def check_mask(
    mask: field_mask_pb2.FieldMask, *, allowed: set[str], field: str, required: bool = False
) -> set[str]:
    """The paths of `mask`, all of them in `allowed`; an empty mask means all of `allowed`,
    unless the mask is `required` (where "everything" could wipe fields by accident)."""
    paths = set(mask.paths)
    if required and not paths:
        raise InvalidArgumentError(
            f"{field} must name the fields to change ({', '.join(sorted(allowed))})",
            field=field,
        )
    unknown = sorted(paths - allowed)
    if unknown:
        raise InvalidArgumentError(
            f"{field} names {', '.join(unknown)}, which cannot be updated "
            f"(updatable: {', '.join(sorted(allowed))})",
            field=field,
        )
    return paths or set(allowed)


def optional_request_id(text: str) -> str | None:
    if not text:
        return None
    if not _REQUEST_ID.match(text):
        raise InvalidArgumentError(
            "request_id must be 1-128 characters from A-Z, a-z, 0-9, '.', '_', ':' and '-' "
            "(a UUID will do)",
            field="request_id",
        )
    return text


def check_request(message: Message) -> None:
    """Refuse what no field may hold: U+0000 in text (PostgreSQL text cannot store it) and
    NaN or infinities in JSON values (JSON has no such numbers). Names the first bad field."""
    problem = _first_problem(message, "")
    if problem is not None:
        path, what = problem
        raise InvalidArgumentError(f"{path or 'the request'}: {what}", field=path or "request")


def _first_problem(message: Message, prefix: str) -> tuple[str, str] | None:
    for descriptor, value in message.ListFields():
        path = f"{prefix}.{descriptor.name}" if prefix else descriptor.name
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            value_field = descriptor.message_type.fields_by_name["value"]
            for key, item in value.items():
                found = _scalar_problem(key, f"{path}[{key!r}]") or _value_problem(
                    item, value_field, f"{path}[{key!r}]"
                )
                if found:
                    return found
        elif descriptor.is_repeated:
            for index, item in enumerate(value):
                found = _value_problem(item, descriptor, f"{path}[{index}]")
                if found:
                    return found
        else:
            found = _value_problem(value, descriptor, path)
            if found:
                return found
    return None


def _value_problem(value: object, descriptor: FieldDescriptor, path: str) -> tuple[str, str] | None:
    if isinstance(value, Message):
        return _first_problem(value, path)
    if descriptor.name == "number_value" and isinstance(value, float) and not math.isfinite(value):
        return path, f"{value} is not a JSON number"
    return _scalar_problem(value, path)


def _scalar_problem(value: object, path: str) -> tuple[str, str] | None:
    if isinstance(value, str) and "\x00" in value:
        return path, "text must not contain U+0000 (NUL)"
    return None


@contextmanager
def fields_named(renamed: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a domain InvalidArgumentError about field `a` as one about the request's field
    `renamed[a]` (e.g. `expires_at` → `api_key.expire_time`), message included."""
    try:
        yield
    except InvalidArgumentError as exc:
        name = renamed.get(exc.field)
        if name is None:
            raise
        raise InvalidArgumentError(
            exc.message.replace(exc.field, name), field=name, code=exc.code
        ) from None
