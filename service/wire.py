"""How messages cross the wire: undecodable requests are refused, encoded replies go out as they are.

gRPC answers a request whose bytes do not parse with UNKNOWN and logs a traceback per call. The
generated ``add_*Servicer_to_server`` functions are given a ``TolerantRegistration`` instead of
the server (a grpc.aio one; the server's own transport, service.grpc_transport, applies ``tolerant``
itself): it registers the same handlers with a deserializer that hands an ``Undecodable`` on
to the method, which answers INVALID_ARGUMENT naming the message type and the parse error. Its
serializer sends a reply that a method already encoded (``bytes``, see service.replies) unchanged.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import grpc
from google.protobuf.message import DecodeError

from .guard import rebuilt


@dataclass(frozen=True)
class Undecodable:
    """A request message that did not parse."""

    message: str


def tolerant_deserializer(parse: Callable[[bytes], object], type_name: str) -> Callable[[bytes], object]:
    def deserialize(data: bytes) -> object:
        try:
            return parse(data)
        except DecodeError as exc:
            return Undecodable(f"request: expected a serialized {type_name} message, received {len(data)} bytes "
                               f"that do not parse ({exc})")

    return deserialize


def passing_bytes(serialize: Callable[[object], bytes]) -> Callable[[object], bytes]:
    """``serialize``, except that a reply already encoded (bytes) is sent as it is."""
    def serialize_reply(reply: object) -> bytes:
        return reply if reply.__class__ is bytes else serialize(reply)

    return serialize_reply


def tolerant(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same handler; undecodable requests are answered INVALID_ARGUMENT before the method runs,
    replies already encoded go out unchanged. The method is a coroutine (or async generator), or
    a plain function run on a handler thread (service.grpc_transport)."""
    type_name = getattr(getattr(handler.request_deserializer, "__self__", None), "DESCRIPTOR", None)
    type_name = type_name.full_name if type_name is not None else "protobuf"
    deserializer = handler.request_deserializer and tolerant_deserializer(handler.request_deserializer, type_name)
    method = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

    if not (inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)):
        if handler.request_streaming:
            def read(requests, context):
                for request in requests:
                    if isinstance(request, Undecodable):
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                    yield request

            def behavior(requests, context):
                return method(read(requests, context), context)
        else:
            def behavior(request, context):
                if isinstance(request, Undecodable):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                return method(request, context)
    elif not handler.request_streaming:
        if handler.response_streaming:
            async def unary_in(request, context):
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                async for reply in method(request, context):
                    yield reply
        else:
            async def unary_in(request, context):
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                return await method(request, context)
        behavior = unary_in
    else:
        async def checked(requests, context):
            async for request in requests:
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                yield request

        if handler.response_streaming:
            async def behavior(requests, context):
                async for reply in method(checked(requests, context), context):
                    yield reply
        else:
            async def behavior(requests, context):
                return await method(checked(requests, context), context)

    serializer = handler.response_serializer
    return rebuilt(handler, behavior, deserializer, serializer and passing_bytes(serializer))


class TolerantRegistration:
    """Stands in for the server in a generated ``add_*Servicer_to_server`` call."""

    def __init__(self, server: grpc.aio.Server):
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        """Ignored: ``add_registered_method_handlers`` receives the same handlers."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: tolerant(h) for name, h in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._server.add_registered_method_handlers(service, wrapped)


def add_tolerant(add_to_server: Callable, servicer, server: grpc.aio.Server) -> None:
    """``add_to_server(servicer, server)``, with undecodable requests answered INVALID_ARGUMENT."""
    add_to_server(servicer, TolerantRegistration(server))
