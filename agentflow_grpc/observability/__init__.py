"""Logging (structlog), Prometheus metrics (metrics.py, served by exposition.py) and tracing."""
