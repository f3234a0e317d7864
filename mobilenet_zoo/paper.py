"""The paper's published numbers, as data (no model code, no TensorFlow).

Howard et al. 2017 (arXiv 1704.04861) Tables 4-7, 9 and 13, and the TF-slim
release table (``research/slim/nets/mobilenet_v1.md``, 2018-02-22
checkpoints). ``mobilenet_zoo.complexity`` computes our counts beside them;
recipes write the relevant row next to their measurement in results.json.
"""

from __future__ import annotations

from typing import Any

# Each row: label, builder kwargs, published top-1, mult-adds (M), params (M).

RHO_BY_SIZE = {224: 1.0, 192: 0.857, 160: 0.714, 128: 0.571}


def _row(label, top1, madds, params, alpha=1.0, size=224, variant="separable", note=""):
    return {
        "label": label,
        "alpha": alpha,
        "size": size,
        "variant": variant,
        "top1": top1,
        "published_mult_adds_m": madds,
        "published_params_m": params,
        "note": note,
    }


PAPER_TABLES: dict[str, dict[str, Any]] = {
    "4": {
        "title": "Table 4: depthwise separable vs full convolutions",
        "rows": [
            _row("Conv MobileNet", 71.7, 4866, 29.3, variant="full"),
            _row("MobileNet", 70.6, 569, 4.2),
        ],
    },
    "5": {
        "title": "Table 5: narrow vs shallow",
        "rows": [
            _row("0.75 MobileNet", 68.4, 325, 2.6, alpha=0.75),
            _row("Shallow MobileNet", 65.3, 307, 2.9, variant="shallow"),
        ],
    },
    "6": {
        "title": "Table 6: width multiplier",
        "rows": [
            _row("1.0 MobileNet-224", 70.6, 569, 4.2),
            _row("0.75 MobileNet-224", 68.4, 325, 2.6, alpha=0.75),
            _row("0.5 MobileNet-224", 63.7, 149, 1.3, alpha=0.5),
            _row("0.25 MobileNet-224", 50.6, 41, 0.5, alpha=0.25),
        ],
    },
    "7": {
        "title": "Table 7: resolution multiplier",
        "rows": [
            _row("1.0 MobileNet-224", 70.6, 569, 4.2),
            _row("1.0 MobileNet-192", 69.1, 418, 4.2, size=192),
            _row("1.0 MobileNet-160", 67.2, 290, 4.2, size=160),
            _row("1.0 MobileNet-128", 64.4, 186, 4.2, size=128),
        ],
    },
    "9": {
        "title": "Table 9: smaller MobileNet",
        "rows": [_row("0.50 MobileNet-160", 60.2, 76, 1.32, alpha=0.5, size=160)],
    },
}

# TF-slim release: (alpha, size) -> (mult-adds M, top-1, top-5); params per alpha.
SLIM_PARAMS_M = {1.0: 4.24, 0.75: 2.59, 0.5: 1.34, 0.25: 0.47}
SLIM_TABLE = {
    (1.0, 224): (569, 70.9, 89.9), (1.0, 192): (418, 70.0, 89.2),
    (1.0, 160): (291, 68.0, 87.7), (1.0, 128): (186, 65.2, 85.8),
    (0.75, 224): (317, 68.4, 88.2), (0.75, 192): (233, 67.2, 87.3),
    (0.75, 160): (162, 65.3, 86.0), (0.75, 128): (104, 62.1, 83.9),
    (0.5, 224): (150, 63.3, 84.9), (0.5, 192): (110, 61.7, 83.6),
    (0.5, 160): (77, 59.1, 81.9), (0.5, 128): (49, 56.3, 79.4),
    (0.25, 224): (41, 49.8, 74.2), (0.25, 192): (34, 47.7, 72.3),
    (0.25, 160): (21, 45.5, 70.3), (0.25, 128): (14, 41.5, 66.3),
}  # fmt: skip
_SLIM_075_NOTE = (
    "TF-slim's four 0.75 rows are all 2.6-2.7% below the count of the architecture "
    "they describe (int(f * 0.75) channels: 24, 48, ..., 768), while the paper's "
    "Table 6 prints 325M for 0.75 MobileNet-224, which this same count matches "
    "within 0.2%. The release table disagrees with the paper; we keep the count."
)
SLIM_NOTES = {
    (0.75, 224): _SLIM_075_NOTE,
    (0.75, 192): _SLIM_075_NOTE,
    (0.75, 160): _SLIM_075_NOTE,
    (0.75, 128): _SLIM_075_NOTE,
    (0.25, 192): (
        "TF-slim lists 34M for 0.25-192, more than its own 0.25-224 (41M) scaled by "
        "(192/224)^2 = 30.1M; the 160 and 128 rows (21M, 14M) follow that scaling and "
        "match our count. The 34M entry disagrees with the architecture."
    ),
}


# Table 13 (COCO detection, minival mAP %, billion mult-adds, million params).
TABLE_13: dict[str, dict[str, float]] = {
    "SSD 300 MobileNet": {"mAP": 19.3, "billion_mult_adds": 1.2, "million_params": 6.8},
    "Faster-RCNN 300 MobileNet": {"mAP": 16.4, "billion_mult_adds": 25.2, "million_params": 6.1},
    "Faster-RCNN 600 MobileNet": {"mAP": 19.8, "billion_mult_adds": 30.5, "million_params": 6.1},
}
