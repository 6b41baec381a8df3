"""The one error root and every error class. Each error AgentFlow raises on purpose has a
stable code.

The API layer maps these classes to gRPC statuses in one table (an error takes the status of
its nearest listed base class); the CLI maps them to exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Violation(Protocol):
    """One problem in a document, by JSON Pointer: the spec validator's `spec.codes.Violation`
    and the input checker's `InputViolation` both are one."""

    @property
    def path(self) -> str: ...

    @property
    def code(self) -> str: ...

    @property
    def message(self) -> str: ...


class AgentFlowError(Exception):
    """Base of all deliberate AgentFlow errors."""

    code: str = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigurationError(AgentFlowError):
    """The environment holds an invalid setting."""

    code = "configuration"


class SpecReadError(AgentFlowError):
    """A spec (or sources) file cannot be read, or is not JSON."""

    code = "unreadable"


class InvalidSpecError(AgentFlowError):
    """A spec has violations; they travel with the error."""

    code = "invalid_spec"

    def __init__(self, violations: Sequence[Violation], *, field: str = "spec") -> None:
        count = len(violations)
        first = f": {violations[0].path or '/'} {violations[0].message}" if violations else ""
        super().__init__(f"the spec has {count} violation{'s' if count != 1 else ''}{first}")
        self.violations = tuple(violations)
        self.field = field  # where the spec was in the request (the API's field name)


@dataclass(frozen=True, slots=True)
class InputViolation:
    path: str
    code: str  # input.missing, input.unknown, input.invalid
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


class InvalidInputsError(AgentFlowError):
    """A run's inputs do not match the spec's declared `inputs`; every problem travels along."""

    code = "invalid_inputs"

    def __init__(self, violations: Sequence[InputViolation]) -> None:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        super().__init__(f"invalid inputs: {first.path}: {first.message}{more}")
        self.violations = tuple(violations)


class SourceConfigError(AgentFlowError):
    """A source definition its adapter refuses (bad config, missing secret); `field` names
    the part refused when it is not the config (e.g. `secrets.secret`)."""

    code = "source.invalid_config"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(AgentFlowError):
    """The resource does not exist, or belongs to another tenant (the two look the same)."""

    code = "not_found"


class ConflictError(AgentFlowError):
    """The change collides with the stored state: a stale etag, or a name already taken."""

    code = "conflict"


class FailedPreconditionError(AgentFlowError):
    """The resource is not in a state that allows this (rotating a revoked key)."""

    code = "failed_precondition"


class EtagMismatchError(ConflictError):
    """The caller's etag is not the resource's current one: someone else changed it first."""

    code = "etag_mismatch"


class AlreadyExistsError(ConflictError):
    code = "already_exists"


class InvalidArgumentError(AgentFlowError):
    """A request field is wrong; `field` is its path, e.g. `page_token` or `spec.nodes[0]`."""

    code = "invalid_argument"

    def __init__(self, message: str, *, field: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class SecretDecryptionError(AgentFlowError):
    """Sealed secrets cannot be opened: unknown key id, tampered blob or wrong context."""

    code = "secret.undecryptable"


class UnavailableError(AgentFlowError):
    """A dependency (the database) cannot be reached, or gave no connection in time."""

    code = "unavailable"


class RunMovedError(UnavailableError):
    """A run stopped here without ending: this server handed it over as it shut down, or could
    not store its events. Its job gives it to another replica (or this one, restarted), which
    resumes it: follow it with StreamExecution after the last sequence seen."""

    code = "execution.moved"


class QueueUnavailableError(UnavailableError):
    """Redis failed a call of the job queue, the run leases or the event fan-out
    (`queue.guard`)."""


class ResourceExhaustedError(AgentFlowError):
    """A limit is reached for now (runs in progress, a rate, a quota); worth retrying later."""

    code = "resource_exhausted"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnauthenticatedError(AgentFlowError):
    """No credentials, or credentials that are not (or no longer) valid."""

    code = "unauthenticated"


class PermissionDeniedError(AgentFlowError):
    """The caller is known, but its role does not allow this."""

    code = "permission_denied"
