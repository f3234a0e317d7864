"""Without TensorFlow, ``import mobilenet_zoo`` works on its own, run after run, and the
package selects the installed backend (a quick check; tests/test_backends.py runs the task
models there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("backend_check.py")


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
