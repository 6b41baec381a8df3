"""The runtime: execute compiled workflows and stream their events."""
