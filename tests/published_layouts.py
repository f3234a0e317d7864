"""Files in the layouts that the published MobileNet family uses, and a local HTTP
server that serves them as the real hosts do (``Range`` requests, 206 answers).

* keras.applications: a Keras 2 HDF5 (``layer_names`` / ``weight_names`` with ``:0``);
* TF-slim: ``mobilenet_v1_{alpha}_{size}.tgz`` with a TF1 name-based checkpoint
  (``.ckpt.{index,data-00000-of-00001,meta}``) and ``_frozen.pb`` (input ``input``,
  output ``MobilenetV1/Predictions/Reshape_1``, 1001 classes with background; the
  variables are ``Const`` nodes under their checkpoint names, as the converter reads them);
* TF OD API: ``<model>/{model.ckpt.*, pipeline.config, frozen_inference_graph.pb}``
  in a ``.tar.gz``; the frozen graph takes ``image_tensor`` (uint8) and returns
  ``detection_{boxes,scores,classes}`` and ``num_detections``, classes 1-based;
* face-api.js: the TF OD API face SSD exported to TensorFlow.js
  (``ssd_mobilenetv1_model-weights_manifest.json`` + ``ssd_mobilenetv1_model.bin``,
  uint8-quantized, pointwise BatchNorms folded into ``convolution_bn_offset``).
"""

from __future__ import annotations

import io
import json
import math
import re
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from mobilenet_zoo import weights_io
from mobilenet_zoo.convert import BN_VARS, SLIM_LOGITS, SLIM_SCOPE, slim_layer_map


def write_keras2_h5(model, path: Path) -> Path:
    """A weights-only Keras 2 HDF5 of ``model`` as keras.applications publishes them."""
    layers = list(weights_io.iter_weighted_layers(model))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"input_1"] + [la.name.encode() for la in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.3"
        f.create_group("input_1").attrs["weight_names"] = []
        for layer in layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name, data=value)
    return path


def slim_tensors(model_1001) -> dict[str, np.ndarray]:
    """TF-slim variable names -> arrays of a 1001-class ``MobileNetClassifier``."""
    layers = {la.name: la.get_weights() for la in weights_io.iter_weighted_layers(model_1001)}
    tensors = {}
    for layer, (scope, names) in slim_layer_map(SLIM_SCOPE).items():
        for name, value in zip(names, layers[layer]):
            tensors[f"{scope}/{name}"] = value
    kernel, bias = layers["conv_preds"]
    tensors[f"{SLIM_SCOPE}/{SLIM_LOGITS}/weights"] = kernel
    tensors[f"{SLIM_SCOPE}/{SLIM_LOGITS}/biases"] = bias
    return tensors


def write_tf1_checkpoint(tensors: dict[str, np.ndarray], prefix: Path) -> None:
    """A TF1 name-based checkpoint (``tf.compat.v1.train.Saver``), as TF-slim and the
    TF OD API wrote them."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(np.asarray(v), name=n) for n, v in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(prefix), write_meta_graph=True)


def freeze(fn, spec: tf.TensorSpec, outputs: dict[str, callable]) -> bytes:
    """A frozen GraphDef of ``fn`` with named input and output nodes."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    @tf.function(input_signature=[spec])
    def graph(x):
        result = fn(x)
        return {name: tf.identity(make(result), name=name) for name, make in outputs.items()}

    frozen = convert_variables_to_constants_v2(graph.get_concrete_function())
    return frozen.graph.as_graph_def().SerializeToString()


# TF-slim mobilenet_v1.py MOBILENETV1_CONV_DEFS: strides of Conv2d_0 and the 13 blocks.
SLIM_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
SLIM_BN_EPSILON = 1e-3  # slim.batch_norm in mobilenet_v1_arg_scope


