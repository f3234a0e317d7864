"""One preprocessing per model (issue 28): each detector resizes images of another size
as its weights were trained ("stretch": the TF OD API's fixed_shape_resizer, the COCO
SSDs; "pad": face-api.js padToSquare, the face SSD), in predict, the detect CLI and the
exported files' metadata; MediaPipe's ObjectDetector (which always stretches) agrees
with the detect CLI on a stretch model, and on the pad model once the photo is padded."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo import SSD, MobileNetBackbone, presets
from mobilenet_zoo.cli.detect import detect_image
from mobilenet_zoo.detection import ssd_mobilenet_v1
from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor
from mobilenet_zoo.export import metadata as tm
from mobilenet_zoo.models import load_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECTORS = ("SSD", "FasterRCNN")


@pytest.fixture(scope="module")
def face():
    return SSD.from_preset(presets.FACE_SSD)


def _iou_xyxy(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _mediapipe_detections(tflite_path, image, min_score):
    """MediaPipe Tasks' ObjectDetector on ``image``: [(score, [x1, y1, x2, y2])], best first."""
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as err:
        pytest.skip(f"mediapipe cannot be imported ({err}); pip install mediapipe")
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(tflite_path)),
                                           score_threshold=min_score)
    with vision.ObjectDetector.create_from_options(options) as detector:
        found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                         data=np.ascontiguousarray(image))).detections
    boxes = [(d.categories[0].score, [d.bounding_box.origin_x, d.bounding_box.origin_y,
                                      d.bounding_box.origin_x + d.bounding_box.width,
                                      d.bounding_box.origin_y + d.bounding_box.height]) for d in found]
    return sorted(boxes, key=lambda t: -t[0])


def _cli(*args, timeout=300):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", MOBILENET_ZOO_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "mobilenet_zoo", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


# ---------------------------------------------------------------- the setting
def test_resize_mode_round_trips_through_config_keras_files_and_resizing(tmp_path):
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128,
                resize_mode="pad")
    assert model.resize_mode == model.preprocessor.get_config()["resize_mode"] == "pad"
    path = str(tmp_path / "pad.keras")
    model.save(path)
    assert load_model(path).resize_mode == "pad"
    assert model.with_image_size(160).resize_mode == "pad"
    # A config saved before the setting existed loads as the TF OD API default.
    old = {"image_size": [300, 300], "bounding_box_format": "rel_yxyx", "max_boxes": 100,
           "augment": True}
    assert DetectionPreprocessor.from_config(old).resize_mode == "stretch"
    assert SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2,
               image_size=128).resize_mode == "stretch"


def test_unknown_or_contradicting_resize_modes_are_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"resize_mode.*'stretch', 'pad'.*'letterbox'"):
        DetectionPreprocessor(300, resize_mode="letterbox")
    with pytest.raises(ValueError, match="resize_mode='pad'"):
        SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128,
            preprocessor=DetectionPreprocessor(128), resize_mode="pad")


def test_every_detection_preset_names_its_resize_mode_and_builds_with_it(face):
    detectors = {n: presets.get_preset(n) for n in presets.list_presets()
                 if presets.get_preset(n).get("task") in DETECTORS}
    assert {n: m["resize_mode"] for n, m in detectors.items()} == {
        "ssd_mobilenet_v1_face_512": "pad",  # face-api.js toBatchTensor(512, false)
        "ssd_mobilenet_v1_coco": "stretch",  # pipeline.config fixed_shape_resizer
        "ssd_mobilenet_v1_0.75_depth_coco": "stretch",
    }
    assert face.resize_mode == "pad"
    built = presets.build_from_metadata(presets.get_preset(presets.FACE_SSD))
    assert built.resize_mode == "pad"
    keras.backend.clear_session()


def test_pad_mode_pads_at_the_bottom_and_right_as_face_api_js_and_boxes_map_back():
    image = np.full((32, 64, 3), 200, np.uint8)  # wide: 32 rows, 64 columns
    pad = DetectionPreprocessor(64, resize_mode="pad")
    x, frame = pad.resize(image)
    assert x.shape == (64, 64, 3) and frame == (64, 64)
    assert (x[:32] == 200).all() and (x[32:] == 0).all()  # the image keeps its top-left corner
    stretch = DetectionPreprocessor(64)
    x, frame = stretch.resize(image)
    assert x.shape == (64, 64, 3) and frame == (32, 64) and (x == 200).all()
    # The upper half of the model input is the whole image when padded, half of it when stretched.
    box = np.array([[0.0, 0.0, 0.5, 1.0]], np.float32)  # rel_yxyx on the input
    np.testing.assert_allclose(pad.boxes_to_image(box, (32, 64), target_format="xyxy"), [[0, 0, 64, 32]])
    np.testing.assert_allclose(stretch.boxes_to_image(box, (32, 64), target_format="xyxy"),
                               [[0, 0, 64, 16]])


