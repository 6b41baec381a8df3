"""Validation checks, one module per concern; `validator.CHECKS` lists them in order."""
