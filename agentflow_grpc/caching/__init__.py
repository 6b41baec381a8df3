"""Caches kept in Redis, behind the ports the layers below define (`nodes.response_cache`)."""