def _slim_forward(tensors: dict[str, np.ndarray], x):
    """TF-slim's MobileNet v1 inference graph in its raw ops and node names, from the
    variables alone (not from a Keras model): ``Const`` variables read through
    ``<name>/read``, BatchNorm as ``batchnorm/{add,Rsqrt,mul,mul_2,sub,mul_1,add_1}``,
    'SAME' convolutions, ReLU6, ``Logits/AvgPool_1a`` + ``Conv2d_1c_1x1`` +
    ``SpatialSqueeze``, ``Predictions/{Reshape,Softmax}``."""
    raw = tf.raw_ops

    def var(name):
        return raw.Identity(input=tf.constant(tensors[name], name=name), name=f"{name}/read")

    def bn_relu6(h, layer, scope):
        bn = f"{scope}/BatchNorm/batchnorm"
        eps = tf.constant(np.float32(SLIM_BN_EPSILON), name=f"{bn}/add/y")
        mul = raw.Mul(x=raw.Rsqrt(x=raw.Add(x=var(f"{layer}/BatchNorm/moving_variance"), y=eps,
                                              name=f"{bn}/add"), name=f"{bn}/Rsqrt"),
                      y=var(f"{layer}/BatchNorm/gamma"), name=f"{bn}/mul")
        mul_2 = raw.Mul(x=var(f"{layer}/BatchNorm/moving_mean"), y=mul, name=f"{bn}/mul_2")
        sub = raw.Sub(x=var(f"{layer}/BatchNorm/beta"), y=mul_2, name=f"{bn}/sub")
        h = raw.Add(x=raw.Mul(x=h, y=mul, name=f"{bn}/mul_1"), y=sub, name=f"{bn}/add_1")
        return raw.Relu6(features=h, name=f"{scope}/Relu6")

    def conv(h, layer, stride, depthwise=False):
        scope = f"{SLIM_SCOPE}/{layer}"  # ops live under MobilenetV1/MobilenetV1/...
        op, weights, node = ((raw.DepthwiseConv2dNative, "depthwise_weights", "depthwise")
                             if depthwise else (raw.Conv2D, "weights", "convolution"))
        h = op(input=h, filter=var(f"{layer}/{weights}"), strides=[1, stride, stride, 1],
               padding="SAME", name=f"{scope}/{node}")
        return bn_relu6(h, layer, scope)

    h = conv(x, f"{SLIM_SCOPE}/Conv2d_0", SLIM_STRIDES[0])
    for i, stride in enumerate(SLIM_STRIDES[1:], start=1):
        h = conv(h, f"{SLIM_SCOPE}/Conv2d_{i}_depthwise", stride, depthwise=True)
        h = conv(h, f"{SLIM_SCOPE}/Conv2d_{i}_pointwise", 1)
    logits = f"{SLIM_SCOPE}/Logits"
    side = min(7, int(h.shape[1]))  # _reduced_kernel_size_for_small_input
    h = raw.AvgPool(value=h, ksize=[1, side, side, 1], strides=[1, 2, 2, 1], padding="VALID",
                    name=f"{logits}/AvgPool_1a/AvgPool")
    h = raw.Identity(input=h, name=f"{logits}/Dropout_1b/Identity")
    h = raw.Conv2D(input=h, filter=var(f"{SLIM_SCOPE}/{SLIM_LOGITS}/weights"), strides=[1, 1, 1, 1],
                   padding="SAME", name=f"{SLIM_SCOPE}/{SLIM_LOGITS}/convolution")
    h = raw.BiasAdd(value=h, bias=var(f"{SLIM_SCOPE}/{SLIM_LOGITS}/biases"),
                    name=f"{SLIM_SCOPE}/{SLIM_LOGITS}/BiasAdd")
    h = raw.Squeeze(input=h, axis=[1, 2], name=f"{logits}/SpatialSqueeze")
    classes = int(tensors[f"{SLIM_SCOPE}/{SLIM_LOGITS}/biases"].shape[0])
    h = raw.Reshape(tensor=h, shape=tf.constant([-1, classes], name=f"{SLIM_SCOPE}/Predictions/Reshape/shape"),
                    name=f"{SLIM_SCOPE}/Predictions/Reshape")
    return raw.Softmax(logits=h, name=f"{SLIM_SCOPE}/Predictions/Softmax")


