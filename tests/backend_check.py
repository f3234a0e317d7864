"""Every task model on one Keras backend, against TensorFlow's outputs (run by test_backends.py).

``python tests/backend_check.py reference DIR`` (TensorFlow backend) builds the four task
models with fixed weights, saves them as ``.keras`` files and writes their outputs;
``KERAS_BACKEND=jax|torch python tests/backend_check.py check DIR [--block-tensorflow]``
loads those files there, predicts, fits a few steps on NumPy arrays, a Python generator and
(where TensorFlow is importable) tf.data, saves ``.keras`` files again and writes a JSON
report on its last stdout line. With ``--block-tensorflow`` every TensorFlow import raises,
as on a machine without it; TF-only features must then say so in one clear error.
"""

from __future__ import annotations

import json
import os
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets", "keras_cv", "tf_keras", "tensorboard")

if "--block-tensorflow" in sys.argv:

    class _NoTensorFlow:
        """A ``sys.meta_path`` finder that makes TensorFlow unimportable."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by backend_check.py)")
            return None

    sys.meta_path.insert(0, _NoTensorFlow())

import numpy as np  # noqa: E402

TASKS = ("classifier", "ssd", "faster_rcnn", "deeplab")
DETECTORS = ("ssd", "faster_rcnn")
BATCH = 2


def build(name: str):
    """Small instances of the four task models (the contract battery's sizes)."""
    from mobilenet_zoo import SSD, DeepLabV3, FasterRCNN, MobileNetBackbone, MobileNetClassifier

    if name == "classifier":
        return MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3)),
                                   num_classes=4, include_preprocessing=True)
    if name == "ssd":
        return SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128)
    if name == "faster_rcnn":
        return FasterRCNN(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3,
                          image_size=128, proposal_layer={"max_proposals": 20})
    return DeepLabV3(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3), output_stride=16), 3)


def data(name: str, seed: int = 0):
    """Images and training targets of ``name``, as NumPy arrays."""
    rng = np.random.default_rng(seed)
    size = 128 if name in DETECTORS else 64
    x = rng.uniform(0, 255, (BATCH, size, size, 3)).astype("float32")
    if name == "classifier":
        return x, np.array([1, 3], np.int32)
    if name == "deeplab":
        return x, rng.integers(0, 3, (BATCH, size, size)).astype("int32")
    boxes = np.full((BATCH, 3, 4), -1, np.float32)
    classes = np.full((BATCH, 3), -1, np.int32)
    boxes[0, :2] = [[0.1, 0.1, 0.6, 0.6], [0.4, 0.5, 0.95, 0.95]]
    boxes[1, :1] = [[0.2, 0.3, 0.7, 0.8]]
    classes[0, :2], classes[1, 0] = [0, 2], 1
    return x, {"boxes": boxes, "classes": classes}


def flat(outputs) -> dict[str, np.ndarray]:
    """A model's outputs (tensor, list or dict of any backend) as named NumPy arrays."""
    import keras

    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {str(i): keras.ops.convert_to_numpy(v) for i, v in enumerate(outputs)}
    return {"output": keras.ops.convert_to_numpy(outputs)}


def same_detections(have: dict, want: dict, atol: float = 1e-4) -> list[str]:
    """Differences between two decoded detection dicts, image by image; detections whose
    scores are within ``atol`` may come in either order (round-off between backends)."""
    problems = []
    for i in range(len(want["num_detections"])):
        n = int(want["num_detections"][i])
        if int(have["num_detections"][i]) != n:
            problems.append(f"image {i}: {int(have['num_detections'][i])} detections, want {n}")
            continue
        free = list(range(n))
        for j in range(n):
            match = next((k for k in free if abs(have["scores"][i, k] - want["scores"][i, j]) <= atol
                          and have["classes"][i, k] == want["classes"][i, j]
                          and np.abs(have["boxes"][i, k] - want["boxes"][i, j]).max() <= atol), None)
            if match is None:
                problems.append(f"image {i}: detection {j} (score {want['scores'][i, j]:.6f}, "
                                f"class {want['classes'][i, j]}) has no match")
            else:
                free.remove(match)
    return problems


