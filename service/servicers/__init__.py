"""The gRPC servicers: decode the wire message, call ``service.infer``, encode the reply.

``classifier`` serves the project's own convnet.v1 API, ``kserve`` the KServe v2 protocol; both
share ``service.inputs`` for validation and ``status`` for mapping errors to status codes.
"""
