"""Mini-batch gradient descent on a ``Network``: softmax cross-entropy on the class scores.

The gradients come from ``Network.backward`` (the kernels' backward functions chained through the
graph); the update rule from ``training.optim``; the rate from ``training.schedule``. Batch norm
trains on batch statistics and keeps running averages for inference. Each epoch is scored on the
validation part; the best epoch's parameters are the result, and the test part is evaluated once,
with them, at the end. One seed fixes the shuffling order, augmentation and dropout masks: the
same seed gives bit-identical parameters.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from kernels.normalization import BatchStats
from kernels.softmax import softmax_cross_entropy

from .data import Split, normalize, random_flip, random_shift
from .optim import make_optimizer
from .schedule import make_schedule

DECAYED_KINDS = ("conv", "fc")  # layers whose W gets L2 weight decay; biases and batch norm do not
BN_MOMENTUM = 0.1  # running = (1 - m) * running + m * batch, as PyTorch


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
    augment_flip: bool = False  # mirror half of each batch left to right
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs!r}")


@dataclass
class EpochStats:
    """One epoch: loss and accuracy over its (augmented) training batches, the validation loss and
    accuracy after it (NaN without a validation part), the rate of its last step and its training
    time (evaluation excluded)."""

    epoch: int
    loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    train_seconds: float
    images: int = 0

    @property
    def images_per_second(self) -> float:
        return self.images / self.train_seconds if self.train_seconds else 0.0


@dataclass
class TrainResult:
    """The chosen parameters (best validation epoch, else the last), the per-epoch history, and the
    test accuracy and predictions of those parameters."""

    params: dict[str, np.ndarray]
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    test_accuracy: float = float("nan")
    test_predictions: np.ndarray | None = None

    @property
    def train_seconds(self) -> float:
        return sum(h.train_seconds for h in self.history)


def decayed_names(network, params: dict[str, np.ndarray]) -> set[str]:
    """The parameter names that weight decay applies to: ``W`` of every CONV and FC node."""
    kinds = {node.name: node.layer.kind for node in network.nodes}
    return {name for name in params if name.endswith(".W") and kinds.get(name.rsplit(".", 1)[0]) in DECAYED_KINDS}


def predict_scores(network, params: dict[str, np.ndarray], x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Inference-mode class scores for ``x`` in batches."""
    out = [network.predict(x[i : i + batch_size], params) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, network.num_classes), dtype=np.float32)


def accuracy(network, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Fraction of ``x`` classified as ``y``, and the predicted classes."""
    pred = predict_scores(network, params, x).argmax(axis=1)
    return float((pred == y).mean()), pred


def evaluate(network, params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of inference-mode scores; NaN for an empty set."""
    if not len(y):
        return float("nan"), float("nan")
    scores = predict_scores(network, params, x)
    return softmax_cross_entropy(scores, y)[0], float((scores.argmax(axis=1) == y).mean())


def update_running_stats(params: dict[str, np.ndarray], caches: dict) -> None:
    """Move every batch norm's running mean and (unbiased) variance toward this batch's statistics."""
    for node, cache in caches.items():
        stats = cache[-1] if isinstance(cache, tuple) and cache else None
        if isinstance(stats, BatchStats):
            unbiased = stats.var * (stats.count / max(1, stats.count - 1))
            params[f"{node}.mean"] *= 1 - BN_MOMENTUM
            params[f"{node}.mean"] += BN_MOMENTUM * stats.mean
            params[f"{node}.var"] *= 1 - BN_MOMENTUM
            params[f"{node}.var"] += BN_MOMENTUM * unbiased


def train(
    network,
    params: dict[str, np.ndarray],
    split: Split,
    config: TrainConfig,
    progress: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train ``params`` (a copy; the input is left untouched) on ``split``.

    Every epoch walks the training set in a fresh seeded order in mini-batches of ``batch_size``
    (the last one may be smaller), steps the optimizer once per batch with the scheduled rate, and
    then scores the validation part (not counted in ``train_seconds``). The best validation epoch's
    parameters are kept and evaluated once on the test part.
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    params = {k: np.array(v, dtype=np.float32, copy=True) for k, v in params.items()}
    x_train, y_train = split.x_train, split.train_labels
    x_val, y_val = split.x_val, split.val_labels
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
    best, best_val = params, -1.0
    it = 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(n)
        loss_sum = correct = 0.0
        bar = tqdm(total=n, unit="img", unit_scale=True, leave=False, disable=not progress, mininterval=2,
                   desc=f"epoch {epoch}/{config.epochs}")
        for b in range(0, n, config.batch_size):
            idx = order[b : b + config.batch_size]
            batch = random_shift(x_train[idx], config.augment_shift, rng, background)
            if config.augment_flip:
                batch = random_flip(batch, rng)
            scores, cache = network.forward(batch, params, rng=rng)
            loss, dscores = softmax_cross_entropy(scores, y_train[idx])
            grads = network.backward(dscores.astype(scores.dtype, copy=False), cache)
            update_running_stats(params, cache)
            lr = schedule(it)
            optimizer.step(params, grads, lr)
            it += 1
            loss_sum += loss * len(idx)
            correct += float((scores.argmax(axis=1) == y_train[idx]).sum())
            bar.update(len(idx))
            bar.set_postfix(loss=f"{loss_sum / (b + len(idx)):.4f}", acc=f"{correct / (b + len(idx)):.3f}", refresh=False)
        bar.close()
        seconds = time.perf_counter() - start
        val_loss, val_acc = evaluate(network, params, x_val, y_val)
        stats = EpochStats(epoch, loss_sum / n, correct / n, val_loss, val_acc, lr, seconds, n)
        result.history.append(stats)
        if not len(y_val) or val_acc > best_val:
            best, best_val, result.best_epoch = {k: v.copy() for k, v in params.items()}, val_acc, epoch
        if on_epoch is not None:
            on_epoch(stats)
    result.params = best
    result.test_accuracy, result.test_predictions = accuracy(network, best, split.x_test, split.test_labels)
    return result


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts (classes, classes): row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def format_confusion(matrix: np.ndarray, labels: list[str]) -> str:
    """The confusion matrix as a text table, true classes down, predictions across."""
    width = max(4, max(len(str(v)) for v in matrix.flat) + 1, max(len(s) for s in labels) + 1)
    first = max(10, max(len(s) for s in labels) + 1)
    head = "true\\pred".ljust(first) + "".join(s.rjust(width) for s in labels)
    rows = [str(lbl).ljust(first) + "".join(str(v).rjust(width) for v in row) for lbl, row in zip(labels, matrix)]
    return "\n".join([head, *rows])


def train_metadata(config: TrainConfig, split: Split, result: TrainResult, data_name: str, test_fraction: float, data_seed: int) -> dict:
    """The training facts stored in the version's metadata.json."""
    best = result.history[result.best_epoch - 1]
    return {
        "test_accuracy": round(result.test_accuracy, 6),
        "val_accuracy": round(best.val_accuracy, 6) if len(split.val_labels) else None,
        "best_epoch": result.best_epoch,
        "train_accuracy": round(best.train_accuracy, 6),
        "train_loss": round(best.loss, 6),
        "train_seconds": round(result.train_seconds, 3),
        "training": asdict(config),
        "data": {
            "name": data_name, "seed": data_seed, "test_fraction": test_fraction,
            "train": int(len(split.train_labels)), "val": int(len(split.val_labels)), "test": int(len(split.test_labels)),
        },
    }
