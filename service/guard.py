"""The gRPC adapter of the one admission path (service.admission): ``AdmissionGuard`` describes each
call, admits it at its start on its handler thread, gives its places back when it ends whatever
the outcome, and ends health watches when the transport is about to stop.
``rebuilt`` makes a method handler of the same kind around another behaviour.
"""
from __future__ import annotations

import grpc

from .admission import HEALTH_CHECK, HEALTH_WATCH, INFERENCE, TOKEN_GUARDED, Admission, Call, Lifecycle, Refusal, Stage
from .auth import EXEMPT_PREFIXES, HEADER

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


class AdmissionGuard:
    """Every call through ``admission``: ``inference`` methods pass the drain gate, exempt ones
    (health) need no token; the ``watches`` (response streams that never end by themselves) are
    ended UNAVAILABLE at STOPPED instead of holding the transport's stop for the whole grace.
    ``guarded`` wraps a method's handler once, when it is registered (service.grpc_transport), not
    per call as an interceptor would, in grpcio's serving thread: the call is admitted at the start
    of its behaviour, on its handler thread, and released when the behaviour (or its response
    iterator) ends."""

    def __init__(self, admission: Admission, inference: tuple[str, ...], watches: tuple[str, ...] = (),
                 exempt: tuple[str, ...] = EXEMPT_PREFIXES):
        self.admission = admission
        self.inference = inference
        self.watches = watches
        self.exempt = exempt

    def kind(self, method: str, handler: grpc.RpcMethodHandler) -> str:
        return call_kind(method, handler, self.inference, self.exempt)

    def guarded(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` of ``method`` (``/package.Service/Method``), admitted call by call."""
        admission, kind = self.admission, self.kind(method, handler)
        behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
        if method in self.watches:
            behavior = _ended_at_stop(behavior, admission.lifecycle)
        streaming = handler.response_streaming

        def admitted(request_or_iterator, context):
            authorization = (tuple(v for k, v in context.invocation_metadata() if k == HEADER)
                             if admission.token is not None else ())
            try:
                ticket = admission.admit(Call(kind, method, authorization))
            except Refusal as refusal:
                context.abort(refusal.code, refusal.message)
            if not streaming:
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


def _ended_at_stop(behavior, lifecycle: Lifecycle):
    """A unary-stream behaviour whose replies (an iterator with ``close()``, as grpc_health's watch
    returns) end at STOPPED, and then the call UNAVAILABLE."""

    def ended(request, context):
        replies = behavior(request, context)

        def on_advance() -> None:
            if lifecycle.stage >= Stage.STOPPED:
                replies.close()

        unwatch = lifecycle.watch(on_advance)
        try:
            on_advance()
            yield from replies
        finally:
            unwatch()
        if lifecycle.stage >= Stage.STOPPED:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server stopped; watch another replica")

    return ended
