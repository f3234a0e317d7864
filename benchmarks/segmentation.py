"""DeepLabV3+ on MobileNet: ours vs keras-cv's DeepLabV3Plus, same backbone and size.

One process, MobileNet v1 alpha 1.0 at output stride 32 feeding both heads
(keras-cv's DeepLabV3Plus assumes P5 at stride 32; both use ASPP rates 6/12/18),
224x224 inputs, 21 classes: training images/s (one optimizer step on a fixed
batch of 8) and inference latency (batch 1, graph mode). Ratios: ours / theirs
for throughput, theirs / ours for latency (higher is better for us).

Run: ``python benchmarks/segmentation.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import json

import keras
import numpy as np

from common import compiled_forward, median_seconds
from mobilenet_zoo import MobileNetBackbone
from mobilenet_zoo.segmentation import DeepLabV3, segmentation_loss

SIZE, BATCH, CLASSES = 224, 8, 21


def run(repeats: int) -> dict:
    import keras_cv

    def backbone():
        return MobileNetBackbone(output_stride=32, input_shape=(SIZE, SIZE, 3))

    ours = DeepLabV3(backbone(), CLASSES, aspp_rates=(6, 12, 18), use_decoder=True,
                     include_preprocessing=False)
    theirs = keras_cv.models.DeepLabV3Plus(backbone=backbone(), num_classes=CLASSES)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, CLASSES, (BATCH, SIZE, SIZE, 1))
    out = {}
    for name, model in (("ours", ours), ("keras_cv", theirs)):
        model.compile(keras.optimizers.Adam(1e-4), segmentation_loss() if name == "ours" else
                      keras.losses.SparseCategoricalCrossentropy(from_logits=False))
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        step = median_seconds(lambda m=model: m.train_on_batch(x, y), warmup=2, repeats=repeats)
        forward = compiled_forward(model)
        latency = median_seconds(lambda f=forward: f(x[:1]).numpy(), repeats=repeats * 3)
        out[name] = {"train_img_s": round(BATCH / step, 2), "latency_ms": round(1e3 * latency, 1),
                     "params_m": round(model.count_params() / 1e6, 2)}
    out["ratio"] = {
        "train": round(out["ours"]["train_img_s"] / out["keras_cv"]["train_img_s"], 3),
        "latency": round(out["keras_cv"]["latency_ms"] / out["ours"]["latency_ms"], 3),
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    r = run(parser.parse_args().repeats)
    print("\n| measure | DeepLabV3+ (ours) | keras-cv DeepLabV3Plus | ratio |")
    print("|---|---|---|---|")
    print(f"| training img/s (batch {BATCH}) | {r['ours']['train_img_s']} | {r['keras_cv']['train_img_s']} | {r['ratio']['train']} |")
    print(f"| inference latency ms (batch 1) | {r['ours']['latency_ms']} | {r['keras_cv']['latency_ms']} | {r['ratio']['latency']} |")
    print(f"| params (M) | {r['ours']['params_m']} | {r['keras_cv']['params_m']} | |")


if __name__ == "__main__":
    main()
