"""Careless use of export, folding, weight loading, resume and checkpoints (issue 21, part B).

Each test does what a careless user would do and pins down that the request is
refused clearly before the slow step (or honoured), that nothing is left
behind, and that nothing silently wrong comes out.
"""

import glob
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_zoo import SSD, MobileNetBackbone, MobileNetClassifier, export
from mobilenet_zoo.export import TFLiteRunner, export_saved_model, to_tflite
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.training import run as training
from mobilenet_zoo.weights_io import NonFiniteWeightsError, load_by_name, save_by_name


def _classifier(num_classes=3, seed=0):
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)),
                                num_classes=num_classes, include_preprocessing=True)
    # He-normal kernels everywhere (the default init fades to ~1e-17 through 14 layers):
    # images of different content then get different classes.
    rng = np.random.default_rng(seed)
    for layer in model.backbone.layers + [model.get_layer("conv_preds")]:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel, *rest = layer.get_weights()
            fan_in = np.prod(kernel.shape[:2]) * (1 if isinstance(layer, keras.layers.DepthwiseConv2D)
                                                  else kernel.shape[2])
            scale = np.sqrt(2 / fan_in) * (300 if layer.name == "conv_preds" else 1)  # clear margins
            layer.set_weights([rng.normal(0, scale, kernel.shape).astype("float32"), *rest])
    return model


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _litter(folder):
    return glob.glob(os.path.join(folder, "*.tmp-*")) + glob.glob(os.path.join(folder, ".*tmp*")) + \
        glob.glob(os.path.join(folder, ".export-*"))


# ----------------------------------------------------------------------------
# Export: requests that cannot be honoured are errors, before the conversion
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("samples", [[], (x for x in ()), lambda: []], ids=["list", "generator", "function"])
def test_int8_export_without_calibration_samples_is_refused_not_written_as_float32(tmp_path, samples):
    target = tmp_path / "model.tflite"
    with pytest.raises(ValueError, match="got none. Without them the converter would write a float32"):
        to_tflite(_classifier(), target, quantize="int8", representative_data=samples)
    assert os.listdir(tmp_path) == []


def test_int8_calibration_images_of_another_size_are_refused(tmp_path):
    wrong = [_images(1, size=64)]
    with pytest.raises(ValueError, match=r"shape \(1, 32, 32, 3\).*item 0 has shape \(1, 64, 64, 3\)"):
        to_tflite(_classifier(), tmp_path / "m.tflite", quantize="int8", representative_data=wrong)
    with pytest.raises(ValueError, match="non-finite"):
        to_tflite(_classifier(), quantize="int8", representative_data=[np.full((1, 32, 32, 3), np.nan)])
    assert os.listdir(tmp_path) == []


def test_calibration_samples_without_int8_are_refused_instead_of_ignored():
    with pytest.raises(ValueError, match="only used by quantize='int8'"):
        to_tflite(_classifier(), quantize="float16", representative_data=[_images(1)])


def test_int8_export_takes_samples_with_or_without_the_batch_axis():
    x = _images(4)
    flat = to_tflite(_classifier(), quantize="int8", representative_data=[x[0], x[1:2], x[2]])
    interpreter = tf.lite.Interpreter(model_content=flat)
    kinds = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in kinds  # calibrated: integer tensors inside, not a float32 model


def test_classifier_exports_class_ids_with_argmax():
    model, x = _classifier(), _images(4)
    expected = model.predict(x, verbose=0).argmax(-1)
    assert len(set(expected.tolist())) > 1  # the check below could not pass by chance
    runner = TFLiteRunner(to_tflite(model, argmax=True))
    got = np.concatenate([next(iter(runner(xi[None]).values())) for xi in x])
    assert got.dtype == np.int32 and got.tolist() == expected.tolist()


def test_argmax_is_refused_for_detectors_and_backbones():
    ssd = SSD(MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3), min_depth=8), num_classes=2)
    with pytest.raises(ValueError, match="SSD already exports its final results"):
        to_tflite(ssd, argmax=True)
    with pytest.raises(ValueError, match="a backbone has no classes"):
        to_tflite(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), argmax=True)
    with pytest.raises(ValueError, match="`serving_function` replaces the exported function"):
        to_tflite(_classifier(), serving_function=lambda x: x, argmax=True)


