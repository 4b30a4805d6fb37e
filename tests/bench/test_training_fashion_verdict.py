"""bench/training_fashion.py's closing sentence follows the figures: the target's verdict and the
class that costs most, from the confusion matrix (made-up figures; the benchmark is run by hand)."""
from __future__ import annotations

import numpy as np

from bench.training_fashion import verdict

LABELS = ["a", "b", "c"]
MATRIX = np.array([[90, 5, 5], [20, 70, 10], [0, 1, 99]])
HISTORY = [{"val_accuracy": 0.925}, {"val_accuracy": 0.928}]


def test_a_met_target_names_the_costliest_class_and_its_confusions():
    text = verdict(0.9353, HISTORY, LABELS, MATRIX)
    assert text == ("The 93% test accuracy target is met (93.53%). The b class costs most: 30 of its 100 test "
                    "images are missed, mostly as a, c.")


def test_a_missed_target_says_so_with_the_last_epochs():
    text = verdict(0.9241, HISTORY, LABELS, MATRIX)
    assert text.startswith("The 93% test accuracy target is NOT met (92.41%; the validation accuracy went "
                           "92.50% -> 92.80% over the last two epochs).")
