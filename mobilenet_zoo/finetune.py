"""Your labelled photos to a phone model (issue 29): ``python -m mobilenet_zoo.finetune`` (the
command, ``mobilenet_zoo.cli.finetune``) and ``finetune(...)``, the same as one call.

```python
from mobilenet_zoo.finetune import finetune

run = finetune("detector", "photos/", out="runs/mine")   # COCO JSON, Pascal VOC or YOLO
run.model                        # the trained SSD (keras.Model)
run.report["models"]             # AP of model.keras, model.tflite and model_int8.tflite
run.file("model_int8.tflite")    # the phone file, with labels for MediaPipe
```
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mobilenet_zoo.cli.finetune import OUT_DEFAULT, main, run_call
from mobilenet_zoo.training.config import DEFAULT_DETECTOR_PRESET

if TYPE_CHECKING:
    from mobilenet_zoo.training.finetune import Finetuned

__all__ = ["finetune", "main"]


def finetune(task: str, data: str | os.PathLike, *, preset: str = DEFAULT_DETECTOR_PRESET,
             out: str | os.PathLike = OUT_DEFAULT, format: str = "auto", epochs: int | None = None,
             batch_size: int | None = None, learning_rate: float | None = None,
             image_size: int | None = None, resize_mode: str = "stretch", quantize: str = "int8",
             skip_bad_labels: bool = False, freeze_until: str | None = None,
             eval_batches: int | None = None, qat: bool = False, qat_epochs: int | None = None,
             resume: bool = False, overwrite: bool = False,
             seed: int = 0, smoke: bool = False, verbose: int | None = None) -> Finetuned:
    """Fine-tunes ``preset`` on the labelled photos in ``data``, as the command does.

    Args:
        task: ``"detector"`` (an SSD), ``"classifier"`` (a ``MobileNetClassifier``) or
            ``"segmenter"`` (a ``DeepLabV3``).
        data: a detector's folder labelled as COCO JSON, Pascal VOC or YOLO, a classifier's
            class folders, a segmenter's images + PNG masks (``format``: detected, or
            ``"coco"``, ``"voc"``, ``"yolo"``, ``"folders"``, ``"masks"``); its labels are
            checked first (``skip_bad_labels``: drop the wrong ones and say how many).
        preset: an ImageNet preset (the backbone; a new head) or a preset of the task: a
            detection preset (backbone, extra layers and box predictor kept, the class
            predictor new) or a DeepLabV3 preset (kept whole, the class layer new for another
            number of classes).
        out: the run folder (``model.keras``, ``model.tflite``, the ``quantize`` file,
            ``report.json``, ``report.md``); a folder holding a run is refused unless
            ``resume`` or ``overwrite``.
        epochs, batch_size, learning_rate, freeze_until: the training loop (None: the
            measured defaults, ``training.config.FINETUNE_SCHEDULES`` and its classifier and
            segmenter siblings).
        image_size: the input side (None: the preset's; a detector's at most 320, a
            segmenter's at most 224).
        resize_mode: a detector's ``"stretch"`` (what MediaPipe does) or ``"pad"``.
        quantize: the phone file beside the float32 one: ``"int8"``, ``"float16"``,
            ``"dynamic"`` or ``"none"``.
        eval_batches: evaluate on this many validation batches only.
        qat: then train a quantization-aware copy (``mobilenet_zoo.qat``) for ``qat_epochs``
            (None: the measured default) and write its int8 file, ``model_qat_int8.tflite``.
        seed, smoke, verbose: as the recipes' flags (``smoke``: two steps, one batch evaluated).

    Returns:
        ``training.finetune.Finetuned``: ``model``, ``report`` (``report.json``), ``out_dir``.

    Raises:
        ValueError: a bad argument (before anything loads), labels that are wrong (each named
            with its file and line), or an ``out`` that holds a run (without ``resume`` or
            ``overwrite``). TypeError: an argument of the wrong type (``image_size=64.0``,
            ``epochs="8"``).
    """
    if not isinstance(task, str) or not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"finetune(task, data): task is a name ('detector') and data a folder path; "
                        f"got {task!r}, {data!r}.")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"finetune: out is the run folder's path; got {out!r}.")
    for name, value in (("skip_bad_labels", skip_bad_labels), ("qat", qat), ("resume", resume),
                        ("overwrite", overwrite), ("smoke", smoke)):
        if not isinstance(value, bool):
            raise TypeError(f"finetune: {name} is True or False; got {value!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("image_size", image_size),
                        ("eval_batches", eval_batches), ("qat_epochs", qat_epochs), ("seed", seed),
                        ("verbose", verbose)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"finetune: {name} is an int; got {value!r}.")
    if learning_rate is not None and (isinstance(learning_rate, bool)
                                      or not isinstance(learning_rate, (int, float))):
        raise TypeError(f"finetune: learning_rate is a number; got {learning_rate!r}.")
    for name, value in (("preset", preset), ("format", format), ("resize_mode", resize_mode),
                        ("quantize", quantize), ("freeze_until", freeze_until)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"finetune: {name} is a name (a str); got {value!r}.")
    argv = [task, os.fspath(data), "--preset", preset, "--out", os.fspath(out), "--format", format,
            "--resize-mode", resize_mode, "--quantize", quantize, "--seed", str(seed)]
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size),
                        ("--learning-rate", learning_rate), ("--image-size", image_size),
                        ("--freeze-until", freeze_until), ("--eval-batches", eval_batches),
                        ("--qat-epochs", qat_epochs),
                        ("--verbose", verbose)):
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, on in (("--skip-bad-labels", skip_bad_labels), ("--qat", qat), ("--resume", resume),
                                   ("--overwrite", overwrite), ("--smoke", smoke)) if on]
    return run_call(argv)


if __name__ == "__main__":
    raise SystemExit(main())
