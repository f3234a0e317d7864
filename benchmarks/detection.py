"""SSD-MobileNet vs keras-cv RetinaNet on the same MobileNet backbone, and TFLite latency.

Same process, same backbone (alpha 1.0), same input size (320), same batch:
training images/s (one optimizer step on a fixed batch) and inference latency
(batch 1, graph mode, raw head outputs). Ratios are ours / theirs for
throughput (higher is better) and theirs / ours for latency (higher is better).
Then SSD 300 with BatchNorm folded against the same SSD unfolded (raw
outputs, graph mode, batch 1 and 8; target >= 1.3x), and the float TFLite
latency of SSD 300 at alpha 1.0 and 0.5 (2 threads, decoding and NMS included).

Faster R-CNN 300 against SSD 300 on the same backbone (alpha 1.0, ImageNet-free
random init, 80 classes): training images/s (TF OD API sampling: 64 proposals per
image), inference latency at batch 1 (raw outputs: 300 proposals through the
second stage) and mult-adds (``complexity.profile``).

Run: ``python benchmarks/detection.py [--repeats N] [--part all|vs_retinanet|folded|tflite|faster_rcnn]``
"""

from __future__ import annotations

import argparse
import json

import keras
import numpy as np

from common import compiled_forward, interleaved_medians, median_seconds
from mobilenet_zoo import MobileNetBackbone, fold_batch_norm
from mobilenet_zoo.complexity import profile
from mobilenet_zoo.detection import SSD, FasterRCNN
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.testing import randomize_batch_norm

# keras-cv's RetinaNet FPN needs sides divisible by 32 (300 fails), so the
# head-to-head runs both at 320; the TFLite latency is for SSD 300.
SIZE, BATCH, CLASSES = 320, 8, 80


def _batch(fmt):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")
    boxes = np.full((BATCH, 10, 4), -1, "float32")
    classes = np.full((BATCH, 10), -1, "float32")
    for i in range(BATCH):
        for j in range(3):
            y0, x0 = rng.uniform(0, 0.6, 2)
            boxes[i, j] = [y0, x0, y0 + 0.3, x0 + 0.3]
            classes[i, j] = rng.integers(CLASSES)
    if fmt != "rel_yxyx":
        conv = keras.ops.convert_to_numpy(keras.utils.bounding_boxes.convert_format(
            boxes, source="rel_yxyx", target=fmt, height=SIZE, width=SIZE))
        boxes = np.where(classes[..., None] >= 0, conv, -1).astype("float32")
    return x, {"boxes": boxes, "classes": classes}


def _train_step_seconds(model, x, y, repeats):
    """Seconds per optimizer step, measured with fit over a repeated batch."""
    import time

    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # build + trace
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=repeats, epochs=1, verbose=0)
    return (time.perf_counter() - start) / repeats


def folded_rows(repeats: int) -> dict:
    """SSD 300 (alpha 1.0) folded vs as built: images/s of the raw forward pass."""
    model = SSD(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=CLASSES, image_size=300)
    randomize_batch_norm(model)
    folded = fold_batch_norm(model)
    f_model, f_folded = compiled_forward(model), compiled_forward(folded)
    out = {}
    for batch in (1, 8):
        x = np.random.default_rng(0).uniform(0, 255, (batch, 300, 300, 3)).astype("float32")
        t = interleaved_medians({
            "model": lambda: [v.numpy() for v in f_model(x).values()],
            "folded": lambda: [v.numpy() for v in f_folded(x).values()],
        }, repeats=repeats)
        t_model, t_folded = t["model"], t["folded"]
        diff = float(np.abs(f_model(x)["classes"].numpy() - f_folded(x)["classes"].numpy()).max())
        out[f"batch_{batch}"] = {"unfolded_img_s": round(batch / t_model, 1),
                                 "folded_img_s": round(batch / t_folded, 1),
                                 "ratio": round(t_model / t_folded, 3), "max_abs_diff": diff}
    print(json.dumps({"ssd300_folded": out}), flush=True)
    return out


def tflite_rows(repeats: int) -> dict:
    lite = {}
    x300 = np.random.default_rng(0).uniform(0, 255, (1, 300, 300, 3)).astype("float32")
    for alpha in (1.0, 0.5):
        model = SSD(MobileNetBackbone(alpha=alpha, min_depth=16), num_classes=CLASSES, image_size=300)
        runner = TFLiteRunner(to_tflite(model), num_threads=2)
        lite[f"alpha_{alpha}"] = round(1e3 * median_seconds(lambda r=runner: r(x300), repeats=repeats * 3), 1)
    print(json.dumps({"tflite_ms_ssd300": lite}), flush=True)
    return lite


