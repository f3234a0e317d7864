"""Faster R-CNN on keras.ops: the ROI crop against TF's kernel, and the detector on JAX and PyTorch
(same weights as TF -> TF's detections; a few training steps -> finite loss, changed weights)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_zoo.detection import roi

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- crop_and_resize
def _random_crop_inputs(seed, batch=2, size=(19, 23), channels=8, n=40):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, *size, channels)).astype(np.float32)
    y0 = rng.uniform(-0.3, 1.0, (n, 2))  # corners up to 0.3 outside the image, on both sides
    boxes = np.concatenate([y0, y0 + rng.uniform(0.01, 0.7, (n, 2))], -1).astype(np.float32)
    boxes[:5] = boxes[:5, [2, 3, 0, 1]]  # flipped boxes: tf samples them upside down
    boxes[5] = [0.0, 0.0, 1.0, 1.0]  # the whole map, edges exactly on the border
    boxes[6] = [-0.5, -0.5, 1.5, 1.5]  # larger than the map: zeros around it
    index = rng.integers(0, batch, n).astype(np.int32)
    return features, boxes, index


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("crop", [(14, 14), (7, 5), (1, 1), (1, 4)])
def test_keras_ops_crop_and_resize_equals_tf(seed, crop):
    features, boxes, index = _random_crop_inputs(seed)
    ref = tf.image.crop_and_resize(features, boxes, index, crop).numpy()
    ours = keras.ops.convert_to_numpy(roi.crop_and_resize_builtin(features, boxes, index, crop))
    assert ours.shape == ref.shape == (40, *crop, 8)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    if max(crop) > 1:  # box 6's outside samples are there, and zero on both
        assert (ref[6] == 0).any()
    # The dispatcher (TF's kernel on this backend) gives the same.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(roi.crop_and_resize(features, boxes, index, crop)),
                               ref, atol=1e-6)


def test_roi_crop_layer_flattens_per_image_boxes():
    features, boxes, _ = _random_crop_inputs(3, n=12)
    per_image = boxes.reshape(2, 6, 4)
    out = roi.ROICrop(crop_size=4)(features, per_image)
    ref = tf.image.crop_and_resize(features, boxes, [0] * 6 + [1] * 6, (4, 4))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), ref.numpy(), atol=1e-6)


def test_second_stage_targets_with_fewer_candidates_than_samples_pad_with_unsampled_slots():
    from mobilenet_zoo.detection import ArgMaxMatcher, FasterRCNNBoxCoder, rpn

    proposals = np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]]], np.float32)
    gt = np.array([[[0.1, 0.1, 0.4, 0.4]]], np.float32)
    boxes, labels, _, weights, positive = roi.second_stage_targets(
        proposals, np.array([2]), gt, np.array([[0]]), ArgMaxMatcher(0.5, 0.5, False), FasterRCNNBoxCoder(),
        rpn.BalancedSampler(8, 0.25), seed=3)
    assert boxes.shape == (1, 8, 4)
    # 2 valid proposals + the ground truth: 2 positives (proposal 0, the gt), 1 negative.
    assert keras.ops.convert_to_numpy(weights).sum() == 3
    assert keras.ops.convert_to_numpy(positive).sum() == 2
    assert set(keras.ops.convert_to_numpy(labels)[0].tolist()) == {0, 1}


# ---------------------------------------------------------------- JAX and PyTorch
# The parallel keras.ops ports of postprocess.py (NMS, DetectionDecoder), matcher.py and the
# ground truth checks (preprocessor.py) may not have landed: while a module still holds `tf`,
# the script calls it through numpy (eagerly; JAX then runs without jit). Once they are
# keras.ops, nothing is wrapped and JAX runs jitted.
SCRIPT = r"""
import json, sys, time
import numpy as np
import keras
import mobilenet_zoo  # noqa: F401
from mobilenet_zoo.detection import matcher, postprocess, preprocessor, roi

ops = keras.ops
wrapped = []


def to_tf(x):
    import tensorflow as tf
    return tf.constant(ops.convert_to_numpy(x)) if x is not None and hasattr(x, "shape") else x


def back(x):
    return ops.convert_to_tensor(np.asarray(x)) if hasattr(x, "shape") else x


if hasattr(postprocess, "tf"):
    _nms = postprocess.non_max_suppression

    def nms(boxes, scores, *args, **kwargs):
        return tuple(back(o) for o in _nms(to_tf(boxes), to_tf(scores), *args, **kwargs))

    postprocess.non_max_suppression = roi.non_max_suppression = nms
    _decoder_call = postprocess.DetectionDecoder.call

    def decoder_call(self, box_codes, class_logits, anchors, box_coder, **kwargs):
        out = _decoder_call(self, to_tf(box_codes), to_tf(class_logits), to_tf(anchors), box_coder, **kwargs)
        return {k: back(v) for k, v in out.items()}

    postprocess.DetectionDecoder.call = decoder_call
    wrapped.append("postprocess")
