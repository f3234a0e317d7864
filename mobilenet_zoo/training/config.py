"""The values a workflow takes: plain dataclasses, importable without Keras or TensorFlow.

``training.flags`` turns a recipe's parsed flags into these (it is the one place that reads
an ``argparse.Namespace``); ``training.run``, ``training.detection`` and
``training.classification`` receive them. A config's field metadata ``help`` becomes the
recipe's ``--flag`` help (``flags.add_config_flags``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DetectionData:
    """The detection recipes' data flags (``add_detection_data_flags``)."""

    dataset: str = "auto"
    data_dir: str | None = None
    train_split: str | None = None
    eval_split: str | None = None
    embedded_train: int = 600
    embedded_val: int = 100
    format: str = "auto"
    skip_bad_labels: bool = False


@dataclass(frozen=True)
class ExportOptions:
    """Evaluation and export flags: ``--eval-batches``, ``--no-tflite``, ``--quantize``,
    ``--tflite-argmax`` (where a recipe has them)."""

    eval_batches: int | None = None
    tflite: bool = True
    quantize: str | None = None
    argmax: bool = False


@dataclass
class RunOptions:
    """Where and how a run goes (``add_common_flags``), and every flag's value
    (``flags``: ``results.json``'s "args" and, but for ``RUN_CONTROL_FLAGS``, the run's
    identity that ``--resume`` checks)."""

    out: str
    resume: bool = False
    overwrite: bool = False
    strategy: str = "default"
    tpu: str = ""
    seed: int = 0
    smoke: bool = False
    keep_checkpoints: str = "last-best"
    verbose: int = 2
    flags: dict[str, Any] = field(default_factory=dict)


def _f(default, help_text, **meta):
    return field(default=default, metadata={"help": help_text, **meta})


@dataclass
class ClassificationConfig:
    """Hyperparameters; each default cites its source."""

    alpha: float = _f(1.0, "width multiplier (paper s.3.3)")
    image_size: int = _f(224, "input side; rho = image_size / 224 (paper s.3.4)")
    variant: str = _f("separable", "separable | full (Table 4) | shallow (Table 5)",
                      choices=("separable", "full", "shallow"))
    weights: str = _f("scratch", "scratch | imagenet (published weights of --alpha / --image-size) | a preset name | path to weights")
    batch_size: int = _f(96, "global batch size (our choice; the paper does not give it)")
    epochs: int = _f(100, "training epochs (our choice)")
    steps_per_epoch: int = _f(0, "0 = one pass over the training split")
    learning_rate: float = _f(0.045, "initial RMSprop learning rate (Inception-family RMSprop setup)")
    lr_decay: float = _f(0.94, "learning-rate factor per decay (TF-slim train_image_classifier)")
    epochs_per_decay: float = _f(2.0, "epochs between decays (TF-slim train_image_classifier)")
    rmsprop_decay: float = _f(0.9, "RMSprop rho (TF-slim default)")
    momentum: float = _f(0.9, "RMSprop momentum (TF-slim default)")
    epsilon: float = _f(1.0, "RMSprop epsilon (TF-slim default)")
    weight_decay: float = _f(4e-5, "L2 on conv kernels, none on depthwise or BN (paper s.3.1, TF-slim)")
    bn_momentum: float = _f(0.9997, "BatchNorm decay (TF-slim)")
    dropout: float = _f(1e-3, "dropout before the logits (keras.applications; slim keeps 0.999)")
    label_smoothing: float = _f(0.0, "none: the paper trains without label smoothing (s.4)")
    augment: bool = _f(True, "little augmentation: random crop + flip only (paper s.4)")
    central_fraction: float = _f(0.875, "evaluation central crop (Inception / TF-slim eval); 1.0 = none")