def test_export_onto_a_folder_or_under_a_file_fails_at_once_and_leaves_nothing(tmp_path):
    model = _classifier()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"a photo")
    (tmp_path / "notes.txt").write_text("x")
    start = time.time()
    with pytest.raises(ValueError, match="is a folder; the export needs a file name inside it"):
        to_tflite(model, tmp_path / "photos")
    with pytest.raises(ValueError, match="is a file, not a folder. Nothing was converted"):
        to_tflite(model, tmp_path / "notes.txt" / "model.tflite")
    with pytest.raises(ValueError, match="holds other files .* not replaced"):
        export_saved_model(model, tmp_path / "photos")
    with pytest.raises(ValueError, match="is a file; a SavedModel is a folder"):
        export_saved_model(model, tmp_path / "notes.txt")
    assert time.time() - start < 5  # refused before any conversion (a conversion takes several s)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "photos"]
    assert os.listdir(tmp_path / "photos") == ["cat.jpg"]
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"a photo"


def test_a_failed_conversion_leaves_no_temporary_file_and_keeps_the_old_export(tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"the previous export")

    def broken(*args, **kwargs):
        raise RuntimeError("converter failed")

    monkeypatch.setattr(export.tflite, "_convert", broken)
    with pytest.raises(RuntimeError, match="converter failed"):
        to_tflite(_classifier(), target)
    assert target.read_bytes() == b"the previous export"
    assert _litter(str(tmp_path)) == []


def test_a_failed_saved_model_export_keeps_the_earlier_one_and_leaves_no_temporary_folder(
        tmp_path, monkeypatch):
    model = _classifier()
    path = export_saved_model(model, tmp_path / "served")
    before = sorted(os.listdir(path))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export.tflite, "_write_archive", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, tmp_path / "served")
    assert sorted(os.listdir(path)) == before and "saved_model.pb" in before
    assert _litter(str(tmp_path)) == []


# ----------------------------------------------------------------------------
# Folding and loading refuse non-finite weights, naming the layer
# ----------------------------------------------------------------------------
def _nan_bn(model, layer="conv_dw_3_bn"):
    bn = model.backbone.get_layer(layer)
    bn.moving_variance.assign(np.full(bn.moving_variance.shape, np.nan, "float32"))
    return model


def test_folding_a_model_with_nan_batchnorm_statistics_is_refused_naming_the_layer():
    model = _nan_bn(_classifier())
    assert np.isnan(model.predict(_images(1), verbose=0)).all()  # the original says NaN...
    with pytest.raises(NonFiniteWeightsError, match=r"layer `conv_dw_3_bn`: moving_variance \(32 NaN"):
        fold_batch_norm(model)  # ...and its folded copy must not hide it
    with pytest.raises(NonFiniteWeightsError, match="conv_dw_3_bn"):
        to_tflite(model)  # export folds first


def test_folding_refuses_a_negative_batchnorm_variance():
    model = _classifier()
    bn = model.backbone.get_layer("conv_pw_2_bn")
    bn.moving_variance.assign(-np.ones(bn.moving_variance.shape, "float32"))
    with pytest.raises(NonFiniteWeightsError, match="negative moving_variance: `conv_pw_2_bn`"):
        fold_batch_norm(model)


def test_loading_a_weights_file_with_nan_names_layer_and_file_and_loads_nothing(tmp_path):
    path = tmp_path / "diverged.h5"
    save_by_name(_nan_bn(_classifier()), path)
    fresh = _classifier(seed=1)
    before = [w.copy() for w in fresh.get_weights()]
    with pytest.raises(NonFiniteWeightsError, match=rf"{path}.*conv_dw_3_bn.*nothing was loaded"):
        load_by_name(fresh, path)
    for a, b in zip(before, fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(NonFiniteWeightsError, match="conv_dw_3_bn"):
        fresh.load_weights(str(path))  # the same file through Keras' load_weights


def test_a_keras_weights_file_with_nan_is_refused_on_load(tmp_path):
    path = str(tmp_path / "diverged.weights.h5")
    _nan_bn(_classifier()).save_weights(path)
    with pytest.raises(NonFiniteWeightsError, match=rf"{path} has non-finite.*conv_dw_3_bn.*do not use it"):
        _classifier().load_weights(path)


def test_detect_refuses_a_model_file_with_nan_weights_naming_the_layer(tmp_path, capsys):
    from PIL import Image

    from mobilenet_zoo.cli import common as cli
    from mobilenet_zoo.cli.detect import main as detect_main

    ssd = SSD(MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3), min_depth=8), num_classes=2)
    _nan_bn(ssd).save(tmp_path / "diverged.keras")
    Image.new("RGB", (64, 64)).save(tmp_path / "photo.png")
    with pytest.raises(SystemExit) as exit_info:
        detect_main([str(tmp_path / "photo.png"), "--model", str(tmp_path / "diverged.keras"),
                     "--out", str(tmp_path / "out")])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "diverged.keras has non-finite weights" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_preset_head_with_nan_is_refused_before_anything_is_set():
    from mobilenet_zoo.weights_io import assign_matching

    model = _classifier(seed=1)
    weights = {layer.name: layer.get_weights() for layer in model.backbone.layers if layer.weights}
    weights["conv1"] = [np.full_like(w, np.inf) for w in weights["conv1"]]
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(NonFiniteWeightsError, match=r"layer `conv1`: .*inf"):
        assign_matching(model, weights, source="a preset")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------
