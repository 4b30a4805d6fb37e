"""The training loop on real digits: it learns, it is reproducible, and its bookkeeping is right."""
import dataclasses

import numpy as np
import pytest

from exporter.architectures import resolve
from training.data import random_shift
from training.digits import load_digits_split
from training.train import (
    TrainConfig, accuracy, confusion_matrix, decayed_names, format_confusion, train,
)
from kernels.softmax import softmax_cross_entropy


@pytest.fixture(scope="module")
def small_split():
    """500 training digits and the full 360-image test part, 32x32 for LeNet-5."""
    full = load_digits_split(seed=0)
    return dataclasses.replace(full, train_images=full.train_images[:500], train_labels=full.train_labels[:500])


@pytest.fixture(scope="module")
def lenet():
    return resolve("lenet5").network


def mean_loss(net, params, x, y):
    return softmax_cross_entropy(net.predict(x, params), y)[0]


@pytest.mark.slow
def test_a_short_run_lowers_the_loss_and_beats_chance(small_split, lenet):
    init = lenet.init_params(seed=0)
    config = TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=2e-3, seed=0)
    result = train(lenet, init, small_split, config, progress=False)

    before = mean_loss(lenet, init, small_split.x_train, small_split.train_labels)
    after = mean_loss(lenet, result.params, small_split.x_train, small_split.train_labels)
    assert after < 0.5 * before, (before, after)
    assert result.history[-1].loss < result.history[0].loss
    acc, pred = accuracy(lenet, result.params, small_split.x_test, small_split.test_labels)
    assert acc > 0.6, acc  # chance is 0.1 on ten balanced classes
    assert acc == result.test_accuracy
    np.testing.assert_array_equal(pred, result.test_predictions)
    assert np.array_equal(init["conv1.W"], lenet.init_params(seed=0)["conv1.W"]), "train() must not modify its input"


def test_sgd_with_momentum_also_learns(small_split, lenet):
    config = TrainConfig(epochs=3, optimizer="sgd", lr=0.05, momentum=0.9, schedule="step", warmup_epochs=0, seed=0)
    result = train(lenet, lenet.init_params(seed=0), small_split, config, progress=False)
    assert result.test_accuracy > 0.5


def test_the_same_seed_gives_identical_weights(small_split, lenet):
    tiny = dataclasses.replace(small_split, train_images=small_split.train_images[:96], train_labels=small_split.train_labels[:96])
    config = TrainConfig(epochs=2, batch_size=16, warmup_epochs=0, augment_shift=2, seed=5)
    a = train(lenet, lenet.init_params(seed=1), tiny, config, progress=False).params
    b = train(lenet, lenet.init_params(seed=1), tiny, config, progress=False).params
    c = train(lenet, lenet.init_params(seed=1), tiny, dataclasses.replace(config, seed=6), progress=False).params
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["fc3.W"], c["fc3.W"])  # another seed shuffles differently


def test_weight_decay_targets_conv_and_fc_weights_only(lenet):
    params = lenet.init_params(seed=0)
    decayed = decayed_names(lenet, params)
    assert decayed == {k for k in params if k.endswith(".W")}
    assert len(decayed) == 5  # LeNet-5: two CONV and three FC layers
    assert not any(k.endswith(".b") for k in decayed)


def test_random_shift_moves_whole_images_within_bounds():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 1, 6, 6))
    out = random_shift(x, 2, np.random.default_rng(1), fill=-9.0)
    for img, src in zip(out[:, 0], x[:, 0]):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(img, _shifted(src, dy, dx, -9.0))]
        assert len(found) == 1
    assert random_shift(x, 0, rng, 0.0) is x


def _shifted(img, dy, dx, fill):
    out = np.full_like(img, fill)
    h, w = img.shape
    out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = img[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return out


def test_confusion_matrix_counts_and_table():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    m = confusion_matrix(y, p, 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    table = format_confusion(m, ["a", "b", "c"]).splitlines()
    assert table[0].split() == ["true\\pred", "a", "b", "c"]
    assert table[3].split() == ["c", "1", "0", "2"]


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="--epochs must be positive, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="--batch-size must be positive, got -2"):
        TrainConfig(batch_size=-2)
