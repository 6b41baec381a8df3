"""Test doubles for tests, benchmarks and local demos; production code never imports them."""
