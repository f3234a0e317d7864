"""Quantization-aware training in Keras 3: a copy of a model that trains as its int8 file runs.

Jacob et al. 2018 ("Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
Only Inference", s.3) and TF 1's ``tf.contrib.quantize`` (which trained TF-slim's
``mobilenet_v1_*_quant`` checkpoints) simulate int8 inference in the forward pass: BatchNorm
folded into the conv, weights and activations fake-quantised, the straight-through gradient
inside each range. tensorflow-model-optimization, which does this for tf.keras, does not run on
Keras 3 (its issue #1119), and Keras 3's ``Model.quantize("int8")`` covers Dense / EinsumDense /
Embedding only. Here it is done for this package's conv nets with
``keras.quantizers.fake_quant_with_min_max_vars``: on TensorFlow that is
``tf.quantization.fake_quant_with_min_max_vars(_per_channel)``, the op the TFLite converter reads,
so the int8 file is written from the learned ranges, without representative data.

Where the fake quantisation sits is where TFLite's int8 kernels quantise:

- conv and depthwise weights: per output channel, symmetric, narrow range [-127, 127], the range
  ``max |w|`` of each channel (what the converter computes from the trained weights);
- activations: per tensor, asymmetric, at each op's output; a conv followed by its ReLU6 is one
  fused kernel, so only the ReLU's output (within [0, 6]) is quantised;
- the input: camera pixels in [0, 255] (uint8, scale 1), then the model's own Rescaling.

Each activation range is a pair of weights of its layer, initialised from the float model's
min / max on calibration batches (TFLite's post-training calibrator) and then learned with the
model (the gradients of TF's FakeQuant op). Layers are changed in place on a folded copy, as
Keras' own ``Dense.enable_lora`` adds weights to a built layer; the task class, its loss,
preprocessor and serving functions stay the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
from keras import layers, ops
from keras.quantizers import fake_quant_with_min_max_vars

from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.layers import bias_add
from mobilenet_zoo.task import Task

#: Layers that do no arithmetic: their output keeps their input's quantisation.
PASS_THROUGH = (layers.InputLayer, layers.Dropout, layers.Reshape, layers.Flatten)
#: Calibration batches read unless ``batches`` says (TFLite's converter reads as many as given).
CALIBRATION_BATCHES = 8
_CONVS = (layers.Conv2D, layers.DepthwiseConv2D)


def is_quantization_aware(model: Any) -> bool:
    """Whether ``model`` came from ``quantization_aware`` (its int8 file needs no calibration)."""
    return bool(getattr(model, "quantization_aware", False))


def quantization_aware(model: Task, calibration: Iterable, batches: int = CALIBRATION_BATCHES) -> Task:
    """A folded copy of ``model`` that fake-quantises as its int8 TFLite file computes.

    Args:
        model: a task model of this package (``MobileNetClassifier``, ``SSD``) built with
            ``include_preprocessing=True`` (its int8 file takes uint8 camera pixels).
        calibration: batches of images in [0, 255], or ``(images, targets)`` batches (a
            ``tf.data.Dataset`` or any iterable); the first ``batches`` set the initial ranges.
        batches: how many calibration batches to read.

    Returns:
        A model of the same class: train it (``compile`` / ``fit`` as the original; its
        ``compute_loss`` is the task's), then ``to_tflite(qat, path, quantize="int8",
        uint8_io=True)`` writes the int8 file from the learned ranges. ``model`` is unchanged.

    Raises:
        ValueError: on a Keras backend other than TensorFlow, for a model without
            preprocessing or already quantisation-aware, for layers with weights that are not
            convolutions, or for an empty ``calibration``.
        TypeError: for a model that is not a task model of this package.

    Example:

    ```python
    qat = quantization_aware(model, train.take(8))
    qat.compile(keras.optimizers.Adam(1e-5))
    qat.fit(train, epochs=2)
    to_tflite(qat, "model_qat_int8.tflite", quantize="int8", uint8_io=True)
    ```
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError("Quantization-aware training writes TensorFlow's FakeQuant ops for the TFLite "
                         f"converter; this process runs Keras on {keras.backend.backend()!r}. Run it "
                         "with KERAS_BACKEND=tensorflow.")
    if not isinstance(model, Task):
        raise TypeError("quantization_aware takes a task model of mobilenet_zoo (MobileNetClassifier, "
                        f"SSD); got {type(model).__name__}.")
    if is_quantization_aware(model):
        raise ValueError(f"`{model.name}` is already quantization-aware: train it, or start from the "
                         "float model.")
    if not getattr(model, "include_preprocessing", False):
        raise ValueError("Quantization-aware training makes a file with uint8 camera pixels in: build "
                         "the model with include_preprocessing=True.")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"`batches` must be an int >= 1, got {batches!r}.")
    qat = fold_batch_norm(model)
    if qat is model:  # already folded: a copy all the same (the original stays float)
        qat = type(model).from_config(model.get_config())
        qat.set_weights(model.get_weights())
    found = list(_flat_layers(qat))
    odd = [f"`{layer.name}` ({type(layer).__name__})" for layer in found
           if layer.weights and not isinstance(layer, _CONVS)]
    if odd:
        raise ValueError(f"Quantization-aware training covers convolutions; {', '.join(odd)} "
                         "have weights of another kind. Nothing was changed.")
    ranges = _calibrate(qat, found, calibration, batches)
    names = {layer.name for layer in found}
    for layer in found:
        if isinstance(layer, PASS_THROUGH):
            continue
        fused_relu = isinstance(layer, _CONVS) and f"{layer.name}_relu" in names
        if not fused_relu:
            low, high, learned = _initial_range(layer, ranges[layer.name])
            _add_range(layer, low, high, learned)
        layer.call = _quantized_call(layer, layer.call, fused_relu)
    qat.quantization_aware = True
    return qat


