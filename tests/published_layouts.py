"""Files in the layouts that the published MobileNet family uses, and a local HTTP
server that serves them as the real hosts do (``Range`` requests, 206 answers).

* keras.applications: a Keras 2 HDF5 (``layer_names`` / ``weight_names`` with ``:0``);
* TF-slim: ``mobilenet_v1_{alpha}_{size}.tgz`` with a TF1 name-based checkpoint
  (``.ckpt.{index,data-00000-of-00001,meta}``) and ``_frozen.pb`` (input ``input``,
  output ``MobilenetV1/Predictions/Reshape_1``, 1001 classes with background);
* TF OD API: ``<model>/{model.ckpt.*, pipeline.config, frozen_inference_graph.pb}``
  in a ``.tar.gz``; the frozen graph takes ``image_tensor`` (uint8) and returns
  ``detection_{boxes,scores,classes}`` and ``num_detections``, classes 1-based.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from mobilenet_zoo import weights_io
from mobilenet_zoo.convert import SLIM_LOGITS, SLIM_SCOPE, slim_layer_map


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


def write_slim_tgz(model_1001, size: int, path: Path, frozen: bool = True) -> Path:
    """``mobilenet_v1_{alpha}_{size}.tgz`` of a 1001-class classifier (background at 0)."""
    stem = path.name[: -len(".tgz")]
    work = path.parent / f"{stem}_files"
    work.mkdir(exist_ok=True)
    write_tf1_checkpoint(slim_tensors(model_1001), work / f"{stem}.ckpt")
    if frozen:
        pb = freeze(lambda x: model_1001(x, training=False),
                    tf.TensorSpec([1, size, size, 3], tf.float32, name="input"),
                    {"MobilenetV1/Predictions/Reshape_1": lambda p: p})
        (work / f"{stem}_frozen.pb").write_bytes(pb)
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
