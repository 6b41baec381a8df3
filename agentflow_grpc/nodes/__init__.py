"""Node implementations: one module per node type, all registered in `nodes.registry`."""
