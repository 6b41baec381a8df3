"""Generated from protos/ by scripts/generate_protos.py. Never edit by hand."""
