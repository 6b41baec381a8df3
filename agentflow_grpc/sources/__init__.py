"""Sources: adapters that connect nodes to providers, databases and HTTP APIs."""
