"""Every task model builds, loads presets, predicts, fits and saves on JAX and PyTorch, with
TensorFlow's outputs from the same weights; the JAX run has TensorFlow made unimportable.

The work is done by ``backend_check.py`` in a subprocess per backend (a Keras backend is fixed
per interpreter); this process (TensorFlow) writes the reference and loads what they saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import backend_check
import keras
import numpy as np
import pytest

# One worker runs the whole module (`--dist loadgroup`): its fixtures (the reference and one
# subprocess per backend, minutes each) are then built once, not once per worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("backends")]

SCRIPT = Path(backend_check.__file__)
# JAX runs with TensorFlow blocked (a TensorFlow-free install); PyTorch with TensorFlow
# importable, so that it also trains from tf.data.
BLOCK_TENSORFLOW = {"jax": True, "torch": False}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("backends")
    backend_check.reference(str(workdir))
    return workdir, dict(np.load(workdir / "reference.npz"))


@pytest.fixture(scope="module", params=sorted(BLOCK_TENSORFLOW))
def run(request, reference):
    backend = request.param
    pytest.importorskip(backend)  # both are in the test extra
    workdir, expected = reference
    command = [sys.executable, str(SCRIPT), "check", str(workdir)]
    if BLOCK_TENSORFLOW[backend]:
        command.append("--block-tensorflow")
    # XLA's optimisation passes are most of JAX's time here (hundreds of small programs
    # compiled once each): off, the run took 80 s instead of 99 s (2 cores); the outputs
    # compared are the same programs, only less fused.
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    got = dict(np.load(workdir / f"{backend}.npz"))
    return backend, workdir, report, expected, got


def _group(arrays: dict, prefix: str) -> dict:
    return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _in_proposal_order(have: dict, want: dict) -> dict:
    """Faster R-CNN's raw outputs ``have`` with the proposals in ``want``'s order."""
    order = _proposal_order(have["proposals"], want["proposals"])
    have = dict(have)
    for key in ("proposals", "classes", "boxes"):
        index = order.reshape(order.shape + (1,) * (have[key].ndim - 2))
        have[key] = np.take_along_axis(have[key], index, axis=1)
    return have


def _proposal_order(have: np.ndarray, want: np.ndarray, atol: float = 1e-4) -> np.ndarray:
    """For each image, the index in ``have`` of each of ``want``'s proposals (same box)."""
    order = np.zeros(want.shape[:2], int)
    for i in range(want.shape[0]):
        free = list(range(want.shape[1]))
        for j in range(want.shape[1]):
            k = next((k for k in free if np.abs(have[i, k] - want[i, j]).max() <= atol), None)
            assert k is not None, f"image {i}: proposal {j} {want[i, j]} not among {have[i]}"
            order[i, j] = k
            free.remove(k)
    return order


@pytest.mark.parametrize("task", backend_check.TASKS)
def test_raw_outputs_equal_tensorflows_from_the_same_weights(run, task):
    backend, _, _, expected, got = run
    want, have = _group(expected, f"{task}_raw"), _group(got, f"{task}_raw")
    assert want.keys() == have.keys()
    if task == "faster_rcnn":  # proposals of equal objectness may come in either order
        have = _in_proposal_order(have, want)
    for key in want:
        np.testing.assert_allclose(have[key], want[key], atol=1e-4, rtol=1e-4,
                                   err_msg=f"{backend} {task} {key}")


@pytest.mark.parametrize("task", backend_check.TASKS)
def test_predict_gives_tensorflows_result_in_the_same_form(run, task):
    backend, _, _, expected, got = run
    want, have = _group(expected, f"{task}_predict"), _group(got, f"{task}_predict")
    assert want.keys() == have.keys(), f"{backend} {task}: {sorted(have)} vs {sorted(want)}"
    for key in want:
        assert have[key].shape == want[key].shape and have[key].dtype == want[key].dtype, key
    if task in backend_check.DETECTORS:  # box by box; equal scores may swap places
        assert backend_check.same_detections(have, want) == []
    else:
        np.testing.assert_allclose(have["output"], want["output"], atol=1e-4, rtol=1e-4)


def test_presets_load_and_give_tensorflows_predictions(run):
    backend, _, _, expected, got = run
    np.testing.assert_allclose(got["imagenet/probs"], expected["imagenet/probs"], atol=1e-5)
    assert int(np.argmax(got["imagenet/probs"])) == 285  # Egyptian cat, as on TensorFlow
    want, have = _group(expected, "face"), _group(got, "face")
    assert want["scores"][0, 0] > 0.9  # the astronaut's face, first
    assert backend_check.same_detections(have, want) == []


@pytest.mark.parametrize("task", backend_check.TASKS)
def test_fit_gives_finite_losses_and_changes_the_weights(run, task):
    backend, _, report, _, _ = run
    losses = report["fit"][task]
    ways = {"numpy", "generator"} | ({"tf.data"} if not BLOCK_TENSORFLOW[backend] else set())
    assert set(losses) == ways, f"{backend} {task}: trained from {sorted(losses)}"
    assert all(np.isfinite(v) for v in losses.values()), losses
    # Most tensors move (SSD's 1x1 extra maps get no gradient at 128 pixels).
    assert report["weights_changed"][task] >= 0.8 * report["weights_total"][task], report


@pytest.mark.parametrize("task", backend_check.TASKS)
def test_a_keras_file_saved_there_loads_here_with_the_same_outputs(run, task):
    backend, workdir, _, _, got = run
    model = keras.saving.load_model(workdir / f"{backend}_{task}.keras")
    x, _ = backend_check.data(task)
    here = backend_check.flat(model(x, training=False))
    there = _group(got, f"{task}_trained")
    assert here.keys() == there.keys()
    if task == "faster_rcnn":
        here = _in_proposal_order(here, there)
    for key in here:
        np.testing.assert_allclose(here[key], there[key], atol=1e-4, rtol=1e-4,
                                   err_msg=f"{backend} {task} {key}")


def test_a_classifier_label_outside_num_classes_stops_fit_on_every_backend(run):
    backend, _, report, _, _ = run
    assert "outside [0, 3)" in report["label_error"], (backend, report["label_error"])


def test_export_off_the_tensorflow_backend_says_how_to_export(run):
    backend, workdir, report, _, _ = run
    if BLOCK_TENSORFLOW[backend]:
        pytest.skip(f"{backend} runs without TensorFlow (checked below)")
    assert "KERAS_BACKEND=tensorflow" in report["export_error"], report.get("export_error")
    assert not (workdir / "never.tflite").exists()


def test_without_tensorflow_the_package_imports_and_tensorflow_jobs_say_so(run):
    backend, _, report, _, _ = run
    if not BLOCK_TENSORFLOW[backend]:
        pytest.skip(f"{backend} runs with TensorFlow importable (tf.data training)")
    assert report["tensorflow_imported"] is False
    errors = report["tensorflow_only_errors"]
    assert set(errors) == {"pipeline", "to_tflite"}
    for what, message in errors.items():
        assert "needs TensorFlow" in message and "pip install tensorflow" in message, (what, message)
