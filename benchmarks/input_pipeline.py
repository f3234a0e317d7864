"""Does the classification input pipeline keep up with the model on this machine?

Times ``classification.preprocessor.pipeline`` (JPEG decode, random crop, flip, resize,
batch; parallel map, prefetch) over in-memory JPEGs of real photos, against the
training throughput of MobileNet 1.0-224 in the same process. A ratio
pipeline / model above 1 means the model, not the input, is the bottleneck.

Run: ``python benchmarks/input_pipeline.py``
"""

from __future__ import annotations

import io
import json
import time

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo.classification import preprocessor, trainer

BATCH, N = 32, 512


def jpeg_dataset() -> tf.data.Dataset:
    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    blobs = []
    for p in photos:
        buf = io.BytesIO()
        Image.fromarray(p).resize((400, 300)).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    data = tf.data.Dataset.from_tensor_slices((blobs * (N // len(blobs)), np.arange(N) % 1000))
    return data.map(lambda b, y: (tf.io.decode_jpeg(b, channels=3), y), num_parallel_calls=tf.data.AUTOTUNE)


def run() -> dict:
    ds = preprocessor.pipeline(jpeg_dataset(), 224, BATCH, training=True)
    for _ in ds.take(2):
        pass
    start = time.perf_counter()
    n = sum(int(x.shape[0]) for x, _ in ds)
    pipe = n / (time.perf_counter() - start)

    cfg = trainer.ClassificationConfig()
    model = trainer.build(cfg, 1000)
    trainer.compile_model(model, cfg, 100)
    x = np.random.default_rng(0).uniform(0, 255, (BATCH, 224, 224, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(BATCH) % 1000, 1000)
    fixed = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(fixed, steps_per_epoch=2, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(fixed, steps_per_epoch=6, epochs=1, verbose=0)
    train = 6 * BATCH / (time.perf_counter() - start)
    out = {"pipeline_img_s": round(pipe, 1), "model_train_img_s": round(train, 1),
           "ratio": round(pipe / train, 2)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    r = run()
    print(f"\npipeline {r['pipeline_img_s']} img/s vs MobileNet 1.0-224 training {r['model_train_img_s']} "
          f"img/s: ratio {r['ratio']} ({'keeps up' if r['ratio'] > 1 else 'input-bound'})")
