"""Per node type checks beyond the schema: SQL, input defaults, structured output, HTTP."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import jsonpath
import jsonschema
from sqlparse import lexer
from sqlparse import tokens as sql_tokens

from agentflow_grpc.spec.checks.context import CheckContext
from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer
from agentflow_grpc.spec.models import InputParam
from agentflow_grpc.spec.nodes import AggregatorNode, DatabaseNode, HttpNode, LlmNode

_SQL_WRITING_STATEMENTS = frozenset(
    {"REPLACE", "UPSERT", "TRUNCATE", "GRANT", "REVOKE", "COPY", "CALL", "DO", "VACUUM",
     "REINDEX", "LOCK", "REFRESH", "CLUSTER", "COMMENT", "SECURITY"}
)  # fmt: skip
"""Statements that write, recognised by their first word (sqlparse has no token type for them)."""


def check_inputs(ctx: CheckContext) -> Iterator[Violation]:
    for name, param in ctx.view.inputs.items():
        yield from _check_input_param(param, ("inputs", name))


def _check_input_param(param: InputParam, location: tuple[str | int, ...]) -> Iterator[Violation]:
    type_only = jsonschema.Draft202012Validator({"type": param.type})
    for position, value in enumerate(param.enum or ()):
        if not type_only.is_valid(value):
            yield Violation(
                pointer(*location, "enum", position),
                ViolationCode.INPUT_INVALID_ENUM,
                f"enum value {value!r} is not of type {param.type}",
            )
    if param.has_default:
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(param.to_json_schema()).iter_errors(param.default)
        )
        if error is not None:
            yield Violation(
                pointer(*location, "default"),
                ViolationCode.INPUT_INVALID_DEFAULT,
                f"default {param.default!r} does not fit the input's own schema: {error.message}",
            )
    if param.items is not None:
        yield from _check_input_param(param.items, (*location, "items"))
    for key, child in (param.properties or {}).items():
        yield from _check_input_param(child, (*location, "properties", key))


def check_llm_output_schemas(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        if not isinstance(entry.model, LlmNode) or entry.model.config.output_schema is None:
            continue
        try:
            jsonschema.Draft202012Validator.check_schema(entry.model.config.output_schema)
        except jsonschema.SchemaError as exc:
            location = "/".join(str(part) for part in exc.path)
            yield Violation(
                pointer("nodes", entry.index, "config", "output_schema"),
                ViolationCode.LLM_INVALID_OUTPUT_SCHEMA,
                f"output_schema is not a valid JSON Schema (at '{location}'): {exc.message}",
            )
        except RecursionError:
            yield Violation(
                pointer("nodes", entry.index, "config", "output_schema"),
                ViolationCode.LLM_INVALID_OUTPUT_SCHEMA,
                "output_schema is nested too deeply to check",
            )


def check_http_nodes(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        node = entry.model
        if not isinstance(node, HttpNode):
            continue
        for name, path in (node.config.extract or {}).items():
            reason = _json_path_error(path)
            if reason is not None:
                yield Violation(
                    pointer("nodes", entry.index, "config", "extract", name),
                    ViolationCode.HTTP_INVALID_JSON_PATH,
                    f"'{path}' is not a valid JSONPath: {reason}",
                )
        url = node.config.url
        if node.source is None and not _may_be_absolute(url):
            yield Violation(
                pointer("nodes", entry.index, "config", "url"),
                ViolationCode.HTTP_URL_WITHOUT_BASE,
                f"url '{url}' is relative but the node has no `source` to give a base URL; use "
                "an absolute http(s) URL or set `source`",
            )


@functools.lru_cache(maxsize=4096)
def _json_path_error(path: str) -> str | None:
    try:
        jsonpath.compile(path)
    except jsonpath.JSONPathError as exc:
        return str(exc).splitlines()[0]
    return None


def _may_be_absolute(url: str) -> bool:
    lowered = url.lstrip().lower()
    return lowered.startswith(("http://", "https://")) or lowered.startswith(("{{", "{%"))


def check_aggregators_sources(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        node = entry.model
        summarizes = isinstance(node, AggregatorNode) and node.config.strategy == "summarize"
        if summarizes and getattr(node, "source", None) is None:
            yield Violation(
                pointer("nodes", entry.index, "source"),
                ViolationCode.AGGREGATOR_MISSING_SOURCE,
                f"aggregator '{entry.id}' summarizes with an LLM; set `source` to an LLM source",
            )


def check_sql(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        node = entry.model
        if not isinstance(node, DatabaseNode):
            continue
        base = ("nodes", entry.index, "config")
        dialect = _sql_dialect(ctx, node.source)
        for code, location, message in _sql_problems(
            node.config.query, len(node.config.params), node.config.read_only, dialect
        ):
            yield Violation(pointer(*base, *location), code, message)


SqlDialect = Literal["postgres", "mysql"]
MYSQL_SOURCE_TYPE = "mysql"


def _sql_dialect(ctx: CheckContext, source: str) -> SqlDialect | None:
    """How the node's source writes placeholders: `?` for a mysql source, `$1 … $N` for the
    others; None when the sources are not known (the query's own placeholders then decide)."""
    source_type = None if ctx.sources is None else ctx.sources.get(source)
    if source_type is None:
        return None
    return "mysql" if source_type == MYSQL_SOURCE_TYPE else "postgres"


@dataclass(frozen=True, slots=True)
class _SqlScan:
    statements: int
    writes: tuple[str, ...]
    placeholders: tuple[str, ...]


def _scan_sql(query: str, dialect: SqlDialect) -> _SqlScan:
    statements = 0
    expects_statement = True
    placeholders: list[str] = []
    writes: list[str] = []
    text = _blank_standard_strings(query) if dialect == "postgres" else _blank_hash_comments(query)
    for token_type, value in lexer.tokenize(text):  # type: ignore[no-untyped-call]
        if token_type in sql_tokens.Comment or token_type in sql_tokens.Whitespace:
            continue
        if token_type is sql_tokens.Punctuation and value == ";":
            expects_statement = True
            continue
        if expects_statement:
            statements += 1
            expects_statement = False
            if value.upper() in _SQL_WRITING_STATEMENTS:
                writes.append(value.upper())
        if _is_write_keyword(token_type, value):
            writes.append(value.upper())
        if token_type in sql_tokens.Name.Placeholder:
            placeholders.append(value)
    return _SqlScan(statements, tuple(writes), tuple(placeholders))


def _is_numbered(placeholder: str) -> bool:
    return placeholder.startswith("$") and placeholder[1:].isdigit()


@functools.lru_cache(maxsize=4096)
def _sql_problems(
    query: str, param_count: int, read_only: bool, dialect: SqlDialect | None = None
) -> tuple[tuple[ViolationCode, tuple[str, ...], str], ...]:
    problems: list[tuple[ViolationCode, tuple[str, ...], str]] = []
    query_at = ("query",)
    if any(marker in query for marker in ("{{", "{%", "{#")):
        style = {"postgres": "$1, $2 …", "mysql": "?"}.get(dialect or "", "$1, $2 … (or ?)")
        problems.append(
            (
                ViolationCode.SQL_TEMPLATED,
                query_at,
                f"SQL text is never a template; write {style} placeholders in `query` and put "
                "the templated values in `params`",
            )
        )
    scan = _scan_sql(query, dialect or "postgres")
    if (
        dialect is None
        and "?" in scan.placeholders
        and not any(map(_is_numbered, scan.placeholders))
    ):
        dialect = "mysql"  # no sources to say: `?` and no `$n` is a mysql query
        scan = _scan_sql(query, dialect)
    if dialect == "mysql":
        problems += _mysql_placeholder_problems(scan.placeholders, param_count)
    else:
        problems += _numbered_placeholder_problems(scan.placeholders, param_count)
    if scan.statements > 1:
        problems.append(
            (
                ViolationCode.SQL_MULTIPLE_STATEMENTS,
                query_at,
                f"`query` holds {scan.statements} statements; a database node runs exactly one",
            )
        )
    if read_only and scan.writes:
        problems.append(
            (
                ViolationCode.SQL_WRITE_IN_READ_ONLY,
                query_at,
                f"{scan.writes[0]} writes, and cannot run in a read-only transaction; set "
                "`read_only: false` if the node is meant to write",
            )
        )
    return tuple(problems)


def _numbered_placeholder_problems(
    placeholders: tuple[str, ...], param_count: int
) -> list[tuple[ViolationCode, tuple[str, ...], str]]:
    """postgres: $1 … $N, each used (any number of times), N the number of params."""
    problems: list[tuple[ViolationCode, tuple[str, ...], str]] = []
    numbers: set[int] = set()
    for value in placeholders:
        if _is_numbered(value):
            numbers.add(int(value[1:]))
        else:
            problems.append(
                (
                    ViolationCode.SQL_UNSUPPORTED_PLACEHOLDER,
                    ("query",),
                    f"placeholder '{value}' is not supported; use $1, $2 … in the order of "
                    "`params`",
                )
            )
    if numbers != set(range(1, param_count + 1)):
        used = ", ".join(f"${n}" for n in sorted(numbers)) or "no placeholders"
        problems.append(
            (
                ViolationCode.SQL_PARAMETER_MISMATCH,
                ("params",),
                f"`query` uses {used} but `params` has {param_count} value(s); placeholders "
                "must be $1 … $N for N params, each used",
            )
        )
    return problems


def _mysql_placeholder_problems(
    placeholders: tuple[str, ...], param_count: int
) -> list[tuple[ViolationCode, tuple[str, ...], str]]:
    """mysql: one `?` per param, in order (the server's own prepared-statement markers)."""
    problems: list[tuple[ViolationCode, tuple[str, ...], str]] = [
        (
            ViolationCode.SQL_UNSUPPORTED_PLACEHOLDER,
            ("query",),
            f"placeholder '{value}' is not supported; a mysql source takes ?, one for each "
            "value of `params`, in order",
        )
        for value in placeholders
        if value != "?"
    ]
    count = placeholders.count("?")
    if count != param_count:
        problems.append(
            (
                ViolationCode.SQL_PARAMETER_MISMATCH,
                ("params",),
                f"`query` has {count} ? placeholder(s) but `params` has {param_count} "
                "value(s); give one value for each ?, in order",
            )
        )
    return problems


# sqlparse reads a backslash as an escape inside every string; PostgreSQL (with its default
# standard_conforming_strings) only inside E'…'. So `'\'` is a complete string to PostgreSQL and an
# unfinished one to sqlparse, which could hide a write or a `;` behind it. Standard strings are
# blanked before lexing; comments, E-strings and dollar-quoted strings are matched first so that
# a quote inside them does not start one.
_SQL_LITERALS = re.compile(
    r"""--[^\n]*
      | /\*.*?\*/
      | (?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'
      | (\$[A-Za-z_]*\$).*?\1
      | '(?:[^']|'')*'""",
    re.S | re.X,
)


def _blank_standard_strings(query: str) -> str:
    return _SQL_LITERALS.sub(lambda m: "''" if m[0].startswith("'") else m[0], query)


# MySQL reads `#` as a comment to the end of the line (sqlparse only `# ` with a space), and a
# backslash as an escape inside '…' and "…" strings (as sqlparse does). Strings and quoted names
# are matched first, so that a `#` inside them is not taken for a comment.
_MYSQL_LITERALS = re.compile(
    r"""--[^\n]*
      | '(?:[^'\\]|\\.|'')*'
      | "(?:[^"\\]|\\.|"")*"
      | `(?:[^`]|``)*`
      | /\*.*?\*/
      | \#[^\n]*""",
    re.S | re.X,
)


def _blank_hash_comments(query: str) -> str:
    return _MYSQL_LITERALS.sub(lambda m: " " if m[0].startswith("#") else m[0], query)


def _is_write_keyword(token_type: object, value: str) -> bool:
    """INSERT/UPDATE/DELETE/MERGE anywhere (CTEs, EXPLAIN ANALYZE, FOR UPDATE), DDL, SELECT INTO."""
    if token_type in sql_tokens.Keyword.DML:
        return value.upper() != "SELECT"
    if token_type in sql_tokens.Keyword.DDL:
        return True
    return token_type in sql_tokens.Keyword and value.upper() == "INTO"