def _astronaut() -> np.ndarray:
    from PIL import Image
    from skimage import data as skdata

    return np.asarray(Image.fromarray(skdata.astronaut()).resize((512, 512)), np.float32)[None]


def _chelsea() -> np.ndarray:
    from PIL import Image
    from skimage import data as skdata

    return np.asarray(Image.fromarray(skdata.chelsea()).resize((224, 224)), np.float32)[None]


def preset_outputs() -> dict[str, dict[str, np.ndarray]]:
    """The shipped presets, built on this backend: ImageNet probabilities and face detections."""
    from mobilenet_zoo import SSD, MobileNetClassifier, presets

    classifier = MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True)
    detector = SSD.from_preset(presets.FACE_SSD)
    return {"imagenet": {"probs": np.asarray(classifier.predict(_chelsea(), verbose=0))},
            "face": flat(detector.predict(_astronaut(), verbose=0))}


def _save_npz(path: str, arrays: dict) -> None:
    np.savez(path, **{f"{group}/{k}": v for group, d in arrays.items() for k, v in d.items()})


def spread_weights(model, seed: int = 1):
    """He-normal kernels (Faster R-CNN's class logits 10x): outputs that
    depend on every layer (the default init leaves ~1e-12 features deep in the backbone)
    and scores spread apart (SSD's closest two of 100: 5e-6)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not isinstance(layer, keras.layers.Conv2D | keras.layers.Dense
                                            | keras.layers.DepthwiseConv2D):
            continue
        shape = tuple(kernel.shape)
        fan_in = int(np.prod(shape[:2] if isinstance(layer, keras.layers.DepthwiseConv2D)
                             else shape[:-1]))
        value = rng.normal(0, np.sqrt(2 / fan_in), shape).astype("float32")
        if layer.name == "ClassPredictor":  # Faster R-CNN's second stage
            value *= 10.0
        kernel.assign(value)
    return model


def reference(workdir: str) -> None:
    """TensorFlow: the models, their raw and decoded outputs, and the presets' outputs."""
    import keras

    from mobilenet_zoo.testing import randomize_batch_norm

    arrays = {}
    for name in TASKS:
        keras.utils.set_random_seed(0)
        model = randomize_batch_norm(spread_weights(build(name)), seed=1)
        model.save(os.path.join(workdir, f"reference_{name}.keras"))
        x, _ = data(name)
        arrays[f"{name}_raw"] = flat(model(x, training=False))
        arrays[f"{name}_predict"] = flat(model.predict(x, verbose=0))
    arrays.update(preset_outputs())
    _save_npz(os.path.join(workdir, "reference.npz"), arrays)


def compile_arguments(name: str) -> dict:
    """The loss and metrics of ``name`` (detectors own theirs: ``compute_loss``)."""
    from mobilenet_zoo.segmentation import MeanIoU, PixelAccuracy, segmentation_loss

    if name == "classifier":
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
    if name == "deeplab":
        return {"loss": segmentation_loss(), "metrics": [MeanIoU(3), PixelAccuracy()]}
    return {}


def _weights(model) -> list[np.ndarray]:
    import keras

    return [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]


def _fit_three_ways(model, name: str, tensorflow: bool) -> dict[str, float]:
    """A few steps from NumPy arrays, a Python generator and tf.data: the last losses."""
    x, y = data(name)
    losses = {"numpy": model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0).history["loss"][-1]}

    def generator():
        while True:
            yield data(name, seed=1)

    losses["generator"] = model.fit(generator(), steps_per_epoch=2, epochs=1,
                                    verbose=0).history["loss"][-1]
    if tensorflow:
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(data(name, seed=2)).batch(BATCH).repeat()
        losses["tf.data"] = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0).history["loss"][-1]
    return {k: float(v) for k, v in losses.items()}


