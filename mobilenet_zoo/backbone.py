"""MobileNet v1 feature extractor (Howard et al. 2017, arXiv 1704.04861).

One builder covers the paper's whole family: the width multiplier ``alpha``
(Section 3.3), the resolution multiplier ``rho`` (Section 3.4), the ablation
variants of Tables 4 and 5, TF-slim's ``min_depth`` floor and atrous
``output_stride`` (TF-slim ``mobilenet_v1.py``). Layer and weight names are those
of ``keras.applications.MobileNet`` so weights move between the two by name.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers

from mobilenet_zoo import presets
from mobilenet_zoo.hub.tasks import register_task

# Re-exported: the conv / BatchNorm helpers live in mobilenet_zoo.layers (heads import them there).
from mobilenet_zoo.layers import (  # noqa: F401
    BN_EPSILON,
    FoldedConv2D,
    FoldedDepthwiseConv2D,
    batch_norm,
    scaled_depth,
)
from mobilenet_zoo.spec import (  # noqa: F401  (re-exported: the architecture's constants)
    BLOCK_SPECS,
    MIN_INPUT_SIDE,
    OUTPUT_STRIDES,
    SHALLOW_REMOVED_BLOCKS,
    STEM_FILTERS,
    VARIANTS,
)
from mobilenet_zoo.utils import check_known_kwargs
from mobilenet_zoo.weights_io import ByNameWeightsMixin


def _check_positive(name: str, value: Any) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")


def resolve_input_shape(
    rho: float | None, input_shape: tuple | None, base_side: int = 224
) -> tuple:
    """Returns the (H, W, C) input shape implied by ``rho`` or ``input_shape``.

    Args:
        rho: resolution multiplier in (0, 1]; the side is ``round(base_side * rho)``.
        input_shape: explicit ``(H, W, C)``; ``None`` sides mean a dynamic size.
        base_side: the side at ``rho = 1`` (224 in the paper).

    Raises:
        ValueError: for a ``rho`` outside (0, 1], a side below 32, or both
            arguments given and disagreeing.
    """
    if rho is not None:
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho <= 1:
            raise ValueError(
                f"`rho` (resolution multiplier) must be in (0, 1], got {rho!r}. "
                "The paper uses 1, 0.857, 0.714 and 0.571 (224, 192, 160, 128)."
            )
        side = int(round(base_side * rho))
        if side < MIN_INPUT_SIDE:
            raise ValueError(
                f"`rho`={rho} gives an input side of {side}, below the minimum of "
                f"{MIN_INPUT_SIDE}; use rho >= {MIN_INPUT_SIDE / base_side:.3f}."
            )
        if input_shape is not None and tuple(input_shape[:2]) != (side, side):
            raise ValueError(
                f"`rho`={rho} implies a {side}x{side} input but `input_shape`="
                f"{tuple(input_shape)}; pass only one of them."
            )
        if input_shape is None:
            return (side, side, 3)
    if input_shape is None:
        return (base_side, base_side, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, channels), got {input_shape!r}."
        )
    for axis, side in zip(("height", "width"), input_shape[:2]):
        if side is not None and (not isinstance(side, int) or side < MIN_INPUT_SIDE):
            raise ValueError(
                f"`input_shape` {axis} must be an int >= {MIN_INPUT_SIDE} or None "
                f"(dynamic), got {side!r} in {input_shape!r}."
            )
    if not isinstance(input_shape[2], int) or input_shape[2] < 1:
        raise ValueError(
            f"`input_shape` channels must be a positive int, got {input_shape[2]!r}."
        )
    return input_shape


@register_task()
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class MobileNetBackbone(ByNameWeightsMixin, keras.Model):
    """MobileNet v1 feature extractor: image in, feature maps out (no logits).

    Args:
        alpha: width multiplier (paper Section 3.3), any value > 0. Every layer
            has ``max(int(filters * alpha), min_depth)`` channels.
        rho: resolution multiplier (paper Section 3.4) in (0, 1]: the input side
            is ``round(224 * rho)``. Mutually exclusive with a different
            ``input_shape``.
        input_shape: ``(H, W, C)``; ``(None, None, 3)`` accepts any size
            (detection, segmentation). Sides must be >= 32. Default (224, 224, 3).
        depth_multiplier: the *depthwise channel multiplier*: each depthwise conv
            produces ``depth_multiplier`` output channels per input channel
            (``keras.layers.DepthwiseConv2D(depth_multiplier=...)``). It is not the
            resolution multiplier, whatever keras.applications' docs say.
        min_depth: TF-slim's floor on every layer's channels (default 8). Set 1
            to follow keras.applications' ``int(filters * alpha)`` exactly.
        output_stride: 32 (classification), 16 or 8. Below 32 the stride-2
            layers past that stride become stride 1 and later depthwise convs are
            dilated (TF-slim ``mobilenet_v1_base``), keeping the receptive field.
        variant: ``"separable"`` (the paper's MobileNet), ``"full"`` (standard 3x3
            convs instead of depthwise separable ones, Table 4) or ``"shallow"``
            (without the five 14x14x512 blocks, Table 5).
        bn_momentum: BatchNorm momentum (Keras default 0.99; TF-slim trains
            with 0.9997).
        weight_decay: L2 on the standard and pointwise conv kernels in TF-slim's
            convention (``wd * sum(k^2) / 2``; slim trains with 4e-5). Depthwise
            kernels and BatchNorm are not decayed (paper s.3.1). Default 0.
        folded_batch_norm: build each conv with a bias and no BatchNorm after
            it: the inference form that ``mobilenet_zoo.fold_batch_norm`` fills
            from a trained model (1.5x faster on CPU). It trains as a plain
            conv net; train the unfolded model. Task heads follow the backbone.
        weights: ``None`` (random init), a preset name (see
            ``mobilenet_zoo.presets.list_presets()``) or a path to a weights file.
            Loads at any input size; a different alpha fails clearly.
        **kwargs: ``name``, ``dtype``, ``trainable`` for ``keras.Model``.

    Attributes (the backbone contract every task head relies on; see
    ``check_backbone``):
        alpha, output_stride, weight_decay, min_depth: as given.
        feature_strides: ``{"P1": 2, ..., "P5": 32}``, the stride of each
            pyramid level (capped at ``output_stride``).
        feature_channels: ``{"P1": 64, ...}``, the channels of each level.
        pyramid_outputs: ``{"P1": ..., "P5": ...}``, the last feature map at each
            stride level 2, 4, 8, 16, 32 (for alpha 1 at 224: conv_pw_1,
            conv_pw_3, conv_pw_5, conv_pw_11, conv_pw_13).
        endpoints: every layer of Table 1 by its Keras name (``"conv1"``,
            ``"conv_dw_1"``, ``"conv_pw_1"``, ...), the output after ReLU6.

    Example:

    ```python
    backbone = MobileNetBackbone(alpha=0.5, input_shape=(None, None, 3))
    features = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    maps = features(np.zeros((1, 300, 300, 3)))  # P4: 19x19, P5: 10x10
    ```
    """

    def __init__(
        self,
        alpha: float = 1.0,
        rho: float | None = None,
        input_shape: tuple | None = None,
        depth_multiplier: int = 1,
        min_depth: int = 8,
        output_stride: int = 32,
        variant: str = "separable",
        bn_momentum: float = 0.99,
        weight_decay: float = 0.0,
        folded_batch_norm: bool = False,
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_positive("alpha", alpha)
        if isinstance(min_depth, int) and min_depth >= 1 and alpha * 1024 < min_depth:
            # Below min_depth / 1024 every layer sits at the min_depth floor: the
            # network no longer depends on alpha (alpha=1e-9 would still build).
            raise ValueError(
                f"`alpha`={alpha!r} is below min_depth / 1024 = {min_depth / 1024:.4g}: every "
                f"layer would have min_depth={min_depth} channels whatever alpha is. The paper's "
                "smallest is 0.25; use alpha >= that floor (or lower min_depth)."
            )
        if (
            isinstance(depth_multiplier, bool)
            or not isinstance(depth_multiplier, int)
            or depth_multiplier < 1
        ):
            raise ValueError(
                f"`depth_multiplier` (depthwise channel multiplier) must be an int "
                f">= 1, got {depth_multiplier!r}."
            )
        if isinstance(min_depth, bool) or not isinstance(min_depth, int) or min_depth < 1:
            raise ValueError(f"`min_depth` must be an int >= 1, got {min_depth!r}.")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"`output_stride` must be one of {OUTPUT_STRIDES}, got {output_stride!r}."
            )
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}.")
        shape = resolve_input_shape(rho, input_shape)
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}.")
        # slim.l2_regularizer(wd) = wd * sum(k^2) / 2 = keras L2(wd / 2).
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None

        def bn_relu(x, name):
            x = batch_norm(x, f"{name}_bn", folded_batch_norm, bn_momentum)
            return layers.ReLU(6.0, name=f"{name}_relu")(x)

        # Folded: convs carry the bias of the BatchNorm they absorbed (fold.py).
        Conv = FoldedConv2D if folded_batch_norm else layers.Conv2D
        DepthwiseConv = FoldedDepthwiseConv2D if folded_batch_norm else layers.DepthwiseConv2D
        inputs = keras.Input(shape=shape, name="images")
        endpoints: dict[str, Any] = {}
        pyramid: dict[str, Any] = {}
        # TF 'SAME' padding everywhere: identical to keras.applications'
        # ZeroPadding2D((0, 1), (0, 1)) + 'valid' at even sizes, and to TF-slim
        # at every size (odd sides pad (1, 1)).
        x = Conv(scaled_depth(STEM_FILTERS, alpha, min_depth), 3, strides=2, padding="same",
                 use_bias=folded_batch_norm, kernel_regularizer=regularizer, name="conv1")(inputs)
        x = endpoints["conv1"] = bn_relu(x, "conv1")
        current_stride, rate = 2, 1
        level = 1
        for block_id, (stride, filters) in enumerate(BLOCK_SPECS, start=1):
            if variant == "shallow" and block_id in SHALLOW_REMOVED_BLOCKS:
                continue
            if stride > 1:
                pyramid[f"P{level}"] = x
                level += 1
            # Atrous rule of TF-slim (mobilenet_v1_base): once the target stride
            # is reached, strides become 1 and the dilation rate grows instead.
            if current_stride == output_stride:
                layer_stride, layer_rate = 1, rate
                rate *= stride
            else:
                layer_stride, layer_rate = stride, 1
                current_stride *= stride
            out_depth = scaled_depth(filters, alpha, min_depth)
            if variant == "full":
                name = f"conv_full_{block_id}"
                x = Conv(out_depth, 3, strides=layer_stride, dilation_rate=layer_rate, padding="same",
                         use_bias=folded_batch_norm, kernel_regularizer=regularizer, name=name)(x)
                x = endpoints[name] = bn_relu(x, name)
                continue
            name = f"conv_dw_{block_id}"
            x = DepthwiseConv(3, strides=layer_stride, dilation_rate=layer_rate,
                              depth_multiplier=depth_multiplier, padding="same",
                              use_bias=folded_batch_norm, name=name)(x)
            x = endpoints[name] = bn_relu(x, name)
            name = f"conv_pw_{block_id}"
            x = Conv(
                out_depth, 1, use_bias=folded_batch_norm, kernel_regularizer=regularizer, name=name
            )(x)
            x = endpoints[name] = bn_relu(x, name)
        pyramid[f"P{level}"] = x

        kwargs.setdefault("name", f"mobilenet_v1_{alpha:g}")
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        self.alpha = alpha
        self.rho = rho
        self.depth_multiplier = depth_multiplier
        self.min_depth = min_depth
        self.output_stride = output_stride
        self.variant = variant
        self.bn_momentum = bn_momentum
        self.weight_decay = weight_decay
        self.folded_batch_norm = folded_batch_norm
        self._input_shape_arg = None if input_shape is None else tuple(input_shape)
        self.pyramid_outputs = pyramid
        self.feature_strides = {k: min(2 ** int(k[1:]), output_stride) for k in pyramid}
        self.feature_channels = {k: int(v.shape[-1]) for k, v in pyramid.items()}
        self.endpoints = endpoints
        if weights is not None:
            if shape[-1] != 3:
                raise ValueError(
                    f"`weights`={weights!r} are for RGB input; `input_shape` has "
                    f"{shape[-1]} channels. Use weights=None for other inputs."
                )
            presets.load_into(self, weights)

    @classmethod
    def from_preset(
        cls, preset: str, input_shape: tuple | None = None, **kwargs: Any
    ) -> MobileNetBackbone:
        """Builds the preset's architecture and loads its weights.

        Args:
            preset: a name from ``mobilenet_zoo.presets.list_presets()``.
            input_shape: any ``(H, W, 3)`` (default: the preset's training size);
                the network is fully convolutional.
            **kwargs: other constructor arguments (``output_stride``, ``name``).

        Example:

        ```python
        backbone = MobileNetBackbone.from_preset(
            "mobilenet_v1_1.0_224_imagenet", input_shape=(None, None, 3))
        ```
        """
        check_known_kwargs(cls, kwargs, "from_preset", skip=("weights", "alpha"))
        meta = presets.installed_preset(preset)
        size = meta["input_size"]
        config = {
            "alpha": meta["alpha"],
            "input_shape": input_shape or (size, size, 3),
            "depth_multiplier": meta.get("depth_multiplier", 1),
            "min_depth": meta.get("min_depth", 8),
            "variant": meta.get("variant", "separable"),
        }
        return cls(**{**config, **kwargs}, weights=preset)

    def with_input_shape(self, input_shape: tuple, copy_weights: bool = True) -> MobileNetBackbone:
        """The same backbone built for another ``input_shape`` (weights copied).

        Returns ``self`` when the shape already matches. The network is fully
        convolutional, so every weight fits.
        """
        input_shape = tuple(input_shape)
        if tuple(self.inputs[0].shape[1:]) == input_shape:
            return self
        config = dict(self.get_config(), input_shape=input_shape, rho=None)
        rebuilt = type(self).from_config(config)
        if copy_weights:
            rebuilt.set_weights(self.get_weights())
        return rebuilt

    def freeze_until(self, level: str | None) -> list[str]:
        """Freezes every layer up to and including pyramid ``level`` (``"P1"``...``"P5"``).

        Frozen BatchNorm layers run in inference mode (their moving statistics),
        as Keras does for non-trainable BatchNorm. ``None`` unfreezes everything.
        Fine-tuning a pretrained backbone with the high-resolution layers frozen
        (``"P3"``: stride 8 and below) saves most of the backward pass: 1.75x
        faster SSD 300 training steps on a 2-core CPU. Returns the frozen names.
        """
        for layer in self.layers:
            layer.trainable = True
        if level is None:
            return []
        if level not in self.pyramid_outputs:
            raise ValueError(f"`level` must be None or one of {sorted(self.pyramid_outputs)}, got {level!r}.")
        last = self.pyramid_outputs[level]._keras_history.operation
        frozen = []
        for layer in self.layers:
            layer.trainable = False
            frozen.append(layer.name)
            if layer is last:
                break
        return frozen

    @property
    def pyramid_level_inputs(self) -> dict[str, str]:
        """keras-cv's convention: the layer name behind each pyramid level.

        Lets keras-cv heads (``keras_cv.models.RetinaNet``) take this backbone.
        """
        return {
            level: tensor._keras_history.operation.name
            for level, tensor in self.pyramid_outputs.items()
        }

    @property
    def out_channels(self) -> int:
        """Channels of the last feature map."""
        return int(self.outputs[0].shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "alpha": self.alpha,
            "rho": self.rho,
            "input_shape": self._input_shape_arg,
            "depth_multiplier": self.depth_multiplier,
            "min_depth": self.min_depth,
            "output_stride": self.output_stride,
            "variant": self.variant,
            "bn_momentum": self.bn_momentum,
            "weight_decay": self.weight_decay,
            "folded_batch_norm": self.folded_batch_norm,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MobileNetBackbone:
        config = dict(config)
        if config.get("input_shape") is not None:
            config["input_shape"] = tuple(config["input_shape"])
        return cls(**config)


# What a task head may read from its backbone (documented attributes, no defaults).
BACKBONE_CONTRACT = (
    "alpha", "output_stride", "weight_decay", "pyramid_outputs", "feature_strides",
    "feature_channels", "with_input_shape", "folded_batch_norm",
)  # fmt: skip


def check_backbone(
    backbone: Any, task: str, levels: tuple[str, ...] = (), strides: dict[str, int] | None = None
) -> None:
    """ValueError unless ``backbone`` honours the backbone contract.

    Args:
        backbone: the object given to a task model.
        task: the task's name, for the message.
        levels: pyramid levels the head reads (``"P4"``, ``"P5"``...).
        strides: the stride each of those levels must have (``{"P4": 16}``).
    """
    missing = [a for a in BACKBONE_CONTRACT if not hasattr(backbone, a)]
    if not isinstance(backbone, keras.Model) or missing:
        raise ValueError(
            f"{task} needs a MobileNetBackbone (or a keras.Model with the attributes "
            f"{BACKBONE_CONTRACT}); got {type(backbone).__name__}"
            + (f" without {missing}." if missing else ".")
        )
    absent = [lv for lv in levels if lv not in backbone.pyramid_outputs]
    if absent:
        raise ValueError(
            f"{task} reads pyramid levels {list(levels)}; the backbone has "
            f"{sorted(backbone.pyramid_outputs)} (missing {absent})."
        )
    for level, stride in (strides or {}).items():
        if backbone.feature_strides[level] != stride:
            raise ValueError(
                f"{task} needs level {level} at stride {stride}; the backbone has it at stride "
                f"{backbone.feature_strides[level]} (output_stride={backbone.output_stride}). "
                "Build the backbone with output_stride=32."
            )
