"""The shared nouns every layer speaks: errors, records, events, failures, source definitions.

The bottom layer: it imports nothing else of AgentFlow, so anything may import it.
"""
