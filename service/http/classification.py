"""Triton's classification extension: an output requested with ``"parameters": {"classification": K}``
(``tritonclient``'s ``InferRequestedOutput(name, class_count=K)``) is answered, instead of the raw
scores, as the K highest-scoring classes of each image, most probable first (ties: lower index),
as BYTES strings ``"<score>:<index>:<label>"`` of shape [N, K], the way Triton writes them."""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInput
from .codec import InferBody


def requested_classes(body: InferBody, output_shape: tuple[int, ...]) -> int:
    """K when an output asks for the classification, else 0; only [N, classes] scores classify."""
    asked = 0
    for i, output in enumerate(body.outputs):
        value = output.get("parameters", {}).get("classification")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"outputs[{i}].parameters.classification: expected an integer >= 1 (classes per "
                               f"image), received {value!r}")
        if len(output_shape) != 1:
            raise InvalidInput(f"outputs[{i}].parameters.classification: expected a model whose output is one "
                               f"score per class, received a model whose output per image has shape "
                               f"{list(output_shape)} (fully convolutional)")
        asked = value
    return asked


def top_classes(scores: np.ndarray, k: int, labels: tuple[str, ...]) -> np.ndarray:
    """(N, min(k, classes)) object array of b"<score>:<index>:<label>"."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array([[f"{scores[n, c]:f}:{c}:{labels[c]}".encode() for c in row] for n, row in enumerate(order)],
                    dtype=object).reshape(len(scores), -1)
