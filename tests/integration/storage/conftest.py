"""The storage fixtures are in tests/support/storage_fixtures.py (loaded by tests/conftest.py)."""

from support.storage import ACTOR, new_tenant  # noqa: F401  (older imports: `from conftest import`)
