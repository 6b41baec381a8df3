"""Use cases: what the API (and the CLI) may ask for. The only layer servicers call.

Each service takes a `Principal` (tenant and role), checks the role, and does its work in one
transaction of that tenant through `storage/`.
"""
