"""Inference images/s: MobileNetClassifier (as built and BatchNorm-folded) vs
keras.applications.MobileNet.

Same process, same input, same graph-mode call, random BatchNorm statistics
(so folding is not trivial); the ratios are ours / theirs (targets: >= 1.0 as
built, >= 1.5 folded). Run: ``python benchmarks/backbone.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json

import keras
import numpy as np

from common import compiled_forward, interleaved_medians
from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, fold_batch_norm
from mobilenet_zoo.testing import randomize_batch_norm


def run(repeats: int) -> list[dict]:
    rows = []
    for alpha in (1.0, 0.25):
        ours = MobileNetClassifier(MobileNetBackbone(alpha=alpha))
        randomize_batch_norm(ours)
        folded = fold_batch_norm(ours)
        theirs = keras.applications.MobileNet(weights=None, alpha=alpha)
        f_ours, f_theirs = compiled_forward(ours), compiled_forward(theirs)
        f_folded = compiled_forward(folded)
        for batch in (1, 32):
            x = np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype("float32")
            diff = float(np.abs(f_folded(x).numpy() - f_ours(x).numpy()).max())
            t = interleaved_medians({
                "ours": lambda: f_ours(x).numpy(),
                "theirs": lambda: f_theirs(x).numpy(),
                "folded": lambda: f_folded(x).numpy(),
            }, repeats=repeats)
            t_ours, t_theirs, t_folded = t["ours"], t["theirs"], t["folded"]
            rows.append(
                {
                    "alpha": alpha,
                    "batch": batch,
                    "ours_img_s": round(batch / t_ours, 1),
                    "folded_img_s": round(batch / t_folded, 1),
                    "keras_app_img_s": round(batch / t_theirs, 1),
                    "ratio": round(t_theirs / t_ours, 3),
                    "folded_ratio": round(t_theirs / t_folded, 3),
                    "folded_max_abs_diff": diff,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rows = run(args.repeats)
    print("\n| alpha | batch | keras.applications img/s | ours img/s (ratio) | ours folded img/s (ratio) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['alpha']} | {r['batch']} | {r['keras_app_img_s']} | {r['ours_img_s']} ({r['ratio']}x) "
              f"| {r['folded_img_s']} ({r['folded_ratio']}x) |")


if __name__ == "__main__":
    main()
