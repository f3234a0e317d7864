"""Anchors exactly as the TF Object Detection API builds them.

``SSDAnchorGenerator``: ``ssd_anchor_generator`` (SSD, several maps);
``GridAnchorGenerator``: ``grid_anchor_generator`` (Faster R-CNN's RPN, one map).

SSD anchors:

Defaults from the TF OD API's ``ssd_mobilenet_v1_coco.config``:
6 layers, scales linearly spaced in [0.2, 0.95], aspect ratios 1, 2, 1/2, 3,
1/3, one extra box of scale sqrt(s_i * s_{i+1}) at ratio 1, and the lowest
layer reduced to 3 boxes. Boxes are normalised ``[ymin, xmin, ymax, xmax]``,
centres at ``(i + 0.5) / grid``, not clipped; order: row-major over the grid
(y, then x), then the box specs of the cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from mobilenet_zoo.utils import ConfigMixin

# Order of the interpolated (sqrt(s * s')) box within a cell's specs.
ORDERS = ("current", "2017")


def feature_map_sizes(image_size: int | tuple[int, int], num_layers: int = 6) -> list[tuple[int, int]]:
    """Grid sizes of the SSD-MobileNet feature maps for an input size.

    conv_pw_11 is at stride 16 and conv_pw_13 at stride 32 ('SAME' padding:
    ceil); each extra layer is a stride-2 'SAME' conv. 300 -> 19, 10, 5, 3, 2, 1.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    sizes = [(math.ceil(h / 16), math.ceil(w / 16)), (math.ceil(h / 32), math.ceil(w / 32))]
    while len(sizes) < num_layers:
        ph, pw = sizes[-1]
        sizes.append((math.ceil(ph / 2), math.ceil(pw / 2)))
    return sizes[:num_layers]


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class SSDAnchorGenerator(ConfigMixin):
    """Anchor boxes of ``ssd_anchor_generator`` + ``MultipleGridAnchorGenerator``.

    Args:
        num_layers: feature maps (6 in SSD-MobileNet).
        min_scale / max_scale: anchor scale of the lowest / highest layer,
            linearly spaced in between (SSD paper eq. 4; config 0.2 / 0.95).
        aspect_ratios: width / height ratios of each cell's boxes.
        interpolated_scale_aspect_ratio: ratio of the extra box of scale
            sqrt(s_i * s_{i+1}); 0 disables it (config: 1.0).
        reduce_boxes_in_lowest_layer: the lowest layer has only (0.1, 1),
            (s, 2), (s, 1/2) (config: true).
        order: ``"current"`` (TF OD API today: the interpolated box last) or
            ``"2017"`` (right after ratio 1, as in 2017 model-zoo checkpoints
            and models trained from them; the box predictor's channels follow it).

    Example:

    ```python
    anchors = SSDAnchorGenerator()(300)   # (1917, 4) normalised yxyx
    ```
    """

    def __init__(
        self,
        num_layers: int = 6,
        min_scale: float = 0.2,
        max_scale: float = 0.95,
        aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0),
        interpolated_scale_aspect_ratio: float = 1.0,
        reduce_boxes_in_lowest_layer: bool = True,
        order: str = "current",
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"`num_layers` must be >= 1, got {num_layers}.")
        if not 0 < min_scale <= max_scale:
            raise ValueError(
                f"Need 0 < min_scale <= max_scale, got min_scale={min_scale}, "
                f"max_scale={max_scale}."
            )
        if not aspect_ratios or any(r <= 0 for r in aspect_ratios):
            raise ValueError(f"`aspect_ratios` must be positive numbers, got {aspect_ratios}.")
        if order not in ORDERS:
            raise ValueError(f"`order` must be one of {ORDERS}, got {order!r}.")
        self.num_layers = num_layers
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.interpolated_scale_aspect_ratio = interpolated_scale_aspect_ratio
        self.reduce_boxes_in_lowest_layer = reduce_boxes_in_lowest_layer
        self.order = order

    def box_specs(self) -> list[list[tuple[float, float]]]:
        """Per layer, the (scale, aspect ratio) of each box of a cell."""
        n = self.num_layers
        if n == 1:
            scales = [self.min_scale]
        else:
            scales = [
                self.min_scale + (self.max_scale - self.min_scale) * i / (n - 1) for i in range(n)
            ]
        scales.append(1.0)
        specs = []
        for layer in range(n):
            scale, scale_next = scales[layer], scales[layer + 1]
            if layer == 0 and self.reduce_boxes_in_lowest_layer:
                specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
                continue
            interp = (math.sqrt(scale * scale_next), self.interpolated_scale_aspect_ratio)
            layer_specs = []
            for ratio in self.aspect_ratios:
                layer_specs.append((scale, ratio))
                if self.order == "2017" and ratio == 1.0 and interp[1] > 0:
                    layer_specs.append(interp)
            if self.order == "current" and interp[1] > 0:
                layer_specs.append(interp)
            specs.append(layer_specs)
        return specs

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) for s in self.box_specs()]

    def __call__(self, image_size: int | tuple[int, int], grid_sizes=None) -> np.ndarray:
        """(N, 4) float32 anchors, normalised ``[ymin, xmin, ymax, xmax]``.

        Args:
            image_size: side or (height, width) of the input; non-square inputs
                shrink the base anchor on the long side as the TF OD API does.
            grid_sizes: feature map sizes; default ``feature_map_sizes(image_size)``.
        """
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        grids = grid_sizes or feature_map_sizes((h, w), self.num_layers)
        if len(grids) != self.num_layers:
            raise ValueError(f"Got {len(grids)} grid sizes for {self.num_layers} layers.")
        short = min(h, w)
        base_h, base_w = short / h, short / w
        out = []
        for (gh, gw), specs in zip(grids, self.box_specs()):
            scales = np.array([s for s, _ in specs])
            ratios = np.sqrt(np.array([r for _, r in specs]))
            heights = scales / ratios * base_h
            widths = scales * ratios * base_w
            yc = (np.arange(gh) + 0.5) / gh
            xc = (np.arange(gw) + 0.5) / gw
            yy, xx = np.meshgrid(yc, xc, indexing="ij")  # (gh, gw)
            cy = np.repeat(yy.reshape(-1, 1), len(specs), 1)
            cx = np.repeat(xx.reshape(-1, 1), len(specs), 1)
            hh = np.broadcast_to(heights, cy.shape)
            ww = np.broadcast_to(widths, cx.shape)
            boxes = np.stack([cy - hh / 2, cx - ww / 2, cy + hh / 2, cx + ww / 2], -1)
            out.append(boxes.reshape(-1, 4))
        return np.concatenate(out).astype(np.float32)

    def get_config(self) -> dict:
        return {
            "num_layers": self.num_layers,
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "aspect_ratios": list(self.aspect_ratios),
            "interpolated_scale_aspect_ratio": self.interpolated_scale_aspect_ratio,
            "reduce_boxes_in_lowest_layer": self.reduce_boxes_in_lowest_layer,
            "order": self.order,
        }


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class GridAnchorGenerator(ConfigMixin):
    """The TF OD API's ``grid_anchor_generator`` (one feature map; Faster R-CNN's RPN).

    Anchor ``k`` of a cell has aspect ratio ``aspect_ratios[k // len(scales)]`` and
    scale ``scales[k % len(scales)]``: height ``scale * base / sqrt(ratio)``, width
    ``scale * base * sqrt(ratio)`` pixels, centred at ``(i * stride + offset,
    j * stride + offset)``. Boxes are returned normalised by the image size
    (``[ymin, xmin, ymax, xmax]``), row-major over the grid, then the anchors.

    Args:
        scales: anchor scales (config: 0.25, 0.5, 1.0, 2.0).
        aspect_ratios: width / height (config: 0.5, 1.0, 2.0).
        base_anchor_size: pixels of scale 1 (grid_anchor_generator default 256).
        stride: pixels between anchor centres (config: 16).
        offset: pixels of the first centre (grid_anchor_generator default 0).

    Example:

    ```python
    anchors = GridAnchorGenerator()((300, 300), (19, 19))   # (4332, 4)
    ```
    """

    def __init__(self, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), base_anchor_size: float = 256.0,
                 stride: int = 16, offset: float = 0.0) -> None:
        if not scales or not aspect_ratios or min(scales) <= 0 or min(aspect_ratios) <= 0:
            raise ValueError(f"`scales` and `aspect_ratios` must be non-empty and positive, got "
                             f"{scales} and {aspect_ratios}.")
        if base_anchor_size <= 0 or stride < 1:
            raise ValueError(f"`base_anchor_size` must be > 0 and `stride` >= 1, got "
                             f"{base_anchor_size} and {stride}.")
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.base_anchor_size = float(base_anchor_size)
        self.stride = int(stride)
        self.offset = float(offset)

    def num_anchors_per_location(self) -> int:
        return len(self.scales) * len(self.aspect_ratios)

    def sizes(self) -> np.ndarray:
        """(A, 2) anchor (height, width) in pixels, in the cell's order."""
        ratios, scales = np.meshgrid(self.aspect_ratios, self.scales, indexing="ij")
        ratios, scales = ratios.ravel(), scales.ravel()
        return np.stack([scales / np.sqrt(ratios), scales * np.sqrt(ratios)], -1) * self.base_anchor_size

    def __call__(self, image_size: int | Sequence[int], grid: Sequence[int]) -> np.ndarray:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        gh, gw = grid
        cy = np.arange(gh) * self.stride + self.offset
        cx = np.arange(gw) * self.stride + self.offset
        cy, cx = np.meshgrid(cy, cx, indexing="ij")
        centres = np.stack([cy, cx], -1)[:, :, None, :]  # (gh, gw, 1, 2)
        half = self.sizes()[None, None] / 2.0  # (1, 1, A, 2)
        boxes = np.concatenate([centres - half, centres + half], -1).reshape(-1, 4)
        return (boxes / np.array([h, w, h, w], np.float64)).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "aspect_ratios": list(self.aspect_ratios),
                "base_anchor_size": self.base_anchor_size, "stride": self.stride, "offset": self.offset}
