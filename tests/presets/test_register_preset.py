"""register_preset takes the files users have and registers only what loads; from_preset
refuses presets of another task head and keeps ImageNet transfer learning (issue 28)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobilenet_zoo import (
    SSD,
    DeepLabV3,
    FasterRCNN,
    MobileNetBackbone,
    MobileNetClassifier,
    presets,
)
from mobilenet_zoo.detection import ssd_mobilenet_v1
from mobilenet_zoo.testing import randomize_batch_norm
from mobilenet_zoo.weights_io import save_by_name

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER_META = {"alpha": 0.25, "input_size": 128, "task": "MobileNetClassifier", "num_classes": 3}
SSD_META = {"alpha": 0.25, "input_size": 128, "task": "SSD", "num_classes": 2}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(presets.ENV_CACHE_DIR, str(tmp_path / "cache"))
    return tmp_path / "cache" / "presets"


def _files(model, folder: Path, stem: str) -> dict[str, Path]:
    """The three files a user has: ours (by layer name), save_weights(), save()."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"by_name": folder / f"{stem}_by_name.h5", "save_weights": folder / f"{stem}.weights.h5",
             "keras": folder / f"{stem}.keras"}
    save_by_name(model, files["by_name"])
    model.save_weights(files["save_weights"])
    model.save(files["keras"])
    return files


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    model = randomize_batch_norm(MobileNetClassifier(
        MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3)), num_classes=3), 3)
    return model, _files(model, tmp_path_factory.mktemp("classifier"), "clf")


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(4)
    model = randomize_batch_norm(ssd_mobilenet_v1(num_classes=2, alpha=0.25, image_size=128,
                                                  weights=None), 4)
    return model, _files(model, tmp_path_factory.mktemp("detector"), "ssd")


def _images(low: float, high: float) -> np.ndarray:
    return np.random.default_rng(0).uniform(low, high, (2, 128, 128, 3)).astype("float32")