def faster_rcnn_rows(repeats: int) -> dict:
    """Faster R-CNN 300 vs SSD 300, same backbone, same batch, same process."""
    import tensorflow as tf

    global SIZE
    size, SIZE = SIZE, 300
    try:
        x, y = _batch("rel_yxyx")
    finally:
        SIZE = size
    models = {
        "ssd": SSD(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=CLASSES, image_size=300),
        "faster_rcnn": FasterRCNN(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=CLASSES,
                                  image_size=300),
    }
    rows: dict = {"train_img_s": {}, "latency_ms_batch1": {}, "billion_mult_adds": {}}
    for name, model in models.items():
        model.compile(keras.optimizers.SGD(1e-3, momentum=0.9))
        rows["train_img_s"][name] = round(BATCH / _train_step_seconds(model, x, y, max(2, repeats // 2)), 2)
        rows["billion_mult_adds"][name] = round(profile(model).mult_adds / 1e9, 2)
    forwards = {n: compiled_forward(m) for n, m in models.items()}
    x1 = tf.constant(x[:1])
    lat = interleaved_medians({n: (lambda f=f: [v.numpy() for v in f(x1).values()])
                               for n, f in forwards.items()}, repeats=repeats)
    rows["latency_ms_batch1"] = {n: round(1e3 * t, 1) for n, t in lat.items()}
    rows["ratios_frcnn_over_ssd"] = {
        "train_time": round(rows["train_img_s"]["ssd"] / rows["train_img_s"]["faster_rcnn"], 2),
        "latency": round(lat["faster_rcnn"] / lat["ssd"], 2),
        "mult_adds": round(rows["billion_mult_adds"]["faster_rcnn"] / rows["billion_mult_adds"]["ssd"], 2),
    }
    print(json.dumps({"faster_rcnn_vs_ssd": rows}), flush=True)
    return rows


def run(repeats: int) -> dict:
    import keras_cv

    ours = SSD(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=CLASSES, image_size=SIZE)
    ours.compile(keras.optimizers.RMSprop(0.004, rho=0.9, momentum=0.9, epsilon=1.0))
    theirs = keras_cv.models.RetinaNet(
        num_classes=CLASSES, bounding_box_format="rel_yxyx",
        backbone=MobileNetBackbone(alpha=1.0, min_depth=16, input_shape=(SIZE, SIZE, 3)),
    )
    theirs.compile(optimizer=keras.optimizers.RMSprop(0.004, rho=0.9, momentum=0.9, epsilon=1.0),
                   classification_loss="focal", box_loss="smoothl1")
    x, y = _batch("rel_yxyx")
    t_ours = _train_step_seconds(ours, x, y, repeats)
    t_theirs = _train_step_seconds(theirs, x, y, repeats)
    f_ours, f_theirs = compiled_forward(ours), compiled_forward(theirs)
    x1 = x[:1]
    l_ours = median_seconds(lambda: [v.numpy() for v in f_ours(x1).values()], repeats=repeats * 3)
    l_theirs = median_seconds(
        lambda: [v.numpy() for v in keras.tree.flatten(f_theirs(x1 / 127.5 - 1))], repeats=repeats * 3
    )
    rows = {
        "train_img_s": {"ssd": round(BATCH / t_ours, 2), "retinanet": round(BATCH / t_theirs, 2),
                        "ratio": round(t_theirs / t_ours, 3)},
        "latency_ms_batch1": {"ssd": round(1e3 * l_ours, 1), "retinanet": round(1e3 * l_theirs, 1),
                              "ratio": round(l_theirs / l_ours, 3)},
        "params_m": {"ssd": round(ours.count_params() / 1e6, 2),
                     "retinanet": round(theirs.count_params() / 1e6, 2)},
    }
    print(json.dumps(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--part", choices=["all", "vs_retinanet", "folded", "tflite", "faster_rcnn"],
                        default="all")
    args = parser.parse_args()
    if args.part in ("all", "faster_rcnn"):
        r = faster_rcnn_rows(args.repeats)
        print("\n| 300x300, alpha 1.0 | SSD | Faster R-CNN | Faster R-CNN / SSD |")
        print("|---|---|---|---|")
        print(f"| training img/s (batch {BATCH}) | {r['train_img_s']['ssd']} | {r['train_img_s']['faster_rcnn']} "
              f"| {r['ratios_frcnn_over_ssd']['train_time']}x the time |")
        print(f"| latency ms (batch 1) | {r['latency_ms_batch1']['ssd']} | {r['latency_ms_batch1']['faster_rcnn']} "
              f"| {r['ratios_frcnn_over_ssd']['latency']}x |")
        print(f"| billion mult-adds | {r['billion_mult_adds']['ssd']} | {r['billion_mult_adds']['faster_rcnn']} "
              f"| {r['ratios_frcnn_over_ssd']['mult_adds']}x |")
    if args.part in ("all", "folded"):
        f = folded_rows(args.repeats)
        print("\n| SSD 300 alpha 1.0 | unfolded img/s | folded img/s | ratio |")
        print("|---|---|---|---|")
        for k, v in f.items():
            print(f"| {k} | {v['unfolded_img_s']} | {v['folded_img_s']} | {v['ratio']} |")
    if args.part in ("all", "tflite"):
        lite = tflite_rows(args.repeats)
        print(f"\nTFLite float SSD 300, 2 threads, with NMS: alpha 1.0 {lite['alpha_1.0']} ms, "
              f"alpha 0.5 {lite['alpha_0.5']} ms")
    if args.part not in ("all", "vs_retinanet"):
        return
    r = run(args.repeats)
    print("\n| measure | SSD-MobileNet (ours) | keras-cv RetinaNet (same backbone) | ratio |")
    print("|---|---|---|---|")
    print(f"| training img/s (batch {BATCH}) | {r['train_img_s']['ssd']} | {r['train_img_s']['retinanet']} | {r['train_img_s']['ratio']} |")
    print(f"| inference latency ms (batch 1) | {r['latency_ms_batch1']['ssd']} | {r['latency_ms_batch1']['retinanet']} | {r['latency_ms_batch1']['ratio']} |")
    print(f"| params (M) | {r['params_m']['ssd']} | {r['params_m']['retinanet']} | |")


if __name__ == "__main__":
    main()
