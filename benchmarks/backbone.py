"""Inference images/s: MobileNetClassifier vs keras.applications.MobileNet.

Same process, same input, same graph-mode call; the ratio is ours / theirs
(target >= 1.0). Run: ``python benchmarks/backbone.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json

import keras
import numpy as np

from common import compiled_forward, median_seconds
from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier


def run(repeats: int) -> list[dict]:
    rows = []
    for alpha in (1.0, 0.25):
        ours = MobileNetClassifier(MobileNetBackbone(alpha=alpha))
        theirs = keras.applications.MobileNet(weights=None, alpha=alpha)
        f_ours, f_theirs = compiled_forward(ours), compiled_forward(theirs)
        for batch in (1, 32):
            x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype("float32")
            t_ours = median_seconds(lambda: f_ours(x).numpy(), repeats=repeats)
            t_theirs = median_seconds(lambda: f_theirs(x).numpy(), repeats=repeats)
            rows.append(
                {
                    "alpha": alpha,
                    "batch": batch,
                    "ours_img_s": round(batch / t_ours, 1),
                    "keras_app_img_s": round(batch / t_theirs, 1),
                    "ratio": round(t_theirs / t_ours, 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = run(args.repeats)
    print("\n| alpha | batch | ours img/s | keras.applications img/s | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['alpha']} | {r['batch']} | {r['ours_img_s']} | {r['keras_app_img_s']} | {r['ratio']} |")


if __name__ == "__main__":
    main()
