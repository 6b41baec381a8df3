"""Local stand-ins for production services, started from wheels: embedded PostgreSQL (and, later,
Valkey and Envoy) for zero-config development and for the tests."""