@pytest.mark.parametrize("kind", ["by_name", "save_weights", "keras"])
def test_each_file_a_user_has_registers_and_from_preset_predicts_as_the_original(classifier, kind):
    model, files = classifier
    metadata = {"license": "mine"} if kind == "keras" else dict(CLASSIFIER_META)  # .keras says the rest
    presets.register_preset(f"clf_{kind}", files[kind], metadata)
    loaded = MobileNetClassifier.from_preset(f"clf_{kind}")
    x = _images(-1, 1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    entry = presets.get_preset(f"clf_{kind}")
    assert (entry["task"], entry["num_classes"], entry["alpha"], entry["input_size"]) == (
        "MobileNetClassifier", 3, 0.25, 128)


@pytest.mark.parametrize("kind", ["by_name", "save_weights", "keras"])
def test_each_detector_file_registers_and_from_preset_detects_as_the_original(detector, kind):
    model, files = detector
    presets.register_preset(f"ssd_{kind}", files[kind], {} if kind == "keras" else dict(SSD_META))
    loaded = SSD.from_preset(f"ssd_{kind}")
    assert loaded.image_size == (128, 128)  # the detector's own size, not SSD's default 300
    x = _images(0, 255)
    ours, theirs = loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    for key in theirs:
        np.testing.assert_allclose(np.asarray(ours[key], "float64"),
                                   np.asarray(theirs[key], "float64"), atol=1e-5, err_msg=key)


def test_a_save_weights_file_with_wrong_metadata_is_refused_in_a_few_lines(classifier, cache):
    _, files = classifier
    with pytest.raises(ValueError, match=r"cannot be honoured.*save_weights.*model\.keras") as err:
        presets.register_preset("clf", files["save_weights"], dict(CLASSIFIER_META, num_classes=1000))
    assert len(str(err.value)) < 1500  # not Keras' 54-layer dump
    assert "clf" not in presets.list_presets() and not (cache / "clf.weights.h5").exists()


def test_a_keras_file_refuses_metadata_that_contradicts_it(classifier):
    _, files = classifier
    with pytest.raises(ValueError, match=r"contradicts.*num_classes=5 \(the file: 3\)"):
        presets.register_preset("clf", files["keras"], {"num_classes": 5, "task": "MobileNetClassifier"})
    assert "clf" not in presets.list_presets()


def test_a_second_registration_of_a_name_is_refused_unless_overwrite(classifier, detector, cache):
    presets.register_preset("mine", classifier[1]["by_name"], dict(CLASSIFIER_META))
    with pytest.raises(ValueError, match=r"'mine' is already registered \(task MobileNetClassifier, "
                                         r"file .*mine\.weights\.h5\).*overwrite=True"):
        presets.register_preset("mine", detector[1]["keras"])
    assert presets.get_preset("mine")["task"] == "MobileNetClassifier"  # the first one kept
    presets.register_preset("mine", detector[1]["keras"], overwrite=True)
    assert presets.get_preset("mine")["task"] == "SSD"
    assert SSD.from_preset("mine").image_size == (128, 128)


def test_register_preset_checks_its_argument_types(classifier):
    file = classifier[1]["by_name"]
    cases = [
        (dict(name=3, source=file, metadata=CLASSIFIER_META), r"`name` must be a str"),
        (dict(name="x", source=3, metadata=CLASSIFIER_META), r"`source` must be a file path \(str or os\.PathLike\)"),
        (dict(name="x", source=file, metadata=list(CLASSIFIER_META.items())),
         r"`metadata` must be a dict.*`alpha` and `input_size` are required.*got list"),
        (dict(name="x", source=file, metadata=CLASSIFIER_META, sha256=123), r"`sha256` must be a str of 64"),
        (dict(name="x", source=file, metadata=CLASSIFIER_META, overwrite="yes"), r"`overwrite` must be True or False"),
        (dict(name="x", source=file, metadata=dict(CLASSIFIER_META, num_classes="3")),
         r"metadata\['num_classes'\]` must be an int"),
    ]
    for kwargs, message in cases:
        with pytest.raises(TypeError, match=message):
            presets.register_preset(**kwargs)
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        presets.register_preset("x", file, CLASSIFIER_META, sha256="abc")
    with pytest.raises(ValueError, match=r"'num_clases' .*did you mean 'num_classes'"):
        presets.register_preset("x", file, {"alpha": 0.25, "input_size": 128,
                                            "task": "MobileNetClassifier", "num_clases": 3})
    with pytest.raises(ValueError, match=r"needs \['input_size'\]"):
        presets.register_preset("x", file, {"alpha": 0.25})
    assert "x" not in presets.list_presets()


def test_tasks_refuse_presets_of_another_task_head():
    for cls in (MobileNetClassifier, FasterRCNN, DeepLabV3):
        with pytest.raises(ValueError, match=(
                r"ssd_mobilenet_v1_face_512 is an SSD preset \(a detector\); .*"
                r"SSD\.from_preset\('ssd_mobilenet_v1_face_512'\), or MobileNetBackbone\.from_preset")):
            cls.from_preset(presets.FACE_SSD, num_classes=3)


def test_a_registered_detector_preset_is_refused_by_the_classifier(detector):
    presets.register_preset("faces", detector[1]["keras"])
    with pytest.raises(ValueError, match=r"faces is an SSD preset \(a detector\)"):
        MobileNetClassifier.from_preset("faces")
    assert MobileNetBackbone.from_preset("faces").alpha == 0.25  # its backbone stays reusable


def test_imagenet_and_backbone_presets_still_initialise_any_task(tmp_path):
    reference = MobileNetBackbone.from_preset(presets.IMAGENET)
    ssd = SSD.from_preset(presets.IMAGENET, num_classes=3, image_size=128)
    np.testing.assert_array_equal(ssd.backbone.get_layer("conv_pw_13").get_weights()[0],
                                  reference.get_layer("conv_pw_13").get_weights()[0])
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3))
    save_by_name(backbone, tmp_path / "bb.weights.h5")
    presets.register_preset("bb", tmp_path / "bb.weights.h5", {"alpha": 0.25, "input_size": 128})
    classifier = MobileNetClassifier.from_preset("bb", num_classes=4)
    assert classifier.num_classes == 4
    np.testing.assert_array_equal(classifier.backbone.get_layer("conv_pw_13").get_weights()[0],
                                  backbone.get_layer("conv_pw_13").get_weights()[0])


def test_check_preset_fits_answers_without_keras():
    script = (
        "import sys\n"
        "from mobilenet_zoo.presets import check_preset_fits, get_preset, IMAGENET, FACE_SSD\n"
        "print(check_preset_fits(get_preset(IMAGENET), 'SSD'), check_preset_fits(get_preset(FACE_SSD), 'SSD'))\n"
        "try:\n"
        "    check_preset_fits(get_preset(FACE_SSD), 'MobileNetClassifier')\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
        "try:\n"
        "    check_preset_fits({'name': 'bb', 'alpha': 1.0}, 'MobileNetClassifier', whole=True)\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
        "print('keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "backbone whole"
    assert lines[1].startswith("refused: ssd_mobilenet_v1_face_512 is an SSD preset (a detector)")
    assert lines[2].startswith("refused: bb is a backbone-only preset") and "mobilenet_v1_1.0_224_imagenet" in lines[2]
    assert lines[-1] == "False"


def test_the_registered_entry_is_plain_json_with_the_file_hash(classifier, cache):
    presets.register_preset("clf", classifier[1]["keras"])
    entry = json.loads((cache / "manifest.json").read_text())["clf"]
    assert entry["file"] == "clf.weights.h5"
    assert entry["sha256"] == presets.sha256_of(cache / "clf.weights.h5")
    assert entry["task_config"]["num_classes"] == 3


def test_a_backbone_preset_for_a_new_head_asks_for_the_number_of_classes():
    from mobilenet_zoo import SSD

    with pytest.raises(ValueError, match=r"give the number of classes.*num_classes=N"):
        SSD.from_preset("mobilenet_v1_1.0_224_imagenet")