def slim_frozen_graph(model_1001, size: int) -> bytes:
    """``mobilenet_v1_{alpha}_{size}_frozen.pb`` of a 1001-class classifier as TF-slim
    exported it: input ``input`` [1, size, size, 3] in [-1, 1], the checkpoint's variables
    as ``Const`` nodes by name (``MobilenetV1/Conv2d_0/weights``...), logits at
    ``MobilenetV1/Logits/SpatialSqueeze`` and probabilities (1001, background at 0) at
    ``MobilenetV1/Predictions/Reshape_1``. The graph computes TF-slim's forward pass
    from the tensors, independently of the Keras model."""
    tensors = slim_tensors(model_1001)
    return freeze(lambda x: _slim_forward(tensors, x),
                  tf.TensorSpec([1, size, size, 3], tf.float32, name="input"),
                  {f"{SLIM_SCOPE}/Predictions/Reshape_1": lambda p: p})


def with_background_class(classifier, seed: int = 0):
    """The 1001-class TF-slim form of a 1000-class ImageNet ``MobileNetClassifier``
    (logits): its backbone (shared), and a head with a background logit at index 0
    (small random weights, the lowest bias) ahead of the 1000 classes, as TF-slim's
    checkpoints and frozen graphs hold them."""
    from mobilenet_zoo import MobileNetClassifier

    model = MobileNetClassifier(classifier.backbone, num_classes=1001, classifier_activation=None)
    kernel, bias = classifier.get_layer("conv_preds").get_weights()
    rng = np.random.default_rng(seed)
    background = rng.normal(0, 0.01 * float(kernel.std()), (*kernel.shape[:-1], 1)).astype(kernel.dtype)
    model.get_layer("conv_preds").set_weights([np.concatenate([background, kernel], axis=-1),
                                               np.concatenate([[bias.min()], bias]).astype(bias.dtype)])
    return model


def write_slim_tgz(model_1001, size: int, path: Path, frozen: bool = True) -> Path:
    """``mobilenet_v1_{alpha}_{size}.tgz`` of a 1001-class classifier (background at 0)."""
    stem = path.name[: -len(".tgz")]
    work = path.parent / f"{stem}_files"
    work.mkdir(exist_ok=True)
    write_tf1_checkpoint(slim_tensors(model_1001), work / f"{stem}.ckpt")
    if frozen:
        (work / f"{stem}_frozen.pb").write_bytes(slim_frozen_graph(model_1001, size))
    (work / f"{stem}_info.txt").write_text("Model: mobilenet_v1\n")
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for file in sorted(work.iterdir()):
            tar.add(file, arcname=f"./{file.name}")
    return path


FACE_PIPELINE = """# SSD with Mobilenet v1, face detector (WIDER FACE)
model {
  ssd {
    num_classes: 2
    box_coder {
      faster_rcnn_box_coder { y_scale: %(y_scale)s x_scale: 10.0 height_scale: 5.0 width_scale: 5.0 }
    }
    matcher {
      argmax_matcher { matched_threshold: 0.5 unmatched_threshold: 0.5 ignore_thresholds: false
        negatives_lower_than_unmatched: true force_match_for_each_row: true }
    }
    similarity_calculator { iou_similarity { } }
    anchor_generator {
      ssd_anchor_generator {
        num_layers: 6
        min_scale: 0.2
        max_scale: 0.95
        aspect_ratios: 1.0
        aspect_ratios: 2.0
        aspect_ratios: 0.5
        aspect_ratios: 3.0
        aspect_ratios: 0.3333
      }
    }
    image_resizer { fixed_shape_resizer { height: 512 width: 512 } }
    box_predictor {
      convolutional_box_predictor {
        min_depth: 0 max_depth: 0 num_layers_before_predictor: 0 use_dropout: false
        dropout_keep_probability: 0.8 kernel_size: 1 box_code_size: 4
        apply_sigmoid_to_scores: false
        conv_hyperparams { activation: RELU_6, regularizer { l2_regularizer { weight: 0.00004 } } }
      }
    }
    feature_extractor {
      type: 'ssd_mobilenet_v1'
      min_depth: 16
      depth_multiplier: 1.0
    }
    post_processing {
      batch_non_max_suppression {
        score_threshold: 1e-8
        iou_threshold: 0.6
        max_detections_per_class: 100
        max_total_detections: 100
      }
      score_converter: SIGMOID
    }
  }
}
train_config: { batch_size: 24 fine_tune_checkpoint: "PATH_TO_BE_CONFIGURED/model.ckpt" }
"""


