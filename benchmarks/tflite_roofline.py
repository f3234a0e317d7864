"""TFLite float and int8 latency against the physical limit of this CPU.

The limit: the measured peak multiply-add rate of the machine, from large
square matrix products (N^3 multiply-adds each) in the same process, float32
through TensorFlow's (oneDNN) matmul and int8 through a TFLite fully-connected
int8 model (the same kernels family the int8 convs use, XNNPACK where the CPU
has VNNI); the two TFLite peaks are measured again just before each model's files
are timed, and the fraction of peak uses those. Each model's efficiency is
``(mult-adds / latency) / peak`` -- 1.0 would be a model that keeps every
multiplier busy all the time.

SSDs are measured with the three post-processings of ``to_tflite``
(``builtin_nms``: one builtin NMS per class; ``detection_postprocess`` and
``detection_postprocess_fast``: the ``TFLite_Detection_PostProcess`` op of the TF OD
API exports, per-class or class-agnostic NMS) and as the network alone (``none``: the
raw box encodings and class logits, no score conversion or post-processing: the
ceiling of each file, and the cut that shows where the time goes), all timed in
turns (``steady_medians``). ``ssd300_coco90`` is a COCO-sized SSD 300 (90 classes)
with an untrained head (seeded: ``keras.utils.set_random_seed(0)``), where every
anchor passes the 1e-8 score threshold (the NMS worst case); ``face512`` is the
shipped pretrained face preset.

Run: ``python benchmarks/tflite_roofline.py [--repeats N] [--threads 2] [--models a,b]``
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
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.task import serving_function


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


def steady_medians(calls: dict, repeats: int, warmup: int = 3) -> dict:
    """Median seconds of each call in a loop, as a camera pipeline calls one model: the
    files take turns (drifts of a shared machine hit them alike), and in each turn a file
    runs once untimed before its timed call, so the threads of the file before it (XNNPACK's
    pthreadpool, the op's ruy pool, which spin after their work) have gone quiet."""
    import statistics
    import time

    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            call()
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) for key, t in times.items()}


MODELS = ("classifier_1.0_224", "ssd300_coco90", "face512")


def _model(name: str):
    import keras

    keras.utils.set_random_seed(0)  # the untrained heads: the same weights every run
    if name == "classifier_1.0_224":
        return MobileNetClassifier(MobileNetBackbone(alpha=1.0), include_preprocessing=True), (224, 224)
    if name == "ssd300_coco90":
        return SSD(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=90), (300, 300)
    if name == "face512":
        return SSD.from_preset("ssd_mobilenet_v1_face_512"), (512, 512)
    raise ValueError(f"unknown model {name!r}; known: {MODELS}")


def run(repeats: int, threads: int, models: tuple[str, ...] = MODELS) -> dict:
    peaks = {
        "tf_float32_matmul": peak_float32_madds(repeats),
        "tflite_float32_fc": peak_tflite_madds(repeats, threads, int8=False),
        "tflite_int8_fc": peak_tflite_madds(repeats, threads, int8=True),
    }
    print(json.dumps({"peak_gmadds_per_s": {k: round(v / 1e9, 1) for k, v in peaks.items()}}),
          flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for name in models:
        model, (h, w) = _model(name)
        madds = profile(model).mult_adds
        x = rng.uniform(0, 255, (1, h, w, 3)).astype("float32")
        reps = [rng.uniform(0, 255, (1, h, w, 3)).astype("float32") for _ in range(8)]
        posts = (("none", "builtin_nms", "detection_postprocess", "detection_postprocess_fast")
                 if isinstance(model, SSD) else (None,))
        runners = {}
        for quantize in (None, "int8"):
            for post in posts:
                data = reps if quantize else None
                if post == "none":  # the network alone: raw outputs, no post-processing
                    folded = fold_batch_norm(model)
                    flat = to_tflite(folded, quantize=quantize, metadata=False, fold=False,
                                     serving_function=serving_function(folded), representative_data=data)
                else:
                    flat = to_tflite(model, quantize=quantize, postprocess=post,
                                     representative_data=data)
                runners[(quantize, post)] = (TFLiteRunner(flat, num_threads=threads), len(flat))
        # The peaks again just before this model's files (warm, in a block), so that the
        # load of other jobs on a shared machine is that of the files' time.
        local_peaks = {q: peak_tflite_madds(repeats, threads, int8=bool(q)) for q in (None, "int8")}
        print(json.dumps({"model": name, "peak_gmadds_per_s_before": {
            q or "float32": round(v / 1e9, 1) for q, v in local_peaks.items()}}), flush=True)
        seconds = steady_medians({key: (lambda r=r: r(x)) for key, (r, _) in runners.items()},
                                 repeats=repeats)
        for (quantize, post), sec in seconds.items():
            peak = local_peaks[quantize]
            rows.append({
                "model": name, "precision": quantize or "float32", "postprocess": post or "-",
                "mult_adds_m": round(madds / 1e6), "file_mb": round(runners[(quantize, post)][1] / 2**20, 1),
                "latency_ms": round(1e3 * sec, 2),
                "achieved_gmadds_per_s": round(madds / sec / 1e9, 1),
                "peak_gmadds_per_s": round(peak / 1e9, 1),
                "fraction_of_peak": round(madds / sec / peak, 3),
            })
            print(json.dumps(rows[-1]), flush=True)
    return {"peaks": peaks, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)}")
    args = parser.parse_args()
    result = run(args.repeats, args.threads, tuple(m for m in args.models.split(",") if m))
    print("\n| model | precision | post-processing | M mult-adds | MB | latency ms | achieved GMAC/s "
          "| peak GMAC/s | of peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['model']} | {r['precision']} | {r['postprocess']} | {r['mult_adds_m']} | "
              f"{r['file_mb']} | {r['latency_ms']} | "
              f"{r['achieved_gmadds_per_s']} | {r['peak_gmadds_per_s']} | {r['fraction_of_peak']:.1%} |")


if __name__ == "__main__":
    main()
