"""KServe v2 over HTTP/REST (the Open Inference Protocol's JSON binding) and a page to try the models.

aiohttp serves it on the server's own asyncio event loop, beside gRPC's handler threads, so both transports feed
the same batch queues, metrics and access rules. ``app`` builds the application and runs it,
``routes`` holds the v2 endpoints, ``codec`` the JSON and binary tensor encodings, ``status`` the
one table from gRPC status codes to HTTP statuses.
"""
