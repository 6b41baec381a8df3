"""Checks of request fields that the protos cannot express (field masks, request ids)."""

from __future__ import annotations

import re

from google.protobuf import field_mask_pb2

from agentflow_grpc.errors import InvalidArgumentError

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
