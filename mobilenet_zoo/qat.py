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
- the input: camera pixels in [0, 255] (uint8, scale 1), then the model's own Rescaling;
- a bilinear resize (DeepLabV3's upsampling) keeps its input's range, as TFLite's int8
  RESIZE_BILINEAR does.

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
from keras import layers, ops, quantizers

from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.layers import bias_add
from mobilenet_zoo.segmentation.deeplab import DeepLabV3, ResizeLike

#: Layers whose output keeps their input's quantisation: no arithmetic, or TFLite's int8
#: kernel keeps the input's scale (RESIZE_BILINEAR interpolates within the input's range).
PASS_THROUGH = (layers.InputLayer, layers.Dropout, layers.Reshape, layers.Flatten,
                layers.ZeroPadding2D, layers.MaxPooling2D, ResizeLike)
#: The task models whose every layer is covered.
SUPPORTED = (MobileNetClassifier, SSD, DeepLabV3)
#: Calibration batches read unless ``batches`` says.
CALIBRATION_BATCHES = 8
_CONVS = (layers.Conv2D, layers.DepthwiseConv2D)


def is_quantization_aware(model: Any) -> bool:
    """Whether ``model`` came from ``quantization_aware`` (its int8 file needs no calibration)."""
    return bool(getattr(model, "quantization_aware", False))


def quantization_aware(model: MobileNetClassifier | SSD | DeepLabV3, calibration: Any,
                       batches: int = CALIBRATION_BATCHES) -> MobileNetClassifier | SSD | DeepLabV3:
    """A folded copy of ``model`` that fake-quantises as its int8 TFLite file computes.

    Args:
        model: a task model of this package (``MobileNetClassifier``, ``SSD``, ``DeepLabV3``) built with
            ``include_preprocessing=True`` (its int8 file takes uint8 camera pixels).
        calibration: batches of images in [0, 255], or ``(images, targets)`` batches (a
            ``tf.data.Dataset`` or any iterable); the first ``batches`` set the initial ranges.
        batches: how many calibration batches to read.

    Returns:
        A model of the same class: train it (``compile`` / ``fit`` as the original; its
        ``compute_loss`` is the task's), then ``to_tflite(qat, path, quantize="int8",
        uint8_io=True)`` writes the int8 file from the learned ranges. ``model`` is unchanged.

    The copy is for training and export in the same process: its quantised calls are not
    saved in a ``.keras`` file (save the float model), and it keeps its input size. Its layers
    are all trainable (the per-layer freezing of the original is not copied), except a backbone
    frozen as a whole.

    Raises:
        ValueError: on a Keras backend other than TensorFlow or a Keras without
            ``keras.quantizers.fake_quant_with_min_max_vars`` (3.9+), for a model without
            preprocessing, of dynamic input size or already quantisation-aware, and for
            calibration batches that are not camera pixels in [0, 255] or are empty.
        TypeError: for a model other than ``MobileNetClassifier``, ``SSD`` or ``DeepLabV3``.

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
    if not hasattr(quantizers, "fake_quant_with_min_max_vars"):
        raise ValueError(f"Quantization-aware training needs keras.quantizers.fake_quant_with_min_max_vars "
                         f"(Keras 3.9 or later); this is Keras {keras.__version__}: pip install -U keras.")
    if not isinstance(model, SUPPORTED):
        raise TypeError("quantization_aware supports MobileNetClassifier, SSD and DeepLabV3 (every layer "
                        f"of theirs is covered); got {type(model).__name__}.")
    if is_quantization_aware(model):
        raise ValueError(f"`{model.name}` is already quantization-aware: train it, or start from the "
                         "float model.")
    if not getattr(model, "include_preprocessing", False):
        raise ValueError("Quantization-aware training makes a file with uint8 camera pixels in: build "
                         "the model with include_preprocessing=True.")
    if any(side is None for side in model.inputs[0].shape[1:3]):
        raise ValueError("Quantization-aware training needs the input size of the file: build the model "
                         "at a fixed size (model.with_image_size((h, w))) first.")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"`batches` must be an int >= 1, got {batches!r}.")
    qat = fold_batch_norm(model)
    if qat is model:  # already folded: a copy all the same (the original stays float)
        qat = type(model).from_config(model.get_config())
        qat.set_weights(model.get_weights())
    found = list({id(layer): layer for layer in _flat_layers(qat)}.values())  # a shared layer once
    ranges = _calibrate(qat, found, calibration, batches)
    names = {layer.name for layer in found}
    for layer in found:
        if _passes_through(layer):
            continue
        # A conv and its ReLU6 (``<conv>_relu``, this package's naming) are one fused TFLite kernel.
        fused_relu = isinstance(layer, _CONVS) and f"{layer.name}_relu" in names
        if not fused_relu:
            _add_range(layer, *_initial_range(layer, ranges[id(layer)]))
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


def _passes_through(layer: keras.layers.Layer) -> bool:
    linear = isinstance(layer, layers.Activation) and layer.activation is keras.activations.linear
    return linear or isinstance(layer, PASS_THROUGH)


_FORMS = ("batches of images (N, H, W, 3) in [0, 255], or (images, targets) batches: a tf.data "
          "dataset, a list, or one (N, H, W, 3) array")


def _batches(calibration: Any, count: int):
    """The first ``count`` image batches of ``calibration``, each checked, one at a time."""
    if isinstance(calibration, np.ndarray):
        calibration = [calibration]
    read = 0
    for batch in calibration:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        try:
            x = np.asarray(x, np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"`calibration` gave a {type(x).__name__}; it takes {_FORMS}.") from None
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"`calibration` gave an array of shape {x.shape}; it takes {_FORMS}.")
        if x.min() < 0 or x.max() > 255 or x.max() <= 1.5:
            raise ValueError(f"`calibration` images range over [{x.min():g}, {x.max():g}]; the model "
                             "takes camera pixels in [0, 255] (its own Rescaling normalises them): "
                             "pass the pixels, not normalised images.")
        yield x
        read += 1
        if read == count:
            return
    if not read:
        raise ValueError(f"`calibration` gave no batches; it takes {_FORMS}.")


def _calibrate(model: keras.Model, found: list, calibration: Iterable, count: int) -> dict:
    """{id(layer): (min, max)} of each layer's float output over the calibration batches."""
    seen: dict[int, tuple[float, float]] = {}

    def recording(layer, call):
        def record(*args, **kwargs):
            out = call(*args, **kwargs)
            values = ops.convert_to_numpy(out)
            low, high = seen.get(id(layer), (0.0, 0.0))
            seen[id(layer)] = (min(low, float(values.min())), max(high, float(values.max())))
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


def _initial_range(layer: keras.layers.Layer, seen: tuple[float, float]) -> tuple[float, float, bool, bool]:
    """(min, max, min learned, max learned) of a layer's output: a ReLU's minimum is 0 and its
    maximum the calibrated one, at most its cap; a Rescaling maps [0, 255] (fixed); softmax /
    sigmoid give [0, 1] (fixed; TFLite's int8 kernels fix their own output scale, 1/256)."""
    low, high = min(seen[0], 0.0), max(seen[1], 0.0)  # 0 exactly representable
    if isinstance(layer, layers.ReLU):
        cap = float(layer.max_value) if layer.max_value is not None else high
        return 0.0, max(min(high, cap), 1e-3), False, True
    if isinstance(layer, layers.Rescaling):
        ends = sorted(float(v) * float(layer.scale) + float(layer.offset) for v in (0.0, 255.0))
        return ends[0], ends[1], False, False
    if isinstance(layer, layers.Activation) and layer.activation in (keras.activations.softmax,
                                                                     keras.activations.sigmoid):
        return 0.0, 1.0, False, False
    return low, max(high, low + 1e-3), True, True


def _add_range(layer: keras.layers.Layer, low: float, high: float, learn_min: bool, learn_max: bool) -> None:
    """The layer's ``quant_min`` / ``quant_max`` weights (Keras locks a built layer's state;
    ``Dense.enable_lora`` unlocks it the same way to add its weights). Learned by gradient
    (TF's FakeQuant gradients) where Jacob et al. s.3.1 track a moving average: a deliberate
    difference, so that the ranges follow the loss."""
    layer._tracker.unlock()
    try:
        layer.quant_min = layer.add_weight(name="quant_min", shape=(), trainable=learn_min,
                                           initializer=keras.initializers.Constant(low))
        layer.quant_max = layer.add_weight(name="quant_max", shape=(), trainable=learn_max,
                                           initializer=keras.initializers.Constant(high))
    finally:
        layer._tracker.lock()


def _fake_quant(layer: keras.layers.Layer, x):
    # A learned range stays a range: min <= 0 <= max and at least 1e-3 wide.
    low = ops.minimum(layer.quant_min, 0.0)
    high = ops.maximum(layer.quant_max, low + 1e-3)
    return quantizers.fake_quant_with_min_max_vars(x, low, high)


def _per_channel(kernel, depthwise: bool):
    """``kernel`` on TFLite's int8 grid: each output channel symmetric in [-127, 127] * max|w| / 127."""
    shape = kernel.shape
    if depthwise:  # (kh, kw, in, multiplier): output channel c * multiplier + m, last
        kernel = ops.reshape(kernel, (shape[0], shape[1], 1, shape[2] * shape[3]))
    bound = ops.maximum(ops.max(ops.abs(kernel), axis=(0, 1, 2)), 1e-8)
    kernel = quantizers.fake_quant_with_min_max_vars(kernel, -bound, bound, narrow_range=True, axis=-1)
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
            inputs = quantizers.fake_quant_with_min_max_vars(inputs, 0.0, 255.0)
        return _fake_quant(layer, call(inputs, *args, **kwargs))
    return other
