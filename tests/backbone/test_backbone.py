import keras
import numpy as np
import pytest

from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, preprocess_input
from mobilenet_zoo.weights_io import iter_weighted_layers

ALPHAS = [0.25, 0.5, 0.75, 1.0]
# keras.applications.MobileNet(weights=None) parameter counts (model.count_params() of Keras 3's
# keras/src/applications/mobilenet.py).
KERAS_PARAMS = {
    0.25: (475_544, 218_544),
    0.5: (1_342_536, 829_536),
    0.75: (2_601_976, 1_832_976),
    1.0: (4_253_864, 3_228_864),
}


def _copy_from_keras_app(ours, ka):
    for layer in iter_weighted_layers(ours):
        layer.set_weights(ka.get_layer(layer.name).get_weights())


def _randomize_bn(model, rng):
    # Default BN stats are identity; random ones make the parity check bite.
    for layer in iter_weighted_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape),
                    rng.normal(0, 0.1, b.shape),
                    rng.normal(0, 0.1, m.shape),
                    rng.uniform(0.5, 1.5, v.shape),
                ]
            )


@pytest.mark.parametrize("alpha", ALPHAS)
def test_param_counts_equal_keras_applications(alpha):
    with_top, without_top = KERAS_PARAMS[alpha]
    backbone = MobileNetBackbone(alpha=alpha)
    assert backbone.count_params() == without_top
    assert MobileNetClassifier(backbone).count_params() == with_top


@pytest.mark.parametrize("alpha", ALPHAS)
def test_outputs_equal_keras_applications_after_copy_by_name(alpha, rng):
    ka = keras.applications.MobileNet(weights=None, alpha=alpha, input_shape=(128, 128, 3))
    _randomize_bn(ka, rng)
    ours = MobileNetClassifier(MobileNetBackbone(alpha=alpha, input_shape=(128, 128, 3)))
    _copy_from_keras_app(ours, ka)
    x = rng.uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), ka.predict(x, verbose=0), atol=1e-5)
    ka_features = keras.Model(ka.inputs, ka.get_layer("conv_pw_13_relu").output)
    np.testing.assert_allclose(
        ours.backbone.predict(x, verbose=0), ka_features.predict(x, verbose=0), atol=1e-5
    )


def test_odd_input_size_uses_tf_same_padding(rng):
    """At odd sides TF 'SAME' pads (1, 1) for stride 2, keras.applications pads (0, 1)."""
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(33, 33, 3))
    x = rng.uniform(-1, 1, (1, 33, 33, 3)).astype("float32")
    kernel = backbone.get_layer("conv1").get_weights()[0]
    ref = keras.ops.convert_to_numpy(
        __import__("tensorflow").nn.conv2d(x, kernel, strides=2, padding="SAME")
    )
    conv1 = keras.Model(backbone.inputs, backbone.get_layer("conv1").output)
    np.testing.assert_allclose(conv1.predict(x, verbose=0), ref, atol=1e-5)
    assert backbone.endpoints["conv1"].shape[1:3] == (17, 17)


def test_layer_names_match_keras_applications():
    ka = keras.applications.MobileNet(weights=None, alpha=0.5)
    ours = MobileNetClassifier(MobileNetBackbone(alpha=0.5))
    ka_names = {layer.name for layer in iter_weighted_layers(ka)}
    our_names = {layer.name for layer in iter_weighted_layers(ours)}
    assert ka_names == our_names
    relus = {layer.name for layer in ka.layers if layer.name.endswith("_relu")}
    assert relus <= {layer.name for layer in ours.backbone.layers}


