"""The engine: runs a compiled workflow as an execution, numbering its events."""
