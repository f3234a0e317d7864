import json
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import published_layouts as pl  # noqa: E402
import pytest
import tensorflow as tf
from skimage import data as skdata

from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, preprocess_input, presets
from mobilenet_zoo.cli.convert import main as convert_main
from mobilenet_zoo.convert import convert, slim_layer_map
from mobilenet_zoo.imagenet import class_names, classify, decode_predictions
from mobilenet_zoo.weights_io import iter_weighted_layers, read_metadata

PRESET = "mobilenet_v1_1.0_224_imagenet"
DATA = Path(__file__).parents[1] / "data"


def _photo(image, size=224):
    return keras.ops.convert_to_numpy(
        tf.image.resize(image[None].astype("float32"), (size, size), antialias=True)
    )


@pytest.fixture(scope="module")
def imagenet_logits_model():
    backbone = MobileNetBackbone.from_preset(PRESET)
    return MobileNetClassifier(backbone, classifier_activation=None, weights=PRESET)


# The published TF-slim file, where you have it (mobilenet_v1_1.0_224.tgz of the TF-slim
# release): with MOBILENET_ZOO_FROZEN_PB naming it, the frozen-graph tests run on it instead.
PUBLISHED_FROZEN = os.environ.get("MOBILENET_ZOO_FROZEN_PB")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory, imagenet_logits_model):
    """The shipped preset as TF-slim's ``mobilenet_v1_1.0_224_frozen.pb`` (1001 classes,
    background at 0): its tensors as named constants, TF-slim's forward pass in raw TF
    ops (not the Keras model), written once; or the published file (``PUBLISHED_FROZEN``)."""
    if PUBLISHED_FROZEN:
        return Path(PUBLISHED_FROZEN)
    path = tmp_path_factory.mktemp("slim") / "mobilenet_v1_1.0_224_frozen.pb"
    path.write_bytes(pl.slim_frozen_graph(pl.with_background_class(imagenet_logits_model), 224))
    return path


def _graph_def(path):
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(path).read_bytes())
    return graph_def


def test_preset_recognises_real_photos():
    for image, expected in [
        (skdata.chelsea(), {"Egyptian_cat", "tabby"}),
        (skdata.coffee(), {"espresso"}),
    ]:
        top = classify(image)
        assert top[0][1] in expected, top
        assert top[0][2] > 0.5


def test_decode_predictions_names_and_checks_shape():
    names = class_names()
    assert len(names) == 1000 and names[285] == "Egyptian_cat" and names[967] == "espresso"
    probs = np.zeros((1, 1000))
    probs[0, 967] = 1
    assert decode_predictions(probs, top=1) == [[("n07920052", "espresso", 1.0)]]
    with pytest.raises(ValueError, match="1001"):
        decode_predictions(np.zeros((1, 1001)))


def test_classify_rejects_already_scaled_pixels():
    with pytest.raises(ValueError, match="raw pixels"):
        classify(np.zeros((32, 32, 3), dtype="float32") + 0.5)


def test_frozen_graph_has_the_tf_slim_layout(frozen):
    """Every TF-slim node of the published graph (tests/data: name -> op and inputs, or
    Const shape) is in ours, wired the same; the converter reads those names."""
    reference = json.loads((DATA / "mobilenet_v1_1.0_224_frozen_layout.json").read_text())["nodes"]
    nodes = {}
    for node in _graph_def(frozen).node:
        if node.op == "Const":
            nodes[node.name] = ["Const", [d.size for d in node.attr["value"].tensor.tensor_shape.dim]]
        elif node.op == "Placeholder":
            nodes[node.name] = ["Placeholder", [d.size for d in node.attr["shape"].shape.dim]]
        else:
            nodes[node.name] = [node.op, list(node.input)]
    assert {name: nodes.get(name) for name in reference} == reference
    assert reference["input"] == ["Placeholder", [1, 224, 224, 3]]
    assert "MobilenetV1/Predictions/Reshape_1" in nodes


def test_preset_logits_equal_the_frozen_graph_output(imagenet_logits_model, frozen):
    graph_def = _graph_def(frozen)
    x = preprocess_input(
        np.concatenate([_photo(skdata.chelsea()), _photo(skdata.coffee())]).clip(0, 255)
    )
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            # The graph's input is fixed at batch 1.
            ref = np.concatenate(
                [sess.run("MobilenetV1/Logits/SpatialSqueeze:0", {"input:0": xi[None]}) for xi in x]
            )
    assert ref.shape == (2, 1001)
    ours = imagenet_logits_model.predict(x, verbose=0)
    np.testing.assert_allclose(ours, ref[:, 1:], atol=1e-4)