@pytest.mark.parametrize(
    "size,expected",
    [
        (224, {"P1": 112, "P2": 56, "P3": 28, "P4": 14, "P5": 7}),
        (300, {"P1": 150, "P2": 75, "P3": 38, "P4": 19, "P5": 10}),
    ],
)
def test_pyramid_levels_have_the_stride_of_their_name(size, expected):
    backbone = MobileNetBackbone(input_shape=(size, size, 3))
    sides = {k: v.shape[1] for k, v in backbone.pyramid_outputs.items()}
    assert sides == expected
    channels = {k: v.shape[-1] for k, v in backbone.pyramid_outputs.items()}
    assert channels == {"P1": 64, "P2": 128, "P3": 256, "P4": 512, "P5": 1024}
    # P4/P5 are the SSD feature layers conv_pw_11 / conv_pw_13.
    assert backbone.pyramid_outputs["P4"] is backbone.endpoints["conv_pw_11"]
    assert backbone.pyramid_outputs["P5"] is backbone.endpoints["conv_pw_13"]


def test_endpoints_cover_every_layer_of_table_1():
    backbone = MobileNetBackbone()
    expected = ["conv1"] + [f"conv_{k}_{i}" for i in range(1, 14) for k in ("dw", "pw")]
    assert sorted(backbone.endpoints) == sorted(expected)
    assert len(backbone.endpoints) == 27  # + avg pool / FC of the classifier = 28 layers


@pytest.mark.parametrize(
    "output_stride,rates",
    [
        (32, {"conv_dw_11": 1, "conv_dw_13": 1}),
        (16, {"conv_dw_11": 1, "conv_dw_12": 1, "conv_dw_13": 2}),
        (8, {"conv_dw_6": 1, "conv_dw_7": 2, "conv_dw_12": 2, "conv_dw_13": 4}),
    ],
)
def test_output_stride_uses_dilated_depthwise_convs(output_stride, rates, rng):
    backbone = MobileNetBackbone(output_stride=output_stride, input_shape=(None, None, 3))
    for name, rate in rates.items():
        assert backbone.get_layer(name).dilation_rate == (rate, rate)
        assert backbone.get_layer(name).strides == (1, 1) or rate == 1
    out = backbone(rng.uniform(-1, 1, (1, 224, 224, 3)).astype("float32"))
    assert out.shape == (1, 224 // output_stride, 224 // output_stride, 1024)


@pytest.mark.parametrize("size", [(224, 224), (300, 300), (97, 161)])
def test_dynamic_input_accepts_any_size(size, rng):
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3))
    out = backbone(rng.uniform(-1, 1, (1, *size, 3)).astype("float32"))
    assert out.shape[1:3] == tuple(-(-s // 32) for s in size)


def test_rho_sets_the_input_side():
    for rho, side in [(1.0, 224), (0.857, 192), (0.714, 160), (0.571, 128)]:
        assert MobileNetBackbone(alpha=0.25, rho=rho).inputs[0].shape[1:] == (side, side, 3)


def test_alpha_any_positive_value_and_min_depth_floor():
    backbone = MobileNetBackbone(alpha=0.1)
    assert backbone.endpoints["conv1"].shape[-1] == 8  # max(int(32 * 0.1), 8)
    assert backbone.out_channels == 102
    wide = MobileNetBackbone(alpha=1.3, input_shape=(64, 64, 3))
    assert wide.out_channels == int(1024 * 1.3)


def test_depth_multiplier_multiplies_depthwise_channels():
    backbone = MobileNetBackbone(alpha=0.25, depth_multiplier=2)
    assert backbone.endpoints["conv_dw_1"].shape[-1] == 16  # 8 input channels x 2


def test_variants_full_and_shallow():
    full = MobileNetBackbone(variant="full")
    assert not any(isinstance(la, keras.layers.DepthwiseConv2D) for la in full.layers)
    shallow = MobileNetBackbone(variant="shallow")
    names = {la.name for la in shallow.layers}
    assert "conv_dw_7" not in names and "conv_pw_11" not in names
    assert shallow.pyramid_outputs["P4"] is shallow.endpoints["conv_pw_6"]
    assert shallow.output_shape == (None, 7, 7, 1024)


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, rng):
    model = MobileNetClassifier(
        MobileNetBackbone(alpha=0.25, rho=0.571, output_stride=16), num_classes=7
    )
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MobileNetClassifier)
    assert isinstance(loaded.backbone, MobileNetBackbone)
    assert loaded.backbone.get_config() == model.backbone.get_config()
    x = rng.uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    bpath = tmp_path / "b.keras"
    model.backbone.save(bpath)
    np.testing.assert_array_equal(
        keras.saving.load_model(bpath).predict(x, verbose=0),
        model.backbone.predict(x, verbose=0),
    )


