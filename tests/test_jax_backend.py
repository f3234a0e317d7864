"""The backbone, the classifier and the presets run on Keras' JAX backend with TF's outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys, numpy as np
import keras, mobilenet_zoo
from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, presets
from skimage import data
from PIL import Image
x = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224)), np.float32)[None]
probs = np.asarray(MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True)
                   .predict(x, verbose=0))
keras.utils.set_random_seed(0)
features = np.asarray(MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3), output_stride=16)
                      (np.full((1, 64, 64, 3), 0.5, np.float32)))
print(json.dumps({"backend": keras.backend.backend(), "probs": probs[0].tolist(),
                  "features_shape": list(features.shape)}))
"""


def _run(backend: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_preset_classifier_gives_the_same_probabilities_on_jax_and_tensorflow():
    pytest.importorskip("jax")  # installed by the test extra
    jax_out, tf_out = _run("jax"), _run("tensorflow")
    assert (jax_out["backend"], tf_out["backend"]) == ("jax", "tensorflow")
    np.testing.assert_allclose(jax_out["probs"], tf_out["probs"], atol=1e-5)
    assert int(np.argmax(jax_out["probs"])) == 285  # Egyptian cat, on both
    assert jax_out["features_shape"] == tf_out["features_shape"] == [1, 4, 4, 256]
