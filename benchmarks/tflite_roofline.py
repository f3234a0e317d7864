"""TFLite float and int8 latency against the physical limit of this CPU.

The limit: the measured peak multiply-add rate of the machine, from large
square matrix products (N^3 multiply-adds each) in the same process, float32
through TensorFlow's (oneDNN) matmul and int8 through a TFLite fully-connected
int8 model (the same kernels family the int8 convs use, XNNPACK where the CPU
has VNNI). Each model's efficiency is
``(mult-adds / latency) / peak`` -- 1.0 would be a model that keeps every
multiplier busy all the time.

Run: ``python benchmarks/tflite_roofline.py [--repeats N] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from common import median_seconds
from mobilenet_zoo import SSD, MobileNetBackbone, MobileNetClassifier
from mobilenet_zoo.complexity import profile
from mobilenet_zoo.export import TFLiteRunner, to_tflite


def peak_float32_madds(repeats: int, n: int = 2048) -> float:
    """Multiply-adds per second of an n x n float32 matmul (TensorFlow, all cores)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    seconds = median_seconds(lambda: matmul().numpy(), repeats=repeats)
    return n**3 / seconds


def _dense_tflite(n: int, rows: int, int8: bool, threads: int) -> TFLiteRunner:
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input(batch_shape=(rows, n)), keras.layers.Dense(n, use_bias=False)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        rng = np.random.default_rng(0)
        converter.representative_dataset = lambda: ([rng.normal(size=(rows, n)).astype("float32")]
                                                    for _ in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return TFLiteRunner(converter.convert(), num_threads=threads)


def peak_tflite_madds(repeats: int, threads: int, int8: bool, n: int = 1024, rows: int = 256) -> float:
    """Multiply-adds per second of a TFLite (rows x n) @ (n x n) fully-connected op."""
    runner = _dense_tflite(n, rows, int8, threads)
    x = np.random.default_rng(0).normal(size=(rows, n)).astype("float32")
    return rows * n * n / median_seconds(lambda: runner(x), repeats=repeats)


def run(repeats: int, threads: int) -> dict:
    peaks = {
        "tf_float32_matmul": peak_float32_madds(repeats),
        "tflite_float32_fc": peak_tflite_madds(repeats, threads, int8=False),
        "tflite_int8_fc": peak_tflite_madds(repeats, threads, int8=True),
    }
    print(json.dumps({"peak_gmadds_per_s": {k: round(v / 1e9, 1) for k, v in peaks.items()}}),
          flush=True)
    rng = np.random.default_rng(0)
    models = {
        "classifier_1.0_224": (MobileNetClassifier(MobileNetBackbone(alpha=1.0), include_preprocessing=True),
                               (224, 224)),
        "ssd300_1.0": (SSD(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=80), (300, 300)),
    }
    rows = []
    for name, (model, (h, w)) in models.items():
        madds = profile(model).mult_adds
        x = rng.uniform(0, 255, (1, h, w, 3)).astype("float32")
        reps = [rng.uniform(0, 255, (1, h, w, 3)).astype("float32") for _ in range(8)]
        for quantize in (None, "int8"):
            flat = to_tflite(model, quantize=quantize,
                             representative_data=reps if quantize else None)
            runner = TFLiteRunner(flat, num_threads=threads)
            seconds = median_seconds(lambda r=runner: r(x), repeats=repeats)
            peak = peaks["tflite_int8_fc" if quantize else "tflite_float32_fc"]
            rows.append({
                "model": name, "precision": quantize or "float32", "mult_adds_m": round(madds / 1e6),
                "latency_ms": round(1e3 * seconds, 2),
                "achieved_gmadds_per_s": round(madds / seconds / 1e9, 1),
                "peak_gmadds_per_s": round(peak / 1e9, 1),
                "fraction_of_peak": round(madds / seconds / peak, 3),
            })
            print(json.dumps(rows[-1]), flush=True)
    return {"peaks": peaks, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    result = run(args.repeats, args.threads)
    print("\n| model | precision | M mult-adds | latency ms | achieved GMAC/s | peak GMAC/s | of peak |")
    print("|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['model']} | {r['precision']} | {r['mult_adds_m']} | {r['latency_ms']} | "
              f"{r['achieved_gmadds_per_s']} | {r['peak_gmadds_per_s']} | {r['fraction_of_peak']:.1%} |")


if __name__ == "__main__":
    main()
