"""The gRPC API: a grpc.aio server, thin servicers (proto in → service call → proto out), the
interceptor that authenticates and maps errors, and the proto ↔ domain conversions. The only
package that imports the generated code in `agentflow_grpc._gen`."""
