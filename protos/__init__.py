"""gRPC contracts (.proto files) and the command that generates their Python stubs."""
