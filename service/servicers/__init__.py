"""The gRPC servicers: thin adapters from the wire messages to the model registry and batch queues.

``classifier`` serves the project's own convnet.v1 API, ``kserve`` the KServe v2 protocol; both
share ``service.inputs`` for validation and ``status`` for mapping errors to status codes.
"""
