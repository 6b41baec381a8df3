"""One servicer per service of protos/agentflow/v1; each method is parse → call → convert."""
