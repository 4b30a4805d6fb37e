"""The default model repository the server starts with: a list of models, each with how to build it.

``ensure_defaults`` builds only what is missing, so it is idempotent and quick when all are there.
Another default (e.g. a trained model) is one more ``DefaultModel`` entry in ``DEFAULT_MODELS``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .build import build
from .repository import MODEL, model_dir


@dataclass(frozen=True)
class DefaultModel:
    name: str
    build: Callable[[Path], Path]  # writes ``version`` of the model into the repository given
    version: int = 1

    def present(self, repo: Path) -> bool:
        return (model_dir(repo, self.name) / str(self.version) / MODEL).is_file()


def train_digits_lenet5(repo: Path) -> Path:
    """LeNet-5 trained on the scikit-learn digits with the default recipe (seconds in NumPy)."""
    from training.model import train_model

    return train_model("lenet5", repo, name="digits-lenet5", version=1, progress=False)[0]


DEFAULT_MODELS: list[DefaultModel] = [
    DefaultModel("cifar-tiny", lambda repo: build("cifar-tiny", repo, seed=0, version=1)),
    DefaultModel("cifar-vgg", lambda repo: build("cifar-vgg", repo, seed=0, version=1)),
    DefaultModel("digits-lenet5", train_digits_lenet5),
]


def ensure_defaults(repo: str | Path, models: list[DefaultModel] | None = None,
                    log: Callable[[str], None] = print) -> list[str]:
    """Build each default model that is missing; returns the names built."""
    repo = Path(repo)
    built = []
    for model in DEFAULT_MODELS if models is None else models:
        if model.present(repo):
            log(f"{model.name}: version {model.version} present")
            continue
        path = model.build(repo)
        log(f"{model.name}: built {path}")
        built.append(model.name)
    return built