# Resume: identity checked, history complete, same result as uninterrupted
# ----------------------------------------------------------------------------
def _tiny_net():
    """A small plain Keras net with dropout: resume is the same for every Keras model, and
    this one traces in a fraction of a MobileNet's time."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)  # random masks: their seed state must resume too
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(keras.optimizers.RMSprop(0.01), "sparse_categorical_crossentropy")
    return model


def test_resume_with_another_configuration_is_refused_naming_each_difference(tmp_path):
    x, y = _images(16, size=8), np.arange(16) % 3
    first = {"config": {"learning_rate": 0.01, "epochs": 2}, "data": "sha256:aaa"}
    _tiny_net().fit(x, y, batch_size=8, epochs=1, verbose=0,
                    callbacks=training.standard_callbacks(str(tmp_path), False, identity=first))
    backup = sorted(os.listdir(tmp_path / "backup"))
    other = {"config": {"learning_rate": 0.1, "epochs": 2}, "data": "sha256:bbb"}
    with pytest.raises(training.RunMismatchError,
                       match=r"config.learning_rate: 0.01 there, 0.1 now; data: 'sha256:aaa' there"):
        training.standard_callbacks(str(tmp_path), True, identity=other)
    assert sorted(os.listdir(tmp_path / "backup")) == backup  # nothing was changed
    training.standard_callbacks(str(tmp_path), True, identity=first)  # the same run resumes


def test_resume_of_a_folder_without_a_record_is_refused(tmp_path):
    x, y = _images(16, size=8), np.arange(16) % 3
    _tiny_net().fit(x, y, batch_size=8, epochs=1, verbose=0,
                    callbacks=training.standard_callbacks(str(tmp_path), False))  # no identity
    with pytest.raises(training.RunMismatchError, match="without a record of its configuration"):
        training.standard_callbacks(str(tmp_path), True, identity={"data": "x"})


def test_a_recipe_resume_with_other_flags_exits_naming_them(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    training.add_common_flags(parser, str(tmp_path / "run"))

    def callbacks(argv):
        return training.RunContext.start(training.run_options(parser.parse_args(argv))).callbacks()

    callbacks([])  # a first run records its flags
    with pytest.raises(SystemExit, match=r"error: --resume: .* flags.learning_rate: 0.1 there, 0.2 now"):
        callbacks(["--resume", "--learning-rate", "0.2"])
    # how to run, and how far: not identity (a larger --epochs extends the same run)
    callbacks(["--resume", "--verbose", "0", "--epochs", "3"])


def test_smoke_runs_default_to_their_own_folder():
    from recipes import tradeoff as recipe

    assert recipe.parse_args([]).out == "runs/tradeoff"
    assert recipe.parse_args(["--smoke"]).out == "runs/tradeoff-smoke"
    assert recipe.parse_args(["--smoke", "--out", "mine"]).out == "mine"
    assert recipe.parse_args(["--out", "mine", "--smoke"]).out == "mine"


def _write_fashion_mnist(folder: Path, seed: int) -> None:
    import gzip
    import struct

    rng = np.random.default_rng(seed)
    for split, n in (("train", 8), ("t10k", 4)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))),
                            ("labels-idx1", np.arange(n) % 10)):
            header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_tradeoff_resume_refuses_runs_trained_on_other_data_or_with_another_schedule(tmp_path):
    """The sweep's --resume used to table any finished run in --out, e.g. a --smoke run's."""
    from mobilenet_zoo.training import tradeoff
    from recipes import tradeoff as recipe

    data = tmp_path / "fashion"
    data.mkdir()
    _write_fashion_mnist(data, seed=0)
    out = tmp_path / "sweep"
    sweep = ["--alphas", "0.25", "--sizes", "32", "--no-ablations", "--seeds", "1", "--seed-points", "",
             "--train-examples", "0", "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1",
             "--data-dir", str(data), "--out", str(out), "--verbose", "0"]
    # What a finished run on mock data leaves in --out (results.json and its identity).
    run = tradeoff.Run(0.25, 32)
    args = recipe.parse_args(sweep)
    config = recipe.dataclasses.replace(recipe.SWEEP, epochs=1, batch_size=4, steps_per_epoch=1)
    folder = out / run.key
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"mult_adds_m": 1.0, "measured": {"top1": 0.9},
                                                     "config": {"epochs": 1}}))
    training.check_run_identity(str(folder), tradeoff.run_identity(run, config, 10, 8, "sha256:mock"),
                                resume=False)
    assert args.out == str(out)
    with pytest.raises(SystemExit, match=r"another configuration or data.*data: 'sha256:mock' there, "
                                         r"'sha256:[0-9a-f]{64}' now"):
        recipe.main(sweep + ["--resume"])
    # The same data, but a finished run of 1 epoch cannot stand for one of 2.
    fingerprint = recipe.load_data(args, args.seed)[4]
    training.check_run_identity(str(folder), tradeoff.run_identity(run, config, 10, 8, fingerprint),
                                resume=False)
    with pytest.raises(SystemExit, match=r"finished run of another schedule.*config.epochs: 1 there, 2 now"):
        recipe.main(sweep + ["--resume", "--epochs", "2"])
    assert sorted(os.listdir(folder)) == ["results.json", "run_identity.json"]  # nothing changed


def test_a_resumed_run_has_the_whole_history_and_the_result_of_an_uninterrupted_one(tmp_path):
    x, y = _images(24, size=8), np.arange(24) % 3
    identity = {"config": "tiny", "data": training.data_fingerprint(x, y)}

    def fit(out, resume=False, extra=()):
        model = _tiny_net()
        # A seeded, shuffled, repeated stream like trainer.run's, less a resumed run's done epochs.
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, reshuffle_each_iteration=True)
        ds = training.skip_done_epochs(ds.batch(8, drop_remainder=True).repeat(), str(out), resume, 3)
        callbacks = training.standard_callbacks(str(out), resume, identity=identity) + list(extra)
        history = model.fit(ds, epochs=3, steps_per_epoch=3, verbose=0, callbacks=callbacks)
        return history, model

    whole, whole_model = fit(tmp_path / "whole")
    with pytest.raises(training.Interrupted):
        fit(tmp_path / "cut", extra=[training.RaiseAtStep(7)])  # killed during epoch 3
    resumed, resumed_model = fit(tmp_path / "cut", resume=True)
    assert len(resumed.history["loss"]) == 3  # used to be 1: only the epoch after the resume
    assert resumed.epoch == [0, 1, 2]
    assert int(resumed_model.optimizer.iterations) == int(whole_model.optimizer.iterations) == 9
    # Same batches (finished epochs skipped), same dropout masks (seed state restored):
    np.testing.assert_allclose(resumed.history["loss"], whole.history["loss"], rtol=1e-5)
    for a, b in zip(resumed_model.get_weights(), whole_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------
# Checkpoint retention
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("keep, kept", [
    ("last-best", ["epoch_002.weights.h5", "epoch_004.weights.h5"]),
    ("last", ["epoch_004.weights.h5"]),
    ("all", [f"epoch_00{i}.weights.h5" for i in range(1, 5)]),
    ("none", []),
])
def test_checkpoints_keep_the_last_and_the_best_by_default_not_every_epoch(tmp_path, keep, kept):
    model = _tiny_net()
    callback = training.RetainedCheckpoint(str(tmp_path / "checkpoints"), keep)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, loss in enumerate([3.0, 1.0, 2.0, 4.0]):  # best: epoch 2, last: epoch 4
        callback.on_epoch_end(epoch, {"loss": loss})
    folder = tmp_path / "checkpoints"
    files = sorted(f for f in os.listdir(folder) if f.startswith("epoch_")) if folder.exists() else []
    assert files == kept
    if keep == "last-best":
        assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["epoch"] == 2


def test_every_recipe_flag_set_has_keep_checkpoints_with_a_clear_choice(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    training.add_common_flags(parser, "runs/x")
    assert parser.parse_args([]).keep_checkpoints == "last-best"
    with pytest.raises(SystemExit):
        parser.parse_args(["--keep-checkpoints", "some"])
    assert "invalid choice: 'some'" in capsys.readouterr().err