def _flat_layers(model: keras.Model):
    """Every layer of ``model``, nested models (the backbone) opened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _batches(calibration: Iterable, count: int) -> list[np.ndarray]:
    images = []
    for batch in calibration:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        images.append(np.asarray(x, np.float32))
        if len(images) == count:
            break
    if not images:
        raise ValueError("`calibration` gave no batches: pass the training batches (images in "
                         "[0, 255]) that set the initial ranges.")
    return images


def _calibrate(model: keras.Model, found: list, calibration: Iterable, count: int) -> dict:
    """{layer name: (min, max)} of each layer's float output over the calibration batches."""
    seen: dict[str, tuple[float, float]] = {}

    def recording(layer, call):
        def record(*args, **kwargs):
            out = call(*args, **kwargs)
            values = ops.convert_to_numpy(out)
            low, high = seen.get(layer.name, (0.0, 0.0))
            seen[layer.name] = (min(low, float(values.min())), max(high, float(values.max())))
            return out
        return record

    for layer in found:
        layer.call = recording(layer, layer.call)
    try:
        for images in _batches(calibration, count):
            model(images, training=False)
    finally:
        for layer in found:
            del layer.call  # the class's own call again
    return seen


def _initial_range(layer: keras.layers.Layer, seen: tuple[float, float]) -> tuple[float, float, bool]:
    """(min, max, learned) of a layer's output: a ReLU's minimum is 0 and its maximum its cap;
    a Rescaling maps [0, 255]; softmax / sigmoid give [0, 1] (fixed, as TFLite's kernels)."""
    low, high = min(seen[0], 0.0), max(seen[1], 0.0)  # 0 exactly representable
    if isinstance(layer, layers.ReLU):
        cap = float(layer.max_value) if layer.max_value is not None else high
        return 0.0, max(min(high, cap), 1e-3), True
    if isinstance(layer, layers.Rescaling):
        ends = sorted(float(v) * float(layer.scale) + float(layer.offset) for v in (0.0, 255.0))
        return ends[0], ends[1], False
    if isinstance(layer, layers.Activation) and layer.activation in (keras.activations.softmax,
                                                                     keras.activations.sigmoid):
        return 0.0, 1.0, False
    return low, max(high, low + 1e-3), True


def _add_range(layer: keras.layers.Layer, low: float, high: float, learned: bool) -> None:
    """The layer's ``quant_min`` / ``quant_max`` weights (Keras locks a built layer's state;
    ``Dense.enable_lora`` unlocks it the same way to add its weights)."""
    layer._tracker.unlock()
    try:
        layer.quant_min = layer.add_weight(name="quant_min", shape=(), trainable=learned and low < 0,
                                           initializer=keras.initializers.Constant(low))
        layer.quant_max = layer.add_weight(name="quant_max", shape=(), trainable=learned,
                                           initializer=keras.initializers.Constant(high))
    finally:
        layer._tracker.lock()


def _fake_quant(layer: keras.layers.Layer, x):
    return fake_quant_with_min_max_vars(x, layer.quant_min, layer.quant_max)


def _per_channel(kernel, depthwise: bool):
    """``kernel`` on TFLite's int8 grid: each output channel symmetric in [-127, 127] * max|w| / 127."""
    shape = kernel.shape
    if depthwise:  # (kh, kw, in, multiplier): output channel c * multiplier + m, last
        kernel = ops.reshape(kernel, (shape[0], shape[1], 1, shape[2] * shape[3]))
    bound = ops.maximum(ops.max(ops.abs(kernel), axis=(0, 1, 2)), 1e-8)
    kernel = fake_quant_with_min_max_vars(kernel, -bound, bound, narrow_range=True, axis=-1)
    return ops.reshape(kernel, shape) if depthwise else kernel


def _quantized_call(layer: keras.layers.Layer, call, fused_relu: bool):
    """``layer``'s call with its fake quantisation: a conv's weights (and its output unless its
    ReLU follows), the input pixels of a Rescaling, any other layer's output."""
    if isinstance(layer, _CONVS):
        depthwise = isinstance(layer, layers.DepthwiseConv2D)

        def conv(inputs):
            kernel = _per_channel(layer.kernel, depthwise)
            if depthwise:
                out = ops.depthwise_conv(inputs, kernel, strides=layer.strides, padding=layer.padding,
                                         dilation_rate=layer.dilation_rate, data_format=layer.data_format)
            else:
                out = layer.convolution_op(inputs, kernel)
            if layer.use_bias:
                out = bias_add(layer, out)
            if layer.activation is not None:
                out = layer.activation(out)
            return out if fused_relu else _fake_quant(layer, out)
        return conv

    def other(inputs, *args, **kwargs):
        if isinstance(layer, layers.Rescaling):  # uint8 camera pixels: scale 1, zero point 0
            inputs = fake_quant_with_min_max_vars(inputs, 0.0, 255.0)
        return _fake_quant(layer, call(inputs, *args, **kwargs))
    return other