if hasattr(matcher, "tf"):
    _match = matcher.ArgMaxMatcher.match
    matcher.ArgMaxMatcher.match = lambda self, *a: back(_match(self, *(to_tf(x) for x in a)))
    wrapped.append("matcher")
if hasattr(preprocessor, "tf"):
    _gt = preprocessor.ground_truth_to_model

    def gt(y, *args):
        return tuple(back(o) for o in _gt({k: to_tf(v) for k, v in y.items()}, *args))

    preprocessor.ground_truth_to_model = gt
    import mobilenet_zoo.detection.detector as detector_module
    detector_module.ground_truth_to_model = gt
    wrapped.append("preprocessor")
jit = not wrapped

path, ref_path = sys.argv[1], sys.argv[2]
t0 = time.time()
model = keras.saving.load_model(path)
model.jit_compile = jit
ref = np.load(ref_path)
x = ref["x"]
dets = model.predict(x, verbose=0)
t_predict = time.time() - t0
diff = {k: float(np.max(np.abs(np.asarray(dets[k], np.float64) - ref[k]))) for k in
        ("boxes", "scores", "classes", "num_detections")}
first = [ops.convert_to_numpy(w) for w in model.trainable_weights]
model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
history = model.fit(x, {"boxes": ref["gt_boxes"], "classes": ref["gt_classes"]}, epochs=2, batch_size=2,
                    verbose=0)
changed = sum(not np.array_equal(a, ops.convert_to_numpy(b)) for a, b in zip(first, model.trainable_weights))
print(json.dumps({"backend": keras.backend.backend(), "wrapped": wrapped, "jit": jit, "diff": diff,
                  "num": np.asarray(dets["num_detections"]).tolist(), "loss": history.history["loss"],
                  "positives": history.history["positives"], "changed": changed, "weights": len(first),
                  "predict_s": round(t_predict, 1), "total_s": round(time.time() - t0, 1)}))
"""


@pytest.fixture(scope="module")
def saved_detector(tmp_path_factory):
    """A small Faster R-CNN saved on TF, its detections on two images and a training batch."""
    from mobilenet_zoo.detection import faster_rcnn as fr

    keras.utils.set_random_seed(0)
    model = fr.faster_rcnn_mobilenet_v1(3, alpha=0.25, image_size=128, weights=None,
                                        proposal_layer={"max_proposals": 30})
    # He-normal kernels (the init's leave ~1e-12 features at conv_pw_11), and spread RPN and
    # class logits: the detections depend on every layer, and NMS's rankings have no near-ties
    # for float round-off between backends to swap.
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        if w.path.endswith("kernel"):
            fan_in = int(np.prod(w.shape[:2] if "conv_dw" in w.path else w.shape[:-1]))
            w.assign(rng.normal(0, np.sqrt(2 / fan_in), w.shape).astype(np.float32))
    objectness = model.get_layer("FirstStageBoxPredictor_Objectness")
    objectness.kernel.assign(objectness.kernel * 10.0)
    classifier = model.box_classifier.get_layer("ClassPredictor")
    classifier.kernel.assign(classifier.kernel * 10.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    dets = model.predict(x, verbose=0)
    assert (np.asarray(dets["num_detections"]) > 0).all()
    gt_boxes = np.full((2, 4, 4), -1, np.float32)
    gt_classes = np.full((2, 4), -1, np.int32)
    gt_boxes[0, :2] = [[0.1, 0.1, 0.6, 0.6], [0.4, 0.5, 0.95, 0.95]]
    gt_classes[0, :2] = [0, 2]
    gt_boxes[1, :1] = [[0.2, 0.3, 0.8, 0.8]]
    gt_classes[1, :1] = [1]
    out = tmp_path_factory.mktemp("frcnn")
    model.save(out / "frcnn.keras")
    np.savez(out / "ref.npz", x=x, gt_boxes=gt_boxes, gt_classes=gt_classes,
             **{k: np.asarray(v) for k, v in dets.items()})
    return out / "frcnn.keras", out / "ref.npz"


def _tf_modules() -> list[str]:
    """The modules the detector calls that still hold TensorFlow (see SCRIPT)."""
    from mobilenet_zoo.detection import matcher, postprocess, preprocessor

    return [m.__name__ for m in (postprocess, matcher, preprocessor) if hasattr(m, "tf")]


# JAX runs eagerly while TF-backed modules are wrapped (~2 min on 2 CPU cores): slow until then.
_JAX_MARKS = [pytest.mark.slow] if _tf_modules() else []


@pytest.mark.integration
@pytest.mark.parametrize("backend", [pytest.param("jax", marks=_JAX_MARKS), "torch"])
def test_faster_rcnn_predicts_tf_detections_and_trains_on(backend, saved_detector):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, saved_detector)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(out)
    assert out["backend"] == backend
    for key, value in out["diff"].items():
        assert value <= 1e-4, (key, out["diff"])
    assert all(np.isfinite(out["loss"])), out["loss"]
    assert out["changed"] == out["weights"], out  # every trainable weight moved