def _tensorflow_only_errors() -> dict[str, str]:
    """What a TF-only feature says when TensorFlow cannot be imported."""
    from mobilenet_zoo import SSD, presets
    from mobilenet_zoo.tensorflow_support import TensorFlowRequiredError

    said = {}
    model = SSD.from_preset(presets.FACE_SSD)
    for what, call in {
        "pipeline": lambda: model.preprocessor.pipeline([], batch_size=2),
        "to_tflite": lambda: __import__("mobilenet_zoo.export", fromlist=["to_tflite"]).to_tflite(
            model, "never.tflite"),
    }.items():
        try:
            call()
        except TensorFlowRequiredError as err:
            said[what] = str(err)
    return said


def _label_range_error() -> str:
    """What ``fit`` says for a class id >= num_classes (on JAX it used to train on a loss of 0.0),
    the model still usable afterwards."""
    import keras

    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier

    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3)
    model.compile(keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    try:
        model.fit(x, np.array([0, 1, 2, 5]), epochs=1, verbose=0)  # its first fit
        said = "no error"
    except Exception as err:  # TF: InvalidArgumentError, JAX: JaxRuntimeError, torch: ValueError
        said = f"{type(err).__name__}: {err}"
    # ... and the model is still usable (on JAX the failed first step used to delete its arrays)
    model.predict(x, verbose=0)
    model.fit(x, np.array([0, 1, 2, 1]), epochs=1, verbose=0)
    return said


def check(workdir: str) -> dict:
    """This backend: load, predict, fit, save; outputs written for the caller to compare."""
    import keras

    import mobilenet_zoo
    from mobilenet_zoo.tensorflow_support import tensorflow_available

    backend = keras.backend.backend()
    tensorflow = tensorflow_available()
    report = {"backend": backend, "tensorflow_imported": "tensorflow" in sys.modules, "fit": {},
              "weights_changed": {}, "weights_total": {}}
    arrays = {}
    for name in TASKS:
        model = mobilenet_zoo.load_model(os.path.join(workdir, f"reference_{name}.keras"))
        x, _ = data(name)
        arrays[f"{name}_raw"] = flat(model(x, training=False))
        arrays[f"{name}_predict"] = flat(model.predict(x, verbose=0))
        before = _weights(model)
        model.compile(optimizer=keras.optimizers.SGD(1e-4), **compile_arguments(name))
        report["fit"][name] = _fit_three_ways(model, name, tensorflow)
        after = _weights(model)
        report["weights_changed"][name] = int(sum(not np.array_equal(a, b)
                                                  for a, b in zip(before, after)))
        report["weights_total"][name] = len(before)
        model.save(os.path.join(workdir, f"{backend}_{name}.keras"))
        arrays[f"{name}_trained"] = flat(model(x, training=False))
    arrays.update(preset_outputs())
    report["label_error"] = _label_range_error()
    _save_npz(os.path.join(workdir, f"{backend}.npz"), arrays)
    if not tensorflow:
        report["tensorflow_only_errors"] = _tensorflow_only_errors()
    else:  # export traces with TensorFlow: off its backend, one clear error
        from mobilenet_zoo.export import to_tflite

        try:
            to_tflite(model, os.path.join(workdir, "never.tflite"))
        except ValueError as err:
            report["export_error"] = str(err)
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    return report


if __name__ == "__main__":
    mode, workdir = sys.argv[1], sys.argv[2]
    if mode == "reference":
        reference(workdir)
        print(json.dumps({"done": True}))
    elif mode == "import":  # the package's first name: which backend, was TensorFlow imported
        import mobilenet_zoo

        assert "keras" not in sys.modules  # the import alone imports nothing heavy
        mobilenet_zoo.MobileNetBackbone  # noqa: B018  the first name picks the backend
        print(json.dumps({"backend": sys.modules["keras"].backend.backend(),
                          "tensorflow_imported": "tensorflow" in sys.modules,
                          "public_names": sorted(mobilenet_zoo.__all__)}))
    elif mode == "tf-job":  # a TensorFlow-only module: what it says without TensorFlow
        try:
            import mobilenet_zoo.data.detection  # noqa: F401
            print("imported")
        except ImportError as err:
            print(type(err).__name__, err)
    else:
        print(json.dumps(check(workdir)))
