"""Errors the service answers with, independent of gRPC: the servicers map each class to a status.

Every message names the field, the expected and the received value where there is one.
"""
from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a caller is told about (as opposed to a fault inside the server)."""


class InvalidInput(ServiceError):
    """The request is malformed: wrong shape, dtype, byte length, undecodable image, ... ."""


class RequestTooLarge(InvalidInput):
    """A request holds more images than the model's max_batch_size (it is rejected, not split)."""


class LoadFailed(InvalidInput):
    """A model load (RepositoryModelLoad) found config.json or a version wrong; what served before
    still serves. The message names the file, the field, the expected and the received value."""


class ModelNotFound(ServiceError):
    """No model, or no version, by that name or number."""


class ModelNotReady(ServiceError):
    """The model (or version) exists but did not load; the message gives the reason."""


class QueueFull(ServiceError):
    """The model's queue holds max_queue_size images already: load is shed at once."""


class DeadlineExceeded(ServiceError):
    """The request's deadline passed while it waited in the queue; it was not computed."""


class ShuttingDown(ServiceError):
    """The server is stopping and accepts no new work."""


class ControlDisabled(ServiceError):
    """Model control (load/unload) was asked for while the server runs with model_control none."""


class BatchFailed(ServiceError):
    """The compute of the batch holding this request raised; only that batch's requests fail.

    ``error_id`` also appears in the server log next to the traceback.
    """

    def __init__(self, message: str, error_id: str):
        super().__init__(message)
        self.error_id = error_id


class Abandoned(ServiceError):
    """The caller went away (it cancelled the call, or its connection closed) while its request
    waited: the request was withdrawn and nobody reads the answer."""
