"""The gRPC adapters of the one admission path (service.admission): ``AdmissionInterceptor``
(grpc.aio) describes each call, admits it at its start, gives its places back when it ends whatever
the outcome, and ends health watches when the transport is about to stop;
``SyncAdmissionInterceptor`` does the same for a synchronous ``grpc.server``. ``guarded`` and
``rebuilt`` wrap a method handler in one of the same kind.
"""
from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable

import grpc

from .admission import HEALTH_CHECK, HEALTH_WATCH, INFERENCE, TOKEN_GUARDED, Admission, Call, Refusal
from .auth import EXEMPT_PREFIXES, HEADER
from .drain import Drain

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


def call_kind(method: str, handler: grpc.RpcMethodHandler, inference: tuple[str, ...], exempt: tuple[str, ...]) -> str:
    """A gRPC call's kind for the admission: exempt methods (health) are checks or, streaming, watches."""
    if method.startswith(exempt):
        return HEALTH_WATCH if handler.response_streaming else HEALTH_CHECK
    return INFERENCE if method.startswith(inference) else TOKEN_GUARDED


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Every call through ``admission``: ``inference`` methods pass the drain gate, exempt ones (health)
    need no token; the ``watches`` (response streams that never end by themselves) are ended
    UNAVAILABLE at STOPPED instead of holding the transport's stop for the whole grace."""

    def __init__(self, admission: Admission, inference: tuple[str, ...], watches: tuple[str, ...] = (),
                 exempt: tuple[str, ...] = EXEMPT_PREFIXES):
        self.admission = admission
        self.inference = inference
        self.watches = watches
        self.exempt = exempt
        self.drain = Drain(admission.lifecycle)

    def kind(self, method: str, handler: grpc.RpcMethodHandler) -> str:
        return call_kind(method, handler, self.inference, self.exempt)

    async def intercept_service(self, continuation, handler_call_details):
        self.admission.lifecycle.touch()  # on arrival, before the request message is read: see Drain.quiet
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        call = Call(self.kind(method, handler), method,
                    tuple(v for k, v in (handler_call_details.invocation_metadata or ()) if k == HEADER))
        tickets = []

        async def admit(context) -> None:
            try:
                tickets.append(self.admission.admit(call))
            except Refusal as refusal:
                await context.abort(refusal.code, refusal.message)

        def release() -> None:
            if tickets:
                tickets.pop().release()

        if method in self.watches:
            handler = _ended_at_stop(handler, self.drain)
        return guarded(handler, admit, release)


def _ended_at_stop(handler: grpc.RpcMethodHandler, drain: Drain) -> grpc.RpcMethodHandler:
    """A unary-stream coroutine handler (it writes with ``context.write``), ended UNAVAILABLE at stop."""
    behavior = handler.unary_stream

    async def ended(request, context):
        call = asyncio.ensure_future(behavior(request, context))
        stop = asyncio.ensure_future(drain.stopped())
        await asyncio.wait({call, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if call.done():
            return call.result()
        call.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the server stopped; watch another replica")

    return grpc.unary_stream_rpc_method_handler(ended, request_deserializer=handler.request_deserializer,
                                                response_serializer=handler.response_serializer)


class SyncAdmissionInterceptor(grpc.ServerInterceptor):
    """The same admission for a synchronous ``grpc.server`` (thread-pool handlers): the call is admitted
    before its behaviour runs in its handler thread and released when the behaviour (or its response
    iterator) ends."""

    def __init__(self, admission: Admission, inference: tuple[str, ...], exempt: tuple[str, ...] = EXEMPT_PREFIXES):
        self.admission = admission
        self.inference = inference
        self.exempt = exempt

    def kind(self, method: str, handler: grpc.RpcMethodHandler) -> str:
        return call_kind(method, handler, self.inference, self.exempt)

    def intercept_service(self, continuation, handler_call_details):
        self.admission.lifecycle.touch()
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        call = Call(self.kind(method, handler), method,
                    tuple(v for k, v in (handler_call_details.invocation_metadata or ()) if k == HEADER))
        behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

        def admitted(request_or_iterator, context):
            try:
                ticket = self.admission.admit(call)
            except Refusal as refusal:
                context.abort(refusal.code, refusal.message)
            if not handler.response_streaming:
                try:
                    return behavior(request_or_iterator, context)
                finally:
                    ticket.release()
            return _released_after(behavior(request_or_iterator, context), ticket)

        return rebuilt(handler, admitted)


def _released_after(replies, ticket):
    try:
        yield from replies
    finally:
        ticket.release()