def test_convert_then_load_round_trip_equals_shipped_preset(tmp_path, imagenet_logits_model, frozen):
    out = tmp_path / "converted.weights.h5"
    meta = convert(frozen, out)
    assert meta["alpha"] == 1.0 and meta["num_classes"] == 1000 and meta["input_size"] == 224
    assert read_metadata(out)["source_sha256"] == presets.sha256_of(frozen)
    model = MobileNetClassifier(classifier_activation=None)
    model.load_weights(str(out))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), imagenet_logits_model.predict(x, verbose=0)
    )


def test_keep_background_gives_1001_classes(tmp_path, frozen, imagenet_logits_model):
    out = tmp_path / "bg.weights.h5"
    meta = convert(frozen, out, keep_background=True)
    assert meta["num_classes"] == 1001
    model = MobileNetClassifier(num_classes=1001, classifier_activation=None)
    model.load_weights(str(out))
    kernel = model.get_layer("conv_preds").get_weights()[0]
    np.testing.assert_array_equal(kernel[..., 1:],
                                  imagenet_logits_model.get_layer("conv_preds").get_weights()[0])


def _keras_app(alpha, size=128):
    ka = keras.applications.MobileNet(weights=None, alpha=alpha, input_shape=(size, size, 3))
    rng = np.random.default_rng(1)
    ka.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in ka.get_weights()])
    return ka


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_keras_applications_file_converts_and_loads(tmp_path, suffix):
    ka = _keras_app(0.5)
    src = tmp_path / f"mobilenet_5_0_128{suffix}"
    ka.save(src)
    out = tmp_path / "k.weights.h5"
    assert convert_main([str(src), "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["alpha"] == 0.5 and meta["num_classes"] == 1000
    ours = MobileNetClassifier(MobileNetBackbone(alpha=0.5, input_shape=(128, 128, 3)))
    ours.load_weights(str(out))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), ka.predict(x, verbose=0), atol=1e-5)


def _slim_tensors(alpha=0.25, classes=1001, seed=0):
    """Names and shapes of the TF-slim release (mobilenet_v1.py, 1001 logits)."""
    rng = np.random.default_rng(seed)
    ref = MobileNetClassifier(MobileNetBackbone(alpha=alpha, input_shape=(128, 128, 3)), classes)
    tensors = {}
    for layer_name, (scope, names) in slim_layer_map().items():
        layer = ref.backbone.get_layer(layer_name)
        for var, name in zip(layer.weights, names):
            shape = tuple(var.shape)
            if name in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            else:
                value = rng.normal(0, 0.2 if name != "beta" else 0.1, shape)
            tensors[f"{scope}/{name}"] = value.astype("float32")
    depth = ref.backbone.out_channels
    tensors["MobilenetV1/Logits/Conv2d_1c_1x1/weights"] = rng.normal(
        0, 0.1, (1, 1, depth, classes)
    ).astype("float32")
    tensors["MobilenetV1/Logits/Conv2d_1c_1x1/biases"] = rng.normal(0, 0.1, classes).astype(
        "float32"
    )
    return tensors


def _write_checkpoint(tensors, prefix):
    with tf.Graph().as_default():
        variables = [tf.compat.v1.Variable(v, name=k) for k, v in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(prefix))


def _slim_forward(t, x):
    """An independent TF-slim forward pass in raw TF ops ('SAME', BN eps 1e-3, ReLU6)."""

    def bn(h, scope):
        return tf.nn.relu6(
            tf.nn.batch_normalization(
                h,
                t[f"{scope}/BatchNorm/moving_mean"],
                t[f"{scope}/BatchNorm/moving_variance"],
                t[f"{scope}/BatchNorm/beta"],
                t[f"{scope}/BatchNorm/gamma"],
                1e-3,
            )
        )

    h = bn(tf.nn.conv2d(x, t["MobilenetV1/Conv2d_0/weights"], 2, "SAME"), "MobilenetV1/Conv2d_0")
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    for i, s in enumerate(strides, 1):
        dw = f"MobilenetV1/Conv2d_{i}_depthwise"
        pw = f"MobilenetV1/Conv2d_{i}_pointwise"
        h = bn(tf.nn.depthwise_conv2d(h, t[f"{dw}/depthwise_weights"], [1, s, s, 1], "SAME"), dw)
        h = bn(tf.nn.conv2d(h, t[f"{pw}/weights"], 1, "SAME"), pw)
    h = tf.reduce_mean(h, [1, 2], keepdims=True)
    logits = tf.nn.conv2d(h, t["MobilenetV1/Logits/Conv2d_1c_1x1/weights"], 1, "SAME")
    return (logits + t["MobilenetV1/Logits/Conv2d_1c_1x1/biases"])[:, 0, 0, :].numpy()