# --------------------------------------------------------------- predict, any size
def test_predict_takes_images_of_any_size_and_returns_boxes_in_each_images_pixels(face):
    astronaut = skdata.astronaut()  # 512 x 512: the model's size
    tall = astronaut[:, 100:400]  # 512 x 300
    wide = np.zeros((256, 1024, 3), np.uint8)  # the face at half scale, 512 pixels right
    wide[:, 512:768] = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    images = [astronaut, tall, wide]
    dets = face.predict(images, verbose=0)  # before: "expects exactly (512, 512, 3)"
    assert dets["boxes"].shape[0] == 3
    for i, image in enumerate(images):
        [cli] = detect_image(face, image, min_score=0.5)  # what `mobilenet-zoo detect` prints
        keep = dets["scores"][i] > 0.5
        assert keep.sum() == 1
        h, w = image.shape[:2]
        ymin, xmin, ymax, xmax = dets["boxes"][i, keep][0]  # rel_yxyx of this image
        np.testing.assert_allclose([xmin * w, ymin * h, xmax * w, ymax * h], cli["box"], atol=0.1)
    x1, y1, x2, y2 = detect_image(face, wide, 0.5)[0]["box"]
    assert 512 + 80 < x1 < 512 + 100 and 25 < y1 < 48  # the face, in the wide image's pixels
    # A batch array of another size, and predict_on_batch on one (H, W, 3) image.
    batch = face.predict(np.stack([tall, tall]), verbose=0)
    np.testing.assert_allclose(batch["boxes"][1], dets["boxes"][1], atol=1e-5)
    one = face.predict_on_batch(tall)
    np.testing.assert_allclose(one["boxes"][0], dets["boxes"][1], atol=1e-5)
    # A model-size batch runs as before: its boxes are the model input's.
    same = face.predict(astronaut[None].astype("float32"), verbose=0)
    np.testing.assert_allclose(same["boxes"][0], dets["boxes"][0], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        face.predict([astronaut, astronaut[..., :2]], verbose=0)


# ------------------------------------------------------------ export and MediaPipe
def test_export_at_another_image_size_says_the_real_size_and_mediapipe_needs_the_padding(tmp_path,
                                                                                        face):
    out = tmp_path / "face300.tflite"
    done = _cli("export", "--preset", presets.FACE_SSD, "--image-size", "300", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    flat = out.read_bytes()
    meta = tm.read_metadata(flat)
    image = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["content"]["content_properties"][1]["default_size"] == {"width": 300, "height": 300}
    assert "input 300; the preset's weights, trained at 512" in meta["description"]
    assert "input 512" not in meta["description"]
    assert tm.resize_mode_of(flat) == "pad" and "resize_mode pad" in done.stdout
    # MediaPipe stretches every image: on a non-square photo the face model then sees
    # another input than it was trained on. Padded first (bottom-right, as the model), the
    # photo gives the Keras model's face.
    small = face.with_image_size(300)
    tall = skdata.astronaut()[:, 100:400]  # 512 x 300, one face
    keras_dets = small.predict([tall], verbose=0)
    keep = keras_dets["scores"][0] > 0.5
    ymin, xmin, ymax, xmax = keras_dets["boxes"][0, keep][0]
    h, w = tall.shape[:2]
    ref = [xmin * w, ymin * h, xmax * w, ymax * h]
    padded = np.zeros((h, h, 3), np.uint8)
    padded[:, :w] = tall
    [(score, box)] = _mediapipe_detections(out, padded, 0.5)
    assert _iou_xyxy(box, ref) >= 0.9  # MediaPipe returns whole pixels
    assert abs(score - keras_dets["scores"][0, keep][0]) <= 0.01
    keras.backend.clear_session()


def test_saved_model_says_its_resize_mode_beside_the_signature(tmp_path):
    import tensorflow as tf

    from mobilenet_zoo.export import export_saved_model

    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128,
                resize_mode="pad")
    path = export_saved_model(model, tmp_path / "ssd")
    notes = json.loads((tmp_path / "ssd" / "assets.extra" / "mobilenet_zoo.json").read_text())
    assert notes["resize_mode"] == "pad" and notes["image_size"] == [128, 128]
    assert "bottom and right" in notes["resize"]
    loaded = tf.saved_model.load(path)  # still loads and runs
    served = loaded.serve(tf.zeros((1, 128, 128, 3)))
    assert set(served) == {"boxes", "classes", "scores", "num_detections"}


def test_detect_cli_and_mediapipe_give_the_same_boxes_for_a_stretch_model_on_a_non_square_photo(
        tmp_path):
    keras.utils.set_random_seed(0)
    # A stretch model (the TF OD API's resize): the shipped ImageNet backbone, seeded heads.
    model = ssd_mobilenet_v1(num_classes=1, class_names=["thing"])
    assert model.resize_mode == "stretch"
    model.save(tmp_path / "ssd.keras")
    photo = skdata.coffee()  # 400 x 600
    Image.fromarray(photo).save(tmp_path / "coffee.png")
    done = _cli("export", "--model", str(tmp_path / "ssd.keras"), "--out", str(tmp_path / "ssd.tflite"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert tm.resize_mode_of((tmp_path / "ssd.tflite").read_bytes()) == "stretch"
    done = _cli("detect", str(tmp_path / "coffee.png"), "--model", str(tmp_path / "ssd.keras"),
                "--score", "0.9", "--out", str(tmp_path / "annotated"))
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    cli = line["detections"][:5]
    assert len(cli) == 5
    phone = _mediapipe_detections(tmp_path / "ssd.tflite", photo, 0.8)
    for det in cli:  # each of the CLI's five best boxes, found by MediaPipe
        score, box = max(phone, key=lambda p: _iou_xyxy(p[1], det["box"]))
        assert _iou_xyxy(box, det["box"]) >= 0.95, (det, box)
        assert abs(score - det["score"]) <= 0.01


@pytest.mark.parametrize("mode", ["stretch", "pad"])
def test_the_training_pipeline_resizes_as_predict_does(mode):
    """tf.data (training, evaluation) and ``predict`` give the model the same pixels."""
    tf = pytest.importorskip("tensorflow")
    from skimage import data

    from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor

    photo = data.coffee()[:, :500]  # 400 x 500
    pre = DetectionPreprocessor(image_size=128, resize_mode=mode, augment=False)
    example = {"image": photo, "boxes": np.array([[0.25, 0.2, 0.75, 0.6]], np.float32),
               "classes": np.array([1], np.int64), "is_crowd": np.zeros(1, np.int64),
               "image_id": np.int64(0), "original_size": np.array(photo.shape[:2], np.int32)}
    ds = tf.data.Dataset.from_tensors(example)
    images, y = next(iter(pre.pipeline(ds, batch_size=1)))
    expected, frame = pre.resize(photo)
    np.testing.assert_allclose(images[0].numpy(), expected, atol=0.01)
    # the box follows the image: on the model input it maps back onto the photo's box
    back = pre.boxes_to_image(y["boxes"].numpy()[0, :1], photo.shape[:2], frame, target_format="rel_yxyx")
    np.testing.assert_allclose(back, [[0.25, 0.2, 0.75, 0.6]], atol=1e-4)


def test_int8_calibration_images_are_resized_as_the_detector_resizes(tmp_path):
    """A pad-trained detector is calibrated on padded photos, not stretched ones."""
    from PIL import Image
    from skimage import data

    from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor
    from mobilenet_zoo.export.checks import folder_samples

    photo = data.coffee()  # 400 x 600
    Image.fromarray(photo).save(tmp_path / "coffee.png")
    padded = folder_samples(str(tmp_path), 128, 128, resize_mode="pad")[0]
    np.testing.assert_allclose(padded[0], DetectionPreprocessor(128, resize_mode="pad").resize(photo)[0],
                               atol=1e-3)
    assert np.all(padded[0, 90:] == 0)  # the bottom third is the padding
    stretched = folder_samples(str(tmp_path), 128, 128, resize_mode="stretch")[0]
    assert stretched[0, 90:].mean() > 20


def test_predict_warns_when_photos_are_scaled_to_0_1():
    """Pixels in [0, 1] give a face score of 0.1 instead of 0.96: a warning names the fix."""
    from skimage import data

    from mobilenet_zoo import SSD

    model = SSD.from_preset("ssd_mobilenet_v1_face_512")
    with pytest.warns(UserWarning, match=r"pixels in \[0, 255\].*Multiply \[0, 1\] images by 255"):
        model.predict([data.astronaut() / 255.0], verbose=0)
