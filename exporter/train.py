"""Mini-batch gradient descent on a ``Network``: softmax cross-entropy on the class scores.

The gradients come from ``Network.backward`` (the kernels' backward functions chained through the
graph, branches included); the update rule from ``exporter.optim``; the rate from
``exporter.schedule``. One seed fixes the shuffling order, dropout masks and hence the trained
weights: the same seed gives bit-identical parameters.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from kernels.softmax import softmax_cross_entropy

from .data import Split, normalize, random_shift
from .optim import make_optimizer
from .schedule import make_schedule

DECAYED_KINDS = ("conv", "fc")  # layers whose W gets L2 weight decay; biases and batch norm do not


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (recorded in the model's metadata)."""

    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: int = 1  # linear warm-up of the cosine schedule; capped at epochs - 1
    augment_shift: int = 2  # random translation of training images by up to this many pixels
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs!r}")


@dataclass
class EpochStats:
    """What one epoch did: loss and accuracy over its (augmented) training batches, the test accuracy
    after it, the rate of its last step and its training time (evaluation excluded)."""

    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    lr: float
    train_seconds: float


@dataclass
class TrainResult:
    params: dict[str, np.ndarray]
    history: list[EpochStats] = field(default_factory=list)
    test_predictions: np.ndarray | None = None

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy

    @property
    def train_seconds(self) -> float:
        return sum(h.train_seconds for h in self.history)

    def seconds_to(self, accuracy: float) -> float | None:
        """Cumulative training time (evaluation excluded) until the test accuracy first reached ``accuracy``."""
        spent = 0.0
        for h in self.history:
            spent += h.train_seconds
            if h.test_accuracy >= accuracy:
                return spent
        return None


def decayed_names(network, params: dict[str, np.ndarray]) -> set[str]:
    """The parameter names that weight decay applies to: ``W`` of every CONV and FC node."""
    kinds = {node.name: node.layer.kind for node in network.nodes}
    return {name for name in params if name.endswith(".W") and kinds.get(name.rsplit(".", 1)[0]) in DECAYED_KINDS}


def predict_scores(network, params: dict[str, np.ndarray], x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Inference-mode class scores for ``x`` in batches."""
    out = [network.predict(x[i : i + batch_size], params) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=x.dtype)


def accuracy(network, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Fraction of ``x`` classified as ``y``, and the predicted classes."""
    pred = predict_scores(network, params, x).argmax(axis=1)
    return float((pred == y).mean()), pred


def train(
    network,
    params: dict[str, np.ndarray],
    split: Split,
    config: TrainConfig,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train ``params`` (a copy; the input is left untouched) on ``split`` and evaluate on its test part.

    Every epoch walks the training set in a fresh seeded order in mini-batches of ``batch_size``
    (the last one may be smaller), steps the optimizer once per batch with the scheduled rate, and
    then measures the test accuracy (not counted in ``train_seconds``).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    params = {k: np.array(v, dtype=np.float32, copy=True) for k, v in params.items()}
    x_train, y_train = split.x_train, split.train_labels
    x_test, y_test = split.x_test, split.test_labels
    background = float(normalize(np.zeros((1, 1, 1), np.uint8), split.preprocessing).flat[0])
    n = len(y_train)
    steps_per_epoch = -(-n // config.batch_size)
    schedule = make_schedule(
        config.schedule, config.lr, total=config.epochs * steps_per_epoch, warmup=min(config.warmup_epochs, config.epochs - 1) * steps_per_epoch,
    )
    optimizer = make_optimizer(
        config.optimizer, weight_decay=config.weight_decay, decay=decayed_names(network, params),
        **({"momentum": config.momentum} if config.optimizer == "sgd" else {}),
    )
    result = TrainResult(params=params)
    bar = tqdm(total=config.epochs, unit="epoch", disable=None if progress else True, desc=f"train {network.name}")
    it = 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)
        loss_sum = correct = 0.0
        for b in range(0, n, config.batch_size):
            idx = order[b : b + config.batch_size]
            batch = random_shift(x_train[idx], config.augment_shift, rng, background)
            scores, cache = network.forward(batch, params, rng=rng)
            loss, dscores = softmax_cross_entropy(scores, y_train[idx])
            grads = network.backward(dscores.astype(scores.dtype, copy=False), cache)
            lr = schedule(it)
            optimizer.step(params, grads, lr)
            it += 1
            loss_sum += loss * len(idx)
            correct += float((scores.argmax(axis=1) == y_train[idx]).sum())
        seconds = time.perf_counter() - start
        test_acc, pred = accuracy(network, params, x_test, y_test)
        stats = EpochStats(epoch, loss_sum / n, correct / n, test_acc, lr, seconds)
        result.history.append(stats)
        result.test_predictions = pred
        bar.set_postfix(loss=f"{stats.loss:.4f}", train_acc=f"{stats.train_accuracy:.3f}", test_acc=f"{test_acc:.3f}")
        bar.update(1)
        if on_epoch is not None:
            on_epoch(stats)
    bar.close()
    return result


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts (classes, classes): row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(y_true, y_pred, labels=list(range(classes)))


def format_confusion(matrix: np.ndarray, labels: list[str]) -> str:
    """The confusion matrix as a text table, true classes down, predictions across."""
    width = max(4, max(len(str(v)) for v in matrix.flat) + 1, max(len(s) for s in labels) + 1)
    head = "true\\pred".ljust(10) + "".join(s.rjust(width) for s in labels)
    rows = [str(lbl).ljust(10) + "".join(str(v).rjust(width) for v in row) for lbl, row in zip(labels, matrix)]
    return "\n".join([head, *rows])


def train_metadata(config: TrainConfig, split: Split, result: TrainResult, data_name: str, test_fraction: float, data_seed: int) -> dict:
    """The training facts stored in the version's metadata.json."""
    return {
        "test_accuracy": round(result.test_accuracy, 6),
        "train_accuracy": round(result.history[-1].train_accuracy, 6),
        "train_loss": round(result.history[-1].loss, 6),
        "train_seconds": round(result.train_seconds, 3),
        "training": asdict(config),
        "data": {
            "name": data_name, "seed": data_seed, "test_fraction": test_fraction,
            "train": int(len(split.train_labels)), "test": int(len(split.test_labels)),
        },
    }
