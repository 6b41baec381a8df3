"""Helpers shared by the tests: local stand-ins for the outside world, and event helpers."""
