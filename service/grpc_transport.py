"""The gRPC transport: grpcio's synchronous ``grpc.server``, whose handler threads run the hot calls
themselves and hand the rest to the server's event loop.

Measured on one core (issue 23, docs/BENCHMARKS.md), a grpc.aio server spends more of a core on its
own event-loop machinery than Triton spends on a whole request; the thread-pool server costs about
half as much per call. So a servicer method written as a plain function (Classify, ModelInfer) runs
on the handler thread: it decodes, blocks in the batch queue (``BatchQueue.submit_blocking``) and
encodes there. A method written as a coroutine or an async generator (metadata, statistics, model
control, the streams) runs on the event loop, where the HTTP API, the reloader and the drain live,
through ``LoopContext``: the handler thread waits for its outcome and turns an abort into the call's
status. A call the client cancels is withdrawn from the queue, or its coroutine cancelled.

Each call holds a handler thread while it runs, a stream or a health watch for as long as it is
open: ``grpc_threads`` (service.config) bounds them, and calls beyond it wait for a free thread.
"""
from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import CancelledError, Executor, ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Iterator

import grpc

from .batching import ThreadGate
from .guard import AdmissionGuard, rebuilt
from .wire import tolerant

NO_DEADLINE_S = 1e6
"""grpc's synchronous context reports a call without a deadline as having centuries left."""

_END = object()


def time_remaining(context: grpc.ServicerContext) -> float | None:
    """Seconds left of the call's deadline, None when it has none (as grpc.aio says it)."""
    left = context.time_remaining()
    return None if left is None or left > NO_DEADLINE_S else left


class Aborted(Exception):
    """A coroutine on the loop ended its call with this status (``LoopContext.abort``)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code = code
        self.details = details


class LoopContext:
    """A handler thread's call context as a coroutine on the event loop uses it (the methods of
    grpc.aio.ServicerContext the servicers call); ``abort`` raises ``Aborted`` for the thread."""

    def __init__(self, context: grpc.ServicerContext):
        self._context = context

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        if trailing_metadata:
            self._context.set_trailing_metadata(trailing_metadata)
        raise Aborted(code, details)

    def time_remaining(self) -> float | None:
        return time_remaining(self._context)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _abort(context: grpc.ServicerContext, error: BaseException) -> None:
    """End the call for a coroutine's failure: its abort status, CANCELLED, or re-raised (INTERNAL)."""
    if isinstance(error, Aborted):
        context.abort(error.code, error.details)
    if isinstance(error, (CancelledError, asyncio.CancelledError)):
        context.abort(grpc.StatusCode.CANCELLED, "the call was cancelled")
    raise error


def bridged(handler: grpc.RpcMethodHandler, loop: asyncio.AbstractEventLoop,
            readers: Executor) -> grpc.RpcMethodHandler:
    """``handler``'s coroutine or async generator, run on ``loop`` for a handler thread; a request
    stream is read by one of ``readers`` whenever the coroutine asks for the next message."""
    behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream

    def start(request_or_iterator, context: grpc.ServicerContext):
        if handler.request_streaming:
            request_or_iterator = _read_on(readers, request_or_iterator)
        return behavior(request_or_iterator, LoopContext(context))

    if handler.response_streaming:
        def call(request_or_iterator, context):
            yield from _pulled(start(request_or_iterator, context), context, loop)
    else:
        def call(request_or_iterator, context):
            future = asyncio.run_coroutine_threadsafe(start(request_or_iterator, context), loop)
            context.add_callback(future.cancel)
            try:
                return future.result()
            except BaseException as error:
                _abort(context, error)

    return rebuilt(handler, call)


async def _read_on(readers: Executor, requests: Iterator) -> AsyncIterator:
    """A synchronous request stream as an async one: each message read on a reader thread."""
    loop = asyncio.get_running_loop()
    while (request := await loop.run_in_executor(readers, next, requests, _END)) is not _END:
        yield request


async def _next(replies: AsyncIterator) -> Any:
    return await anext(replies)


def _pulled(replies: AsyncIterator, context: grpc.ServicerContext, loop: asyncio.AbstractEventLoop) -> Iterator:
    """The replies of an async generator on ``loop``, pulled one by one for the handler thread; the
    generator is cancelled when the call ends early and closed when the thread stops pulling."""
    pending = None

    def cancel() -> None:
        if pending is not None:
            pending.cancel()

    context.add_callback(cancel)
    try:
        while True:
            pending = asyncio.run_coroutine_threadsafe(_next(replies), loop)
            try:
                reply = pending.result()
            except StopAsyncIteration:
                return
            except BaseException as error:
                _abort(context, error)
            yield reply
    finally:
        try:
            asyncio.run_coroutine_threadsafe(replies.aclose(), loop)
        except RuntimeError:  # the loop is closed
            pass


def native(behavior: Callable) -> Callable:
    """A plain servicer method for the handler thread; the generated stubs' default for a method
    the servicer does not implement answers UNIMPLEMENTED."""
    def call(request, context):
        try:
            return behavior(request, context)
        except NotImplementedError:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"method not implemented by this server: {behavior.__name__}")

    return call


class Transport:
    """The synchronous gRPC server with its handler threads (``threads``) and stream readers.

    It stands in for the server in the generated ``add_*Servicer_to_server`` functions (``add``, and
    reflection's ``enable_server_reflection``): coroutine methods are bridged to ``loop``, plain
    ones run on the handler thread; every handler is made tolerant of undecodable requests
    (service.wire) and, with a ``guard``, admitted call by call (service.guard), all once, when it
    is registered. ``gate`` is the handler threads' ThreadGate, which the servicers' plain methods
    pass to the batch queues. ``await stop(grace)`` ends it.
    """

    def __init__(self, threads: int, loop: asyncio.AbstractEventLoop | None, guard: AdmissionGuard | None,
                 options: list):
        self.handlers = ThreadPoolExecutor(threads, thread_name_prefix="grpc")
        self.readers = ThreadPoolExecutor(threads, thread_name_prefix="grpc-stream-read")
        self.server = grpc.server(self.handlers, options=options)
        self.loop = loop
        self.guard = guard
        self.gate = ThreadGate()

    def add(self, add_to_server: Callable, servicer: Any) -> None:
        """``add_to_server(servicer, ...)``, a generated ``add_*Servicer_to_server`` function."""
        add_to_server(servicer, self)

    def add_generic_rpc_handlers(self, handlers) -> None:
        """Ignored: ``add_registered_method_handlers`` receives the same handlers."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        adapted = {name: self.adapt(f"/{service}/{name}", h) for name, h in handlers.items()}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, adapted),))
        self.server.add_registered_method_handlers(service, adapted)

    def adapt(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behavior = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
        if inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior):
            if self.loop is None:
                raise ValueError(f"{method}: a coroutine method needs the transport's event loop")
            handler = bridged(tolerant(handler), self.loop, self.readers)
        else:
            handler = tolerant(rebuilt(handler, native(behavior)))
        return handler if self.guard is None else self.guard.guarded(method, handler)

    async def stop(self, grace: float) -> None:
        """Stop the server (calls still running after ``grace`` s are cancelled), then its threads."""
        await asyncio.to_thread(self.server.stop(grace).wait)
        for pool in (self.handlers, self.readers):
            pool.shutdown(wait=False, cancel_futures=True)
