"""From the network's raw class scores to what the classification API answers: per-image scores,
softmax probabilities and the top-k labels."""
from __future__ import annotations

import numpy as np


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
    k = min(k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")
    return order[:, :k]