def test_synthetic_slim_checkpoint_alpha_025_128_converts_exactly(tmp_path):
    tensors = _slim_tensors()
    prefix = _write_checkpoint(tensors, tmp_path / "mobilenet_v1_0.25_128.ckpt")
    out = tmp_path / "slim.weights.h5"
    meta = convert(prefix, out)
    assert (meta["alpha"], meta["input_size"], meta["num_classes"]) == (0.25, 128, 1000)
    model = MobileNetClassifier(
        MobileNetBackbone(alpha=0.25, rho=0.571), classifier_activation=None
    )
    model.load_weights(str(out))
    x = np.random.default_rng(3).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    ref = _slim_forward(tensors, x)
    np.testing.assert_allclose(model.predict(x, verbose=0), ref[:, 1:], atol=1e-4)


def test_converter_names_a_missing_tensor(tmp_path):
    tensors = _slim_tensors()
    del tensors["MobilenetV1/Conv2d_7_pointwise/weights"]
    prefix = _write_checkpoint(tensors, tmp_path / "broken.ckpt")
    out = tmp_path / "never.weights.h5"
    with pytest.raises(ValueError, match="Conv2d_7_pointwise/weights"):
        convert(prefix, out)
    assert not out.exists()


def test_converter_names_a_shape_mismatch(tmp_path):
    tensors = _slim_tensors()
    tensors["MobilenetV1/Conv2d_3_pointwise/weights"] = np.zeros((1, 1, 32, 40), "float32")
    prefix = _write_checkpoint(tensors, tmp_path / "bad_shape.ckpt")
    with pytest.raises(ValueError) as err:
        convert(prefix, tmp_path / "never.weights.h5")
    message = str(err.value)
    assert "conv_pw_3" in message and "(1, 1, 32, 32)" in message and "(1, 1, 32, 40)" in message


def test_converter_cli_reports_errors_without_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(tmp_path / "nothing.h5"), "--out", str(tmp_path / "o.weights.h5")])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_preset_loads_into_any_input_size_and_dynamic_shape():
    fixed = MobileNetBackbone.from_preset(PRESET)
    dynamic = MobileNetBackbone.from_preset(PRESET, input_shape=(None, None, 3))
    for a, b in zip(iter_weighted_layers(fixed), iter_weighted_layers(dynamic)):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    out = dynamic(np.zeros((1, 300, 300, 3), "float32"))
    assert out.shape == (1, 10, 10, 1024)


def test_preset_into_other_alpha_fails_clearly():
    with pytest.raises(ValueError, match="alpha=1.0.*alpha=0.5"):
        MobileNetBackbone(alpha=0.5, weights=PRESET)


def test_classifier_with_other_classes_points_to_backbone_weights():
    with pytest.raises(ValueError, match="load them into the backbone"):
        MobileNetClassifier(num_classes=10, weights=PRESET)
    # ...and the suggested form works: pretrained backbone, fresh 10-class head.
    model = MobileNetClassifier(MobileNetBackbone(weights=PRESET), num_classes=10)
    assert model.output_shape == (None, 10)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError) as err:
        MobileNetBackbone.from_preset("mobilenet_v1_9.0_999")
    assert "mobilenet_v1_9.0_999" in str(err.value) and PRESET in str(err.value)
    with pytest.raises(ValueError, match=PRESET):
        MobileNetBackbone(weights="no_such_preset_or_file")


def test_checksum_mismatch_refuses_to_load(tmp_path, monkeypatch):
    shutil.copytree(presets.weights_dir(), tmp_path / "w")
    manifest = json.loads((tmp_path / "w/manifest.json").read_text())
    with open(tmp_path / "w" / manifest[PRESET]["file"], "r+b") as f:
        f.seek(-16, 2)
        f.write(b"corrupted bytes!")
    monkeypatch.setenv(presets.ENV_WEIGHTS_DIR, str(tmp_path / "w"))
    with pytest.raises(ValueError, match="sha256"):
        MobileNetBackbone(weights=PRESET)


def test_manifest_records_provenance_and_matches_file():
    meta = presets.get_preset(PRESET)
    for key in ("alpha", "input_size", "num_classes", "sha256", "source", "license"):
        assert meta[key] not in (None, "")
    assert meta["published_top1"] == 70.9
    assert presets.sha256_of(presets.preset_path(PRESET)) == meta["sha256"]


def test_classify_cli_prints_top5_for_a_photo(tmp_path):
    import subprocess

    from PIL import Image

    path = tmp_path / "coffee.png"
    Image.fromarray(skdata.coffee()).save(path)
    out = subprocess.run([sys.executable, "-m", "mobilenet_zoo.classify", str(path)],
                         capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == str(path) and "espresso" in lines[1] and len(lines) == 6
    (tmp_path / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    bad = subprocess.run([sys.executable, "-m", "mobilenet_zoo.classify", str(tmp_path / "none.jpg"),
                          str(tmp_path / "truncated.jpg"), str(path)], capture_output=True, text=True)
    # Unreadable files are named and skipped; the others are classified; exit code 1: some skipped.
    assert bad.returncode == 1 and "no such file" in bad.stderr and "truncated.jpg" in bad.stderr
    assert "espresso" in bad.stdout
