"""From the network's raw class scores to what the classification API answers: per-image scores,
softmax probabilities and the classes ranked. Computed once per batch, in the compute thread."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Scored(NamedTuple):
    """A batch's outputs, row per image; the batch queue hands each caller its rows of each."""

    raw: np.ndarray            # what the network answered: (N, classes), or (N, classes, H', W')
    scores: np.ndarray         # (N, classes) class scores per image
    probabilities: np.ndarray  # (N, classes) softmax of scores
    ranking: np.ndarray        # (N, classes) class indices, most probable first


def image_scores(outputs: np.ndarray) -> np.ndarray:
    """(N, classes) scores per image. A fully convolutional model answers a class-score map
    (N, classes, H', W'); its scores per image are the map's mean over positions (the notes'
    dense evaluation: scoring every crop one total-stride apart and averaging)."""
    if outputs.ndim == 2:
        return outputs
    return outputs.reshape(outputs.shape[0], outputs.shape[1], -1).mean(axis=2)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large scores do not overflow."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int) -> np.ndarray:
    """(N, k) class indices per row, highest probability first (ties: the lower index first)."""
    return np.argsort(-probabilities, axis=1, kind="stable")[:, :min(k, probabilities.shape[1])]


def score(raw: np.ndarray) -> Scored:
    """Everything a reply needs, for a whole batch at once."""
    scores = image_scores(raw)
    probabilities = softmax(scores)
    return Scored(raw, scores, probabilities, top_k(probabilities, probabilities.shape[1]))