def test_backbone_trains_inside_user_functional_and_sequential_models(rng):
    x = rng.uniform(-1, 1, (8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    inputs = keras.Input((64, 64, 3))
    features = MobileNetBackbone(alpha=0.5, input_shape=(64, 64, 3))(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(features)
    )
    functional = keras.Model(inputs, outputs)
    seq = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            MobileNetBackbone(alpha=0.5, input_shape=(64, 64, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    for model in (functional, seq):
        model.compile("sgd", "sparse_categorical_crossentropy")
        before = [w.copy() for w in model.get_weights()]
        history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_classifier_with_preprocessing_takes_uint8_pixels(rng):
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3))
    raw = MobileNetClassifier(backbone, num_classes=4, include_preprocessing=True)
    plain = MobileNetClassifier(backbone, num_classes=4)
    plain.set_weights(raw.get_weights())
    img = rng.integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    np.testing.assert_allclose(
        raw.predict(img, verbose=0), plain.predict(preprocess_input(img), verbose=0), atol=1e-6
    )
    probs = raw.predict(img, verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_preprocess_input_matches_keras_applications(rng):
    img = rng.integers(0, 256, (2, 8, 8, 3)).astype("float32")
    ref = keras.applications.mobilenet.preprocess_input(img.copy())
    np.testing.assert_allclose(preprocess_input(img), ref, atol=1e-6)
    assert preprocess_input(np.array([0, 255], dtype="uint8")).tolist() == [-1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"alpha": 0}, ["alpha", "0", "> 0"]),
        ({"alpha": -0.5}, ["alpha", "-0.5"]),
        ({"rho": 1.2}, ["rho", "1.2", "(0, 1]"]),
        ({"rho": 0}, ["rho", "(0, 1]"]),
        ({"rho": 0.1}, ["rho", "22", "32"]),
        ({"input_shape": (16, 16, 3)}, ["input_shape", "16", "32"]),
        ({"input_shape": (224, 224)}, ["input_shape", "(height, width, channels)"]),
        ({"output_stride": 4}, ["output_stride", "4", "(8, 16, 32)"]),
        ({"variant": "deep"}, ["variant", "deep", "separable"]),
        ({"depth_multiplier": 0}, ["depth_multiplier", "0", ">= 1"]),
        ({"rho": 0.5, "input_shape": (224, 224, 3)}, ["rho", "112", "input_shape"]),
        (
            {"input_shape": (224, 224, 1), "weights": "mobilenet_v1_1.0_224_imagenet"},
            ["weights", "1 channels"],
        ),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, words):
    with pytest.raises(ValueError) as err:
        MobileNetBackbone(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_grayscale_input_from_scratch_is_allowed_but_not_with_preprocessing():
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 1))
    assert backbone.inputs[0].shape[-1] == 1
    with pytest.raises(ValueError, match="include_preprocessing"):
        MobileNetClassifier(backbone, include_preprocessing=True)
    with pytest.raises(ValueError, match="num_classes"):
        MobileNetClassifier(backbone, num_classes=0)


def test_freeze_until_freezes_the_layers_up_to_a_pyramid_level():
    backbone = MobileNetBackbone(alpha=0.25)
    frozen = backbone.freeze_until("P3")
    assert frozen[-1] == "conv_pw_5_relu" and "conv_dw_6" not in frozen
    assert not backbone.get_layer("conv_pw_5").trainable and not backbone.get_layer("conv_pw_5_bn").trainable
    assert backbone.get_layer("conv_dw_6").trainable
    trainable = {v.path.split("/")[0] for v in backbone.trainable_weights}
    assert "conv1" not in trainable and "conv_pw_13" in trainable
    assert backbone.freeze_until(None) == [] and backbone.get_layer("conv1").trainable
    with pytest.raises(ValueError, match="P1"):
        backbone.freeze_until("P9")