def write_od_api_tar(tensors: dict[str, np.ndarray], ssd_model, path: Path,
                     frozen: bool = True, y_scale: float = 10.0) -> Path:
    """A TF OD API model-zoo archive of an ``ssd_mobilenet_v1`` (the face detector)."""
    stem = path.name.split(".tar")[0]
    work = path.parent / f"{stem}_files"
    work.mkdir(exist_ok=True)
    write_tf1_checkpoint(tensors, work / "model.ckpt")
    (work / "pipeline.config").write_text(FACE_PIPELINE % {"y_scale": y_scale})
    (work / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    if frozen:
        size = ssd_model.image_size

        def detect(images):
            x = tf.image.resize(tf.cast(images, tf.float32), size)
            return ssd_model.postprocess(ssd_model(x, training=False))

        pb = freeze(detect, tf.TensorSpec([1, None, None, 3], tf.uint8, name="image_tensor"), {
            "detection_boxes": lambda d: d["boxes"],
            "detection_scores": lambda d: d["scores"],
            "detection_classes": lambda d: tf.cast(d["classes"], tf.float32) + 1.0,
            "num_detections": lambda d: tf.cast(d["num_detections"], tf.float32),
        })
        (work / "frozen_inference_graph.pb").write_bytes(pb)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for file in sorted(work.iterdir()):
            tar.add(file, arcname=f"{stem}/{file.name}")
    return path


FACE_TFJS_STEM = "ssd_mobilenetv1_model"  # face-api.js: <stem>-weights_manifest.json, <stem>.bin
_EXTRA_LAYER = re.compile(r"^Conv2d_13_pointwise_([12])_Conv2d_(\d+)_(?:1x1|3x3_s2)_\d+$")


def _folded(layers: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A conv with its BatchNorm (``<name>_bn``) folded in: (kernel, offset), the
    ``weights`` / ``convolution_bn_offset`` pair of face-api.js's export."""
    weights = layers[name].get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if len(weights) > 1 else np.zeros(kernel.shape[-1])
    bn = layers.get(f"{name}_bn")
    if bn is None:  # a model built with folded_batch_norm: the conv has the bias already
        return kernel.astype(np.float32), bias.astype(np.float32)
    gamma, beta, mean, variance = (w.astype(np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return (kernel * scale).astype(np.float32), (beta + (bias - mean) * scale).astype(np.float32)


def face_ssd_tfjs_tensors(model) -> list[tuple[str, np.ndarray, bool]]:
    """(name, value, quantized) of an ``SSD`` in the order and names of face-api.js's
    ``ssd_mobilenetv1_model`` manifest: the box predictors, the graph's constants
    (reshape sizes, preprocessing, the anchors as ``Output/extra_dim``), the backbone
    (``MobilenetV1/Conv2d_0_pointwise`` is the stem; pointwise BatchNorms folded,
    depthwise ones kept) and the extra layers ``Prediction/Conv2d_{0..7}_pointwise``."""
    layers = {la.name: la for la in weights_io.iter_weighted_layers(model)}
    maps = len([n for n in layers if n.endswith("_BoxEncodingPredictor")])
    classes = layers["BoxPredictor_0_ClassPredictor"].get_weights()[0].shape[-1] // (
        layers["BoxPredictor_0_BoxEncodingPredictor"].get_weights()[0].shape[-1] // 4)
    height, width = model.image_size
    grids = [(math.ceil(height / 16), math.ceil(width / 16)), (math.ceil(height / 32), math.ceil(width / 32))]
    while len(grids) < maps:
        grids.append((math.ceil(grids[-1][0] / 2), math.ceil(grids[-1][1] / 2)))
    anchors = [h * w * layers[f"BoxPredictor_{k}_BoxEncodingPredictor"].get_weights()[0].shape[-1] // 4
               for k, (h, w) in enumerate(grids)]
    assert sum(anchors) == len(model.anchors), (anchors, len(model.anchors))

    def i32(value):
        return np.asarray(value, np.int32)

    out: list[tuple[str, np.ndarray, bool]] = []
    for k in range(maps):
        out += [(f"Prediction/BoxPredictor_{k}/ClassPredictor/{var}", value, True) for var, value
                in zip(("weights", "biases"), layers[f"BoxPredictor_{k}_ClassPredictor"].get_weights())]
    out += [("Prediction/BoxPredictor_0/stack_1/2", i32(classes), True),
            ("Postprocessor/Slice/begin", i32([0, 0, 1]), True),  # drops the background score
            ("Postprocessor/Slice/size", i32([-1, -1, -1]), True)]
    for k in range(maps):
        out += [(f"Prediction/BoxPredictor_{k}/BoxEncodingPredictor/{var}", value, True) for var, value
                in zip(("weights", "biases"), layers[f"BoxPredictor_{k}_BoxEncodingPredictor"].get_weights())]
        if k < maps - 1:
            out.append((f"Prediction/BoxPredictor_{k}/stack_1/1", i32(anchors[k]), True))
    out += [("Preprocessor/mul/x", np.float32(2 / 255), True),
            ("Preprocessor/ResizeImage/size", i32([height, width]), True),
            ("Preprocessor/sub/y", np.float32(1), True)]

    def pointwise(scope, layer):
        kernel, offset = _folded(layers, layer)
        return [(f"{scope}/weights", kernel, True), (f"{scope}/convolution_bn_offset", offset, True)]

    out += pointwise("MobilenetV1/Conv2d_0_pointwise", "conv1")
    i = 1
    while f"conv_dw_{i}" in layers:
        scope = f"MobilenetV1/Conv2d_{i}_depthwise"
        out.append((f"{scope}/depthwise_weights", layers[f"conv_dw_{i}"].get_weights()[0], True))
        out += [(f"{scope}/BatchNorm/{var}", value, True)
                for var, value in zip(BN_VARS, layers[f"conv_dw_{i}_bn"].get_weights())]
        out += pointwise(f"MobilenetV1/Conv2d_{i}_pointwise", f"conv_pw_{i}")
        i += 1
    extra = {}
    for name in layers:
        m = _EXTRA_LAYER.match(name)
        if m:  # pairs (1x1, 3x3 s2) numbered from 2 -> Prediction/Conv2d_0, _1, _2...
            extra[2 * (int(m.group(2)) - 2) + int(m.group(1)) - 1] = name
    for k in sorted(extra):
        out += pointwise(f"Prediction/Conv2d_{k}_pointwise", extra[k])
    out += [(f"Prediction/BoxPredictor_{maps - 1}/stack_1/1", i32(anchors[-1]), True),
            ("concat_1/axis", i32(1), True),
            ("Prediction/BoxPredictor_0/strided_slice/stack", i32([0]), True),
            ("Prediction/BoxPredictor_0/strided_slice/stack_1", i32([1]), True),
            ("Postprocessor/stack/1", i32(sum(anchors)), True),
            ("Prediction/BoxPredictor_0/stack/3", i32(4), True),
            ("Output/extra_dim", np.asarray(model.anchors, np.float32)[None], False)]
    return out


def _js_number(x: float) -> int | float:
    """JSON numbers as JavaScript writes them (1, not 1.0)."""
    return int(x) if float(x).is_integer() else float(x)


def _tfjs_weight(name: str, value: np.ndarray, quantized: bool) -> tuple[dict, bytes]:
    """A manifest entry and its bytes; uint8 quantization as tfjs-converter's
    ``--quantization_bytes 1``: q = round((v - min) / scale), scale = (max - min) / 255
    (1 for a constant), dequantized as ``q * scale + min``."""
    value = np.asarray(value)
    dtype = "int32" if value.dtype.kind in "iu" else "float32"
    entry: dict = {"dtype": dtype, "shape": list(value.shape)}
    if quantized:
        low, high = float(value.min()), float(value.max())
        scale = (high - low) / 255 if high > low else 1.0
        q = np.round((value.astype(np.float64) - low) / scale)
        if dtype == "float32" and high > low:
            # float32 values that were dequantized once lie on the grid q * scale + min of
            # float64 parameters that float32 min / max only approximate (a constant shift of
            # the whole tensor); least squares over all values recovers them.
            (scale, fitted), *_ = np.linalg.lstsq(np.stack([q.ravel(), np.ones(q.size)], 1),
                                                  value.astype(np.float64).ravel(), rcond=None)
            low = max(fitted, 0.0) if low >= 0 else fitted  # a variance stays non-negative
        data = q.astype(np.uint8).tobytes()
        entry["quantization"] = {"scale": _js_number(scale), "min": _js_number(low), "dtype": "uint8"}
    else:
        data = value.astype(dtype).tobytes()
    entry["name"] = name
    return entry, data


def write_tfjs_face_ssd(model, folder: Path) -> Path:
    """The face SSD as face-api.js publishes it (``ssd_mobilenetv1_model-weights_manifest.json``
    and one ``ssd_mobilenetv1_model.bin`` shard, uint8-quantized, in its names and order);
    returns the manifest's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries, shard = [], []
    for name, value, quantized in face_ssd_tfjs_tensors(model):
        entry, data = _tfjs_weight(name, value, quantized)
        entries.append(entry)
        shard.append(data)
    (folder / f"{FACE_TFJS_STEM}.bin").write_bytes(b"".join(shard))
    lines = ",\n".join("          " + json.dumps(e, separators=(",", ":")) for e in entries)
    manifest = folder / f"{FACE_TFJS_STEM}-weights_manifest.json"
    manifest.write_text(f'[\n  {{\n      "weights":\n      [\n{lines}\n      ],\n      "paths":\n'
                        f'      [\n          "{FACE_TFJS_STEM}.bin"\n      ]\n  }}\n]')
    return manifest


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        name = self.path.rsplit("/", 1)[-1]
        server.requests.append((name, self.headers.get("Range")))
        data = server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and server.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = server.cut_after.pop(name, None)
        if cut is not None:  # a dropped connection: half of the bytes, then close
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        for i in range(0, len(body), 1 << 16):
            self.wfile.write(body[i:i + (1 << 16)])
            if server.delay:
                time.sleep(server.delay)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hung up mid-file (on purpose)
        pass


class FileServer:
    """``with FileServer({name: bytes}) as server: server.url`` on 127.0.0.1.

    ``cut_after[name] = n`` drops the connection after n bytes once; ``delay``
    sleeps between 64 KiB chunks (a slow host); ``ranges=False`` ignores Range."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.files = dict(files)
        self.httpd.requests = []
        self.httpd.cut_after = {}
        self.httpd.delay = 0.0
        self.httpd.ranges = True
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __getattr__(self, name):
        return getattr(self.httpd, name)

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def tar_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def memory_tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
