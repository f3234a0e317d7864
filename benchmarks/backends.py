"""Training and inference speed of the same models on each Keras backend (TF, JAX, PyTorch).

One script, one subprocess per backend (Keras fixes its backend per interpreter), the same
models, batch and inputs: ``MobileNetClassifier`` (alpha 1.0, 224) and ``ssd_mobilenet_v1``
(300, 90 classes). Each measures ``predict_on_batch`` (SSD: decoded detections, NMS included)
and ``train_on_batch`` after warm-up (compilation excluded), median of ``--repeats`` calls,
and reports images/s with the ratio to TensorFlow's.

Run: ``python benchmarks/backends.py [--repeats N] [--batch B] [--backends tensorflow,jax,torch]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import functools, json, sys
import numpy as np
import keras
import common
from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, ssd_mobilenet_v1

batch, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
# two untimed calls first: tracing / compilation
median_seconds = functools.partial(common.median_seconds, warmup=2, repeats=repeats)


rows = {}
keras.utils.set_random_seed(0)
classifier = MobileNetClassifier(MobileNetBackbone(alpha=1.0), num_classes=1000)
classifier.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
x = rng.uniform(0, 255, (batch, 224, 224, 3)).astype("float32")
y = rng.integers(0, 1000, batch).astype("int32")
rows["classifier 1.0-224"] = {
    "predict": median_seconds(lambda: keras.ops.convert_to_numpy(classifier.predict_on_batch(x))),
    "train": median_seconds(lambda: classifier.train_on_batch(x, y)),
}
ssd = ssd_mobilenet_v1(num_classes=90)
ssd.compile(keras.optimizers.SGD(0.01))
x = rng.uniform(0, 255, (batch, 300, 300, 3)).astype("float32")
boxes = np.full((batch, 4, 4), -1, np.float32)
classes = np.full((batch, 4), -1, np.int32)
boxes[:, 0], classes[:, 0] = [0.1, 0.1, 0.6, 0.5], 3
boxes[:, 1], classes[:, 1] = [0.3, 0.4, 0.9, 0.9], 17
rows["ssd 300, 90 classes"] = {
    "predict": median_seconds(lambda: {k: keras.ops.convert_to_numpy(v)
                                       for k, v in ssd.predict_on_batch(x).items()}),
    "train": median_seconds(lambda: ssd.train_on_batch(x, {"boxes": boxes, "classes": classes})),
}
print(json.dumps({"backend": keras.backend.backend(), "rows": rows}))
"""


def measure(backend: str, batch: int, repeats: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, "-c", WORKER, str(batch), str(repeats)], env=env,
                          capture_output=True, text=True, cwd=os.path.dirname(__file__) or ".")
    if done.returncode:
        raise SystemExit(f"{backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    args = parser.parse_args()
    started = time.time()
    results = {b: measure(b, args.batch, args.repeats)["rows"] for b in args.backends.split(",")}
    base = results.get("tensorflow")
    print(f"batch {args.batch}, median of {args.repeats} calls, images/s (ratio to TensorFlow)")
    print("| model | step | " + " | ".join(results) + " |")
    print("|---|---|" + "---|" * len(results))
    for model in next(iter(results.values())):
        for step in ("predict", "train"):
            cells = []
            for rows in results.values():
                rate = args.batch / rows[model][step]
                ratio = base[model][step] / rows[model][step] if base else float("nan")
                cells.append(f"{rate:.1f} ({ratio:.2f}x)")
            print(f"| {model} | {step} | " + " | ".join(cells) + " |")
    print(f"({time.time() - started:.0f} s, median step seconds: "
          f"{json.dumps({b: r for b, r in results.items()})})")


if __name__ == "__main__":
    main()
