"""The values a workflow takes: plain dataclasses, importable without Keras or TensorFlow.

``training.flags`` turns a recipe's parsed flags into these (it is the one place that reads
an ``argparse.Namespace``); ``training.run``, ``training.detection`` and
``training.classification`` receive them. A config's field metadata ``help`` becomes the
recipe's ``--flag`` help (``flags.add_config_flags``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from mobilenet_zoo.hub import presets
from mobilenet_zoo.training.schedule import Schedule, Schedules


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


#: What ``finetune`` fits (issue 29), and the model class a preset must fit for each
#: (``hub.presets.check_preset_fits``).
FINETUNE_TASKS = ("detector", "classifier", "segmenter")
_FINETUNE_MODEL = {"detector": "SSD", "classifier": "MobileNetClassifier", "segmenter": "DeepLabV3"}
#: The data layouts each task reads (``--format``; ``auto``: detected).
FINETUNE_FORMATS = {"detector": ("auto", "coco", "voc", "yolo"), "classifier": ("auto", "folders"),
                    "segmenter": ("auto", "masks")}
#: ``--quantize`` of a fine-tune run: the phone file written beside ``model.tflite`` (float32).
FINETUNE_QUANTIZE = ("none", "dynamic", "float16", "int8")
#: Where a detector fine-tune starts by default: the ImageNet weights that ship in the wheel
#: (no download), as the TF OD API's COCO configs start from the ImageNet checkpoint. On the
#: sample photos it beat the shipped face SSD (whose box predictor is kept) by 12 AP50 points
#: at a third less time (docs/finetune.md); a COCO SSD preset is the other start to try.
DEFAULT_DETECTOR_PRESET = "mobilenet_v1_1.0_224_imagenet"
# A detector fine-tune's training loop, measured on 2 CPU cores (docs/finetune.md: 240
# photos in 4 minutes; 24 epochs gave AP50 0.79 where 12 gave 0.57). The optimizer is
# ssd_mobilenet_v1_coco.config's RMSProp (0.004,
# momentum 0.9, decay 0.9, epsilon 1.0); the backbone stays frozen up to P3, as in the
# embedded-set schedule of recipes/ssd_coco.py. ``full``: the user's folder; ``smoke``: a
# few steps on it (``--smoke``).
_FINETUNE = Schedule(epochs=24, batch_size=16, learning_rate=0.004, eval_batch=16, freeze_until="P3")
FINETUNE_SCHEDULES = Schedules(
    full=_FINETUNE, embedded=_FINETUNE,
    smoke=Schedule(epochs=1, batch_size=2, learning_rate=0.004, steps_per_epoch=2, eval_batch=2,
                   freeze_until="P3"),
)
# A classifier fine-tune: the two stages of the Keras transfer-learning guide (training.transfer):
# half the epochs train the new head with Adam 1e-3, the rest the top blocks at a tenth of it.
_CLASSIFIER = Schedule(epochs=10, batch_size=32, learning_rate=1e-3)
FINETUNE_CLASSIFIER_SCHEDULES = Schedules(
    full=_CLASSIFIER, embedded=_CLASSIFIER,
    smoke=Schedule(epochs=2, batch_size=4, learning_rate=1e-3, eval_batch=4),
)

# A segmenter fine-tune: DeepLabV3 at output stride 16, the whole network trained with Adam
# 1e-3 (recipes/segmentation.py's optimizer), DeepLab's random scale / crop / flip. Measured on
# the sample masks (240 photos, 2 CPU cores, docs/finetune.md section 8): 8 epochs at 224 in
# 10.5 min gave a mean IoU of 52.8.
_SEGMENTER = Schedule(epochs=8, batch_size=8, learning_rate=1e-3, eval_batch=8, freeze_until="none")
FINETUNE_SEGMENTER_SCHEDULES = Schedules(
    full=_SEGMENTER, embedded=_SEGMENTER,
    smoke=Schedule(epochs=1, batch_size=2, learning_rate=1e-3, steps_per_epoch=2, eval_batch=2,
                   freeze_until="none"),
)


# Quantization-aware training after the float fine-tune (--qat, mobilenet_zoo.qat): a few
# epochs of the whole network at a hundredth of the training learning rate. Measured on 2 CPU
# cores (docs/finetune.md): a tenth of it (4e-4, RMSProp) cost the detector's int8 file 5-8
# AP50 points; a hundredth gave AP 42.7 against the float file's 39.5. The classifier's 2 epochs
# lift its int8 top-1 from 73.6 (post-training) to 85.1 (float: 80.2); the segmenter's 2 its
# int8 mean IoU from 52.1 (post-training) to 58.3 (float: 52.8).
QAT_EPOCHS = {"detector": 3, "classifier": 2, "segmenter": 2}
QAT_LEARNING_RATE_FACTOR = 0.01


@dataclass(frozen=True)
class FinetuneOptions:
    """What a fine-tune run is asked for (``mobilenet_zoo.finetune``): checked on creation,
    without Keras, so a wrong argument is one clear error before anything loads."""

    task: str
    data_dir: str
    preset: str = DEFAULT_DETECTOR_PRESET
    format: str = "auto"
    skip_bad_labels: bool = False
    image_size: int | None = None
    resize_mode: str = "stretch"
    quantize: str = "int8"
    eval_batches: int | None = None
    qat: bool = False
    qat_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.task not in FINETUNE_TASKS:
            raise ValueError(f"finetune: task {self.task!r} is not one of {', '.join(FINETUNE_TASKS)}.")
        if not isinstance(self.data_dir, (str, os.PathLike)) or not os.path.isdir(self.data_dir):
            raise ValueError(f"finetune: DATA {self.data_dir!r} is not a folder. Give the folder of "
                             "your labelled photos: COCO JSON, Pascal VOC or YOLO for a detector, "
                             "class folders for a classifier, images + PNG masks for a segmenter "
                             "(docs/finetune.md).")
        meta = presets.get_preset(self.preset)  # ValueError listing the presets
        presets.check_preset_fits(meta, _FINETUNE_MODEL[self.task])  # ValueError naming what fits
        formats = FINETUNE_FORMATS[self.task]
        if self.format not in formats:
            raise ValueError(f"finetune: a {self.task}'s data format is one of {', '.join(formats)}; "
                             f"got {self.format!r}.")
        if self.resize_mode not in ("stretch", "pad"):
            raise ValueError(f"finetune: resize_mode must be 'stretch' (what MediaPipe does) or 'pad'; "
                             f"got {self.resize_mode!r}.")
        if self.quantize not in FINETUNE_QUANTIZE:
            raise ValueError(f"finetune: quantize must be one of {', '.join(FINETUNE_QUANTIZE)}; "
                             f"got {self.quantize!r}.")
        if not isinstance(self.qat, bool):
            raise ValueError(f"finetune: qat is True or False; got {self.qat!r}.")
        if self.qat_epochs is not None and not self.qat:
            raise ValueError("finetune: qat_epochs (--qat-epochs) is for quantization-aware "
                             "training: pass --qat as well.")
        for name in ("image_size", "eval_batches", "qat_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"finetune: {name} (--{name.replace('_', '-')}) must be a positive "
                                 f"integer or None; got {value!r}.")
        if self.task == "detector" and self.image_size is not None and self.image_size < 64:
            raise ValueError(f"finetune: image_size must be at least 64 (an SSD's smallest feature "
                             f"map); got {self.image_size}.")
        if self.image_size is not None and self.image_size < 32:
            raise ValueError(f"finetune: image_size must be at least 32 (the backbone's stride); "
                             f"got {self.image_size}.")
