"""The REST/SSE gateway: Envoy with the gRPC-JSON transcoder in front of the gRPC API."""
