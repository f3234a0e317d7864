"""The SSD path in keras.ops: the NMS kernel against TF's, and SSD on JAX / PyTorch.

In-process (TensorFlow backend): ``nms_keras_ops`` equals
``tf.image.combined_non_max_suppression`` on SSD-like dense inputs, and the
``NonMaxSuppressionV5`` export loop on exactly tied scores (where TF's combined
kernel orders by heap / unstable sort: see ``postprocess``'s docstring).
Subprocesses (``KERAS_BACKEND=jax`` / ``torch``): a ``.keras`` saved here and the
face preset predict the TF detections, and ``fit`` trains.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mobilenet_zoo.detection.losses import hard_negative_mask
from mobilenet_zoo.detection.postprocess import nms_keras_ops, non_max_suppression

ROOT = Path(__file__).resolve().parents[2]
OWN_FILES = ("matcher", "losses", "postprocess", "box_coder", "anchors", "ssd", "detector")


def _random_boxes(rng, shape):
    centres = rng.uniform(0, 1, (*shape, 2))
    sizes = rng.uniform(0.02, 0.4, (*shape, 2))
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)


def _assert_equal(ref, got):
    for name, r, g in zip(("boxes", "scores", "classes", "num"), ref, got):
        r, g = np.asarray(r), np.asarray(g)
        assert (r.dtype, r.shape) == (g.dtype, g.shape), name
        np.testing.assert_array_equal(r, g, err_msg=name)


@pytest.mark.parametrize("num_boxes,num_classes,per_class_boxes", [
    (1917, 3, False), (1917, 90, False), (1917, 3, True), (300, 90, True)])
def test_keras_ops_nms_equals_combined_nms(num_boxes, num_classes, per_class_boxes, rng):
    shape = (2, num_boxes, num_classes) if per_class_boxes else (2, num_boxes)
    boxes = _random_boxes(rng, shape)
    boxes[0, :5] = boxes[0, :5, ..., ::-1]  # corners in either order, as TF's kernel reads them
    boxes[1, 7] = 1.3  # a box outside the image (clipped) ...
    boxes[1, 8, ..., 2:] = boxes[1, 8, ..., :2]  # ... and an empty one (IoU 0 with all)
    scores = (rng.uniform(0, 1, (2, num_boxes, num_classes)) ** 3).astype(np.float32)
    for args in ((100, 100, 0.6, 1e-8), (10, 300, 0.5, 0.2), (100, 20, 0.99, 0.0)):
        _assert_equal(non_max_suppression(boxes, scores, *args, clip_boxes=True),
                      nms_keras_ops(boxes, scores, *args, clip_boxes=True))
    _assert_equal(non_max_suppression(boxes, scores, 100, 100, 0.6, 1e-8),
                  nms_keras_ops(boxes, scores, 100, 100, 0.6, 1e-8))


def test_keras_ops_nms_runs_in_a_graph_with_a_dynamic_batch(rng):
    boxes, scores = _random_boxes(rng, (3, 200)), rng.uniform(0, 1, (3, 200, 4)).astype(np.float32)
    fn = tf.function(lambda b, s: nms_keras_ops(b, s, 20, 50, 0.5, 0.1),
                     input_signature=[tf.TensorSpec((None, 200, 4)), tf.TensorSpec((None, 200, 4))])
    _assert_equal(non_max_suppression(boxes, scores, 20, 50, 0.5, 0.1), fn(boxes, scores))


def test_ties_follow_the_v5_export_loop_and_the_combined_kernel_as_sets(rng):
    # Scores from 3 values: many exact ties within and across classes. The keras.ops
    # kernel and the NonMaxSuppressionV5 loop (tflite_ops=True) break them alike
    # (lowest anchor, then lowest class); TF's combined kernel pops a heap and runs
    # an unstable std::sort, so only the set of detections is the same, and only when
    # no cap cuts through a group of tied scores (then which of them is kept differs
    # too; the boxes are disjoint here, so NMS itself cannot pick another tied box).
    n = 24
    y = np.arange(n, dtype=np.float32)[:, None] * 0.04
    boxes = np.concatenate([y, y * 0, y + 0.03, y * 0 + 0.03], -1)[None].repeat(2, 0)
    scores = rng.choice(np.array([0.2, 0.5, 0.9], np.float32), (2, n, 5))
    ops_out = nms_keras_ops(boxes, scores, 10, 40, 0.5, 0.0)
    _assert_equal(non_max_suppression(tf.constant(boxes), tf.constant(scores), 10, 40, 0.5, 0.0,
                                      tflite_ops=True), ops_out)
    ops_out = nms_keras_ops(boxes, scores, n, 5 * n, 0.5, 0.0)  # no cap cuts a tie group
    combined = non_max_suppression(boxes, scores, n, 5 * n, 0.5, 0.0)
    np.testing.assert_array_equal(np.asarray(combined[3]), np.asarray(ops_out[3]))
    np.testing.assert_array_equal(np.asarray(combined[1]), np.asarray(ops_out[1]))  # sorted scores

    def as_set(out, i):
        return sorted((float(s), int(c), *np.round(b, 6).tolist()) for b, s, c in
                      zip(np.asarray(out[0])[i], np.asarray(out[1])[i], np.asarray(out[2])[i]))

    for i in range(2):
        assert as_set(combined, i) == as_set(ops_out, i)
    # Within a class, the lowest index wins a tie (the keras.ops kernel's argmax).
    one = nms_keras_ops(boxes[:1], np.full((1, n, 1), 0.5, np.float32), 5, 5, 0.5, 0.0)
    np.testing.assert_allclose(np.asarray(one[0])[0, :, 0], y[:5, 0])


def test_scores_at_the_threshold_are_dropped_and_padding_is_kept():
    boxes = np.array([[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], np.float32)
    scores = np.array([[[0.3, 0.0], [0.31, 0.0]]], np.float32)  # class 1: nothing above 0.0
    for nms in (non_max_suppression, nms_keras_ops):
        out_boxes, out_scores, classes, num = (np.asarray(t) for t in nms(boxes, scores, 5, 6, 0.5, 0.3))
        assert num.tolist() == [1]  # 0.3 is not above the threshold 0.3 (TF: strictly above)
        np.testing.assert_allclose(out_scores[0], [0.31, 0, 0, 0, 0, 0])
        assert classes[0].tolist() == [0, -1, -1, -1, -1, -1]
        np.testing.assert_array_equal(out_boxes[0, 1:], 0)
    _assert_equal(non_max_suppression(boxes, scores, 5, 6, 0.5, 0.5), nms_keras_ops(boxes, scores, 5, 6, 0.5, 0.5))


def test_hard_negative_mining_breaks_ties_by_the_lowest_anchor():
    loss = np.array([[1.0, 2.0, 2.0, 2.0, 0.5, 3.0]], np.float32)
    positive = np.array([[True, False, False, False, False, False]])
    mask = np.asarray(hard_negative_mask(loss, positive, ~positive, 3.0))[0]
    assert mask.tolist() == [False, True, True, False, False, True]


def test_the_ssd_files_import_no_tensorflow_at_module_level():
    for name in OWN_FILES:
        tree = ast.parse((ROOT / "mobilenet_zoo" / "detection" / f"{name}.py").read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are fine
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(m and m.split(".")[0] == "tensorflow" for m in modules), (name, modules)


NO_TF = """
import importlib.util, sys
import numpy as np
sys.modules["tensorflow"] = None  # any import of tensorflow now fails
spec = importlib.util.spec_from_file_location("postprocess", sys.argv[1])
post = importlib.util.module_from_spec(spec)
spec.loader.exec_module(post)
rng = np.random.default_rng(0)
boxes = rng.uniform(0, 0.5, (2, 40, 4)).astype(np.float32)
boxes[..., 2:] += 0.3
out = post.non_max_suppression(boxes, rng.uniform(0, 1, (2, 40, 3)).astype(np.float32), 5, 8, 0.5, 0.2)
print(np.asarray(out[3]).tolist())
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_nms_runs_with_tensorflow_unimportable(backend):
    pytest.importorskip(backend)
    done = subprocess.run(
        [sys.executable, "-c", NO_TF, str(ROOT / "mobilenet_zoo" / "detection" / "postprocess.py")],
        capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND=backend), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [8, 8]


# ------------------------------------------------------------------ JAX / PyTorch

# SSD on JAX and PyTorch (the face preset box by box, training, saving): tests/backends/test_backends.py.
