"""Token buckets in Redis: rates with bursts, decided several at a time in one script.

A bucket holds up to `capacity` units and refills at `rate` units a second. A request takes
`cost` units from every bucket it names, and only when each holds at least `need`; otherwise
nothing is taken and the answer says how long until the slowest bucket will hold enough.
`need` may be below `cost` (tokens a call reported are spent even into debt: the next call
waits until the debt is paid back) or above it (a check before a call that costs nothing yet).
"""

from __future__ import annotations

from dataclasses import dataclass

from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.scripts import Scripts


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    rate: float  # units per second, > 0
    capacity: float  # the burst: what a full bucket holds, >= need
    cost: float = 1.0
    need: float = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a call may go ahead now; if not, after how many seconds it might, and which
    bucket (its index in the request) said no."""

    allowed: bool
    retry_after: float = 0.0
    denied_by: int | None = None


ALLOWED = Decision(True)


async def take(
    scripts: Scripts, guard: FailOpen, buckets: list[Bucket], *, force: bool = False
) -> Decision:
    """Take each bucket's cost, from all of them or none (atomically, in Redis). With `force`
    the costs are taken whatever the levels. No buckets, or Redis unavailable: allowed."""
    if not buckets:
        return ALLOWED
    args: list[str | float] = ["1" if force else "0"]
    for bucket in buckets:
        args += [bucket.rate, bucket.capacity, bucket.cost, bucket.need]
    reply = await guard.call(
        "take", lambda: scripts.take(keys=[bucket.key for bucket in buckets], args=args)
    )
    if reply is None:
        return ALLOWED
    allowed, retry_after, index = reply
    if int(allowed) == 1:
        return ALLOWED
    return Decision(False, float(retry_after), int(index) - 1)
