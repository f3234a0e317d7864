"""Without TensorFlow, ``import mobilenet_zoo`` and its first name work, run after run, and the
package selects the installed backend (a quick check; tests/backends/test_backends.py runs the task
models there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "backend_check.py"


def _import_without_tensorflow(keras_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(keras_home)
    done = subprocess.run([sys.executable, str(SCRIPT), "import", "-", "--block-tensorflow"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_package_imports_without_tensorflow_on_every_run(tmp_path):
    pytest.importorskip("jax")  # in the test extra
    first = _import_without_tensorflow(tmp_path)
    # Keras wrote keras.json naming TensorFlow on its first start: the second run must
    # pass over it as the first did.
    assert json.loads((tmp_path / "keras.json").read_text())["backend"] == "tensorflow"
    second = _import_without_tensorflow(tmp_path)
    for report in (first, second):
        assert report == {"backend": "jax", "tensorflow_imported": False,
                          "public_names": report["public_names"]}
        assert {"MobileNetBackbone", "SSD", "FasterRCNN", "DeepLabV3"} <= set(report["public_names"])


def test_a_tensorflow_job_without_tensorflow_names_itself_and_the_fix():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, str(SCRIPT), "tf-job", "-", "--block-tensorflow"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout.strip().splitlines()[-1]
    assert said.startswith("TensorFlowRequiredError detection data (tf.data) needs TensorFlow"), said
    assert "pip install tensorflow" in said


FAILED_FIT = """
import numpy as np, keras, mobilenet_zoo
from mobilenet_zoo import SSD, MobileNetBackbone, MobileNetClassifier
keras.utils.set_random_seed(0)
m = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128)
m.compile(optimizer="adam")
x = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype("float32")
boxes = np.full((2, 4, 4), -1, np.float32)
boxes[:, 0] = [0.1, 0.1, 0.6, 0.6]
try:
    m.fit(x, {"boxes": boxes, "classes": np.array([[0, 7, -1, -1]] * 2)}, verbose=0)
    said = None
except Exception as err:
    said = str(err)
losses = m.fit(x, {"boxes": boxes, "classes": np.array([[0, -1, -1, -1]] * 2)}, epochs=3,
               verbose=0).history["loss"]
c = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3)), num_classes=3)
c.compile(optimizer="adam")
try:
    c.fit(np.zeros((2, 64, 64, 3), "float32"), np.array([0, 1]), verbose=0)
    no_loss = None
except ValueError as err:
    no_loss = str(err)
import json
print(json.dumps({"said": said, "losses": losses, "no_loss": no_loss}))
"""


@pytest.mark.integration
def test_on_jax_a_fit_stopped_by_a_data_check_keeps_the_model_trainable():
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, "-c", FAILED_FIT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "y['classes'] has a label >= num_classes (3)" in out["said"]
    losses = out["losses"]  # the weights came back and train (Keras' JAX trainer emptied them)
    assert all(map(float.__ne__, losses[1:], losses[:-1])) and losses[-1] < losses[0], losses
    assert "fit needs a loss" in out["no_loss"]  # Keras on JAX would train on a loss of 0.0
