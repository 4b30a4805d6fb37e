"""Wrapping a grpc.aio method handler: one of the same kind with another behaviour (``rebuilt``), and
the call admitted before its behaviour runs and released after (``guarded``).

The drain gate (service.drain) and the per-class call limits (service.limits) are both this shape:
refuse or count a call at its start, give its place back when it ends, whatever the outcome.
"""
from __future__ import annotations

import inspect
from typing import Awaitable, Callable

import grpc

Admit = Callable[[grpc.aio.ServicerContext], Awaitable[None]]
"""Takes the call's place, or aborts the call (raising) to refuse it."""


def guarded(handler: grpc.RpcMethodHandler, admit: Admit, release: Callable[[], None]) -> grpc.RpcMethodHandler:
    """The same handler, with ``await admit(context)`` first and ``release()`` once the behaviour has
    ended (all of this server's handlers are coroutines or async generators)."""
    behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

    if inspect.isasyncgenfunction(behavior):
        async def call(request_or_iterator, context):
            await admit(context)
            try:
                async for reply in behavior(request_or_iterator, context):
                    yield reply
            finally:
                release()
    else:
        async def call(request_or_iterator, context):
            await admit(context)
            try:
                return await behavior(request_or_iterator, context)
            finally:
                release()

    return rebuilt(handler, call)


KINDS = {(False, False): grpc.unary_unary_rpc_method_handler,
         (False, True): grpc.unary_stream_rpc_method_handler,
         (True, False): grpc.stream_unary_rpc_method_handler,
         (True, True): grpc.stream_stream_rpc_method_handler}


def rebuilt(handler: grpc.RpcMethodHandler, behavior, request_deserializer=None,
            response_serializer=None) -> grpc.RpcMethodHandler:
    """A handler of the same kind (request/response streaming) as ``handler`` running ``behavior``,
    with the handler's own (de)serializers unless others are given."""
    make = KINDS[bool(handler.request_streaming), bool(handler.response_streaming)]
    return make(behavior, request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=response_serializer or handler.response_serializer)
