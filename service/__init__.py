"""The gRPC inference service: configuration, model loading into onnxruntime sessions, the batch
queue, the servicers (own API, KServe v2, health, reflection), metrics and the CLI.

Submodules are imported where used, so that importing ``service`` alone stays cheap and never
registers the KServe protobuf symbols (a client process may hold tritonclient's copy of them).
"""

__version__ = "0.1.0"
