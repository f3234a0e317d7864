"""Phone runtimes (issue 22): TFLite metadata, the TFLite_Detection_PostProcess op,
the export CLI, and MediaPipe Tasks running the files that the CLI writes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo import SSD, MobileNetBackbone, MobileNetClassifier, presets
from mobilenet_zoo.cli.export import main as export_main
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.export import metadata as tm
from mobilenet_zoo.export.ssd_postprocess import has_op
from mobilenet_zoo.imagenet import class_names
from mobilenet_zoo.segmentation.deeplab import DeepLabV3

# One worker runs the module (`--dist loadgroup`), so its module fixtures are built once.
pytestmark = pytest.mark.xdist_group("phone_export")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as err:  # no wheel for this platform / not installed
        pytest.skip(f"mediapipe cannot be imported ({err}); pip install mediapipe")
    return mp, BaseOptions, vision


def _resized(image, size):
    return tf.image.resize(np.asarray(image, np.float32)[None], size).numpy()


def _iou(a, b):
    """IoU of two (ymin, xmin, ymax, xmax) boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    """The face preset, its Keras detections on astronaut(), and its two exports:
    the CLI's (default post-processing: the TFLite op) and builtin NMS."""
    out = tmp_path_factory.mktemp("face")
    op_file = str(out / "face.tflite")
    assert export_main(["--preset", presets.FACE_SSD, "--out", op_file]) == 0
    model = SSD.from_preset(presets.FACE_SSD)
    x = _resized(skdata.astronaut(), (512, 512))
    keras_dets = {k: np.asarray(v) for k, v in model.predict(x, verbose=0).items()}
    builtin = to_tflite(model)  # to_tflite's default for an SSD: builtin NMS
    fast = to_tflite(model, postprocess="detection_postprocess_fast")
    return {"op": open(op_file, "rb").read(), "op_file": op_file, "builtin": builtin,
            "fast": fast, "keras": keras_dets, "x": x, "model": model}


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cls") / "imagenet.tflite")
    assert export_main(["--preset", presets.IMAGENET, "--out", path]) == 0
    return path


# ----------------------------------------------------------------- metadata format
def test_metadata_flatbuffer_reads_back_with_our_reader_and_mediapipes_schema():
    label, _ = tm.label_file("labels.txt", ["a", "b"], value_labels=True)
    meta = tm.model_metadata("m", "d", "1", "me", "MIT",
                             [tm.image_input(224, 224, 127.5, 127.5, "float32")],
                             list(tm.detection_outputs(label).values()),
                             custom=[tm.segmenter_options("softmax")])
    buf = tm.serialize(meta)
    ours = tm.parse(buf)
    sub = ours["subgraph_metadata"][0]
    assert ours["min_parser_version"] == "1.5.0"
    assert sub["input_tensor_metadata"][0]["stats"] == {"max": [1.0], "min": [-1.0]}
    assert [t["name"] for t in sub["output_tensor_metadata"]] == [
        "location", "category", "score", "number of detections"]
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    except ImportError as err:
        pytest.skip(f"mediapipe cannot be imported ({err})")
    theirs = fb.ModelMetadataT.InitFromPackedBuf(bytearray(buf), 0)
    graph = theirs.subgraphMetadata[0]
    assert graph.inputTensorMetadata[0].processUnits[0].options.mean == [127.5]
    assert list(graph.outputTensorMetadata[0].content.contentProperties.index) == [1, 0, 3, 2]
    assert graph.outputTensorMetadata[1].associatedFiles[0].type == tm.TENSOR_VALUE_LABELS
    assert graph.customMetadata[0].name == b"SEGMENTER_METADATA"


def test_metadata_refuses_unknown_fields_and_missing_label_files():
    with pytest.raises(ValueError, match="no field"):
        tm.T("ImageSize", depth=3)
    meta = tm.model_metadata("m", "d", "1", "me", "MIT", [], [tm.feature_output(
        "p", "d", [tm.label_file("labels.txt", ["a"])[0]])])
    with pytest.raises(ValueError, match="labels.txt"):
        tm.populate(b"\0" * 4 + b"TFL3", meta, {})


def test_classifier_file_carries_imagenet_labels_normalisation_and_preset_licence(classifier_file):
    flat = open(classifier_file, "rb").read()
    meta = tm.read_metadata(flat)
    entry = presets.get_preset(presets.IMAGENET)
    assert meta["name"] == presets.IMAGENET and meta["license"] == entry["license"]
    assert meta["author"] == entry["source"] and "sha256" in meta["version"]
    image = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["process_units"][0]["options"][1] == {"mean": [127.5], "std": [127.5]}
    assert image["content"]["content_properties"][1]["default_size"] == {"width": 224, "height": 224}
    labels = tm.associated_files(flat)["labels.txt"].decode().splitlines()
    assert labels == class_names() and len(labels) == 1000
    # The file still runs as before (the zip after the flatbuffer is ignored).
    probs = next(iter(TFLiteRunner(flat)(np.zeros((1, 224, 224, 3), np.float32)).values()))
    assert probs.shape == (1, 1000)


def test_every_tflite_file_has_metadata_unless_turned_off():
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3,
                                include_preprocessing=True)
    flat = to_tflite(model)
    meta = tm.read_metadata(flat)
    image = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["process_units"][0]["options"][1] == {"mean": [0.0], "std": [1.0]}  # [0, 255] in
    assert "not from a preset" in meta["author"]
    assert tm.associated_files(flat)["labels.txt"] == b"class_0\nclass_1\nclass_2\n"
    named = tm.read_metadata(to_tflite(model, metadata={"labels": ["cat", "dog", "owl"],
                                                        "license": "CC0"}))
    assert named["license"] == "CC0"
    assert tm.read_metadata(to_tflite(model, metadata=False)) is None


def test_bad_export_requests_are_refused_with_the_reason():
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3)
    cases = [
        (dict(postprocess="nms"), "postprocess"),
        (dict(postprocess="detection_postprocess"), "SSD only"),
        (dict(postprocess="builtin_nms"), "no NMS"),
        (dict(metadata={"licence": "MIT"}), "unknown key"),
        (dict(metadata={"preset": "nope"}), "Unknown preset"),
        (dict(metadata={"normalization": (0, 0)}), "std > 0"),
        (dict(metadata="yes"), "True, False or a dict"),
        (dict(uint8_io=True), "needs quantize='int8'"),
        (dict(metadata={"labels": ["a"]}), "1 labels for 3 classes"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            to_tflite(model, **kwargs)


# ------------------------------------------------------- detection post-processing
def test_face_preset_detection_postprocess_op_and_builtin_nms_give_the_keras_detections(face):
    ref = face["keras"]
    assert has_op(face["op"]) and not has_op(face["builtin"])
    for flat in (face["op"], face["builtin"]):
        lite = TFLiteRunner(flat)(face["x"])
        n = int(lite["num_detections"][0])
        assert n == int(ref["num_detections"][0])
        np.testing.assert_allclose(lite["scores"][0, :n], ref["scores"][0, :n], atol=1e-3)
        np.testing.assert_array_equal(lite["classes"][0, :n].astype(int), ref["classes"][0, :n])
        confident = ref["scores"][0] > 0.5
        assert confident.sum() == 1  # the astronaut's face (preset metric note: 0.965)
        np.testing.assert_allclose(lite["boxes"][0, confident], ref["boxes"][0, confident], atol=1e-3)


def test_face_preset_fast_op_finds_the_keras_faces(face):
    """The op's class-agnostic NMS (one class per anchor) keeps other low-score boxes than
    the per-class NMS of Keras, but the same faces: the MediaPipe tests' criteria (box IoU
    >= 0.9, score within 0.02) on every detection Keras scores above 0.5."""
    runner = TFLiteRunner(face["fast"])
    for image in (skdata.astronaut(), skdata.chelsea()):
        x = _resized(image, (512, 512))
        ref = {k: np.asarray(v) for k, v in face["model"].predict(x, verbose=0).items()}
        got = runner(x)
        keep, found = ref["scores"][0] > 0.5, got["scores"][0] > 0.5
        assert keep.sum() == found.sum() == 1  # the astronaut's face; chelsea's (a cat's) face
        assert _iou(got["boxes"][0, found][0], ref["boxes"][0, keep][0]) >= 0.9
        assert abs(got["scores"][0, found][0] - ref["scores"][0, keep][0]) <= 0.02
        assert int(got["classes"][0, found][0]) == int(ref["classes"][0, keep][0]) == 0  # "face"


def test_face_file_describes_the_tf_od_api_outputs_with_the_face_label(face):
    meta = tm.read_metadata(face["op"])
    outputs = meta["subgraph_metadata"][0]["output_tensor_metadata"]
    keys = [t["name"] for t in tm.tensors_of(face["op"])["outputs"]]
    by_key = dict(zip(keys, outputs))
    assert by_key["boxes"]["name"] == "location" and by_key["classes"]["name"] == "category"
    assert by_key["scores"]["name"] == "score"
    assert by_key["num_detections"]["name"] == "number of detections"
    assert tm.associated_files(face["op"])["labels.txt"].decode().splitlines() == ["face", "unused"]
    assert meta["license"] == presets.get_preset(presets.FACE_SSD)["license"]


def test_int8_ssd_keeps_the_postprocess_op_in_float():
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128)
    reps = [_resized(p, (128, 128)) for p in (skdata.astronaut(), skdata.coffee())]
    flat = to_tflite(model, quantize="int8", representative_data=reps, postprocess="detection_postprocess")
    assert has_op(flat)
    out = TFLiteRunner(flat)(reps[0])
    assert out["boxes"].dtype == np.float32 and out["boxes"].shape == (1, 100, 4)
    assert int(out["num_detections"][0]) > 0
    assert tm.read_metadata(flat)["subgraph_metadata"][0]["output_tensor_metadata"]
    # After the op the boxes stay float: the clip to [0, 1] is not rounded to 1/255.
    interpreter = TFLiteRunner(flat).interpreter
    ops = interpreter._get_ops_details()
    after = ops[[op["op_name"] for op in ops].index("TFLite_Detection_PostProcess") + 1:]
    assert [op["op_name"] for op in after] == ["MINIMUM", "RELU"]
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    assert all(dtypes[i] == np.float32 for op in after for i in op["outputs"])


# ------------------------------------------------------------ int8 calibration data
@pytest.fixture(scope="module")
def small_classifier():
    return MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3,
                               include_preprocessing=True)


def _photos():
    return [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]


def test_int8_calibrates_from_the_task_preprocessor_pipeline_and_from_a_folder(small_classifier,
                                                                               tmp_path):
    model = small_classifier
    images = np.stack([tf.image.resize(p, (48, 48)).numpy().astype(np.uint8) for p in _photos()])
    labels = np.arange(len(images)) % 3
    pairs = tf.data.Dataset.from_tensor_slices((images, labels))
    pipeline = model.preprocessor.pipeline(pairs, batch_size=3)  # (images, labels) batches
    arrays = [x[None] for batch, _ in pipeline.as_numpy_iterator() for x in batch]
    assert len(arrays) == 4 and arrays[0].shape == (1, 32, 32, 3)
    reference = TFLiteRunner(to_tflite(model, quantize="int8", representative_data=arrays))
    x = arrays[1]
    expected = next(iter(reference(x).values()))
    for data in (pipeline, pipeline.repeat(),  # endless: the first 100 images are read
                 pipeline.unbatch().map(lambda image, label: image),  # images alone
                 iter(list(pipeline.as_numpy_iterator()))):
        got = next(iter(TFLiteRunner(to_tflite(model, quantize="int8",
                                               representative_data=data))(x).values()))
        np.testing.assert_allclose(got, expected, atol=1e-6)
    for i, photo in enumerate(_photos()[:2]):
        Image.fromarray(photo).save(tmp_path / f"{i}.png")
    flat = to_tflite(model, quantize="int8", representative_data=tmp_path)  # a folder
    assert next(iter(TFLiteRunner(flat)(x).values())).shape == (1, 3)


def test_int8_ssd_calibrates_from_its_detection_pipeline(tmp_path):
    """The detection preprocessor's batches are (images, {"boxes", "classes", ...})."""
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128)
    images = [tf.image.resize(p, (96, 96)).numpy().astype(np.uint8) for p in _photos()[:3]]
    examples = tf.data.Dataset.from_generator(lambda: ({
        "image": image, "boxes": np.array([[0.1, 0.1, 0.6, 0.5]], np.float32),
        "classes": np.array([1], np.int32), "is_crowd": np.array([0], np.int32),
        "image_id": np.int64(i), "original_size": np.array([96, 96], np.int32),
    } for i, image in enumerate(images)), output_signature={
        "image": tf.TensorSpec((96, 96, 3), tf.uint8), "boxes": tf.TensorSpec((None, 4), tf.float32),
        "classes": tf.TensorSpec((None,), tf.int32), "is_crowd": tf.TensorSpec((None,), tf.int32),
        "image_id": tf.TensorSpec((), tf.int64), "original_size": tf.TensorSpec((2,), tf.int32)})
    pipeline = model.preprocessor.pipeline(examples, batch_size=2)
    batch, targets = next(iter(pipeline))
    assert isinstance(targets, dict) and batch.shape[1:] == (128, 128, 3)
    arrays = [x[None] for b, _ in pipeline.as_numpy_iterator() for x in b]
    x = arrays[0]
    outputs = [TFLiteRunner(to_tflite(model, quantize="int8", representative_data=data,
                                      postprocess="detection_postprocess_fast"))(x)
               for data in (arrays, pipeline)]
    for key in ("boxes", "scores", "num_detections"):
        np.testing.assert_allclose(outputs[1][key], outputs[0][key], atol=1e-6)


def test_int8_calibration_data_of_another_kind_is_refused_with_the_accepted_forms(small_classifier,
                                                                                  tmp_path):
    model = small_classifier
    for data, message in [(42, "a folder of images, a tf.data.Dataset"),
                          ({"images": np.zeros((1, 32, 32, 3))}, "got dict"),
                          (str(tmp_path / "nope"), "is not a folder"),
                          (str(tmp_path), "no readable image"),
                          (tf.data.Dataset.from_tensor_slices(np.zeros((2, 16, 16, 3))), r"\(1, 16, 16, 3\)"),
                          (iter([]), "got none")]:
        with pytest.raises(ValueError, match=message):
            to_tflite(model, quantize="int8", representative_data=data)
    raw = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3,
                              include_preprocessing=False)
    pixels = tf.data.Dataset.from_tensor_slices(np.full((2, 32, 32, 3), 200.0, np.float32)).batch(2)
    with pytest.raises(ValueError, match=r"takes images in \[-1, 1\]"):
        to_tflite(raw, quantize="int8", representative_data=pixels)


# ------------------------------------------------------------------------- the CLI
def test_cli_writes_int8_with_uint8_input_from_a_folder_of_images(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, name in enumerate(("chelsea", "coffee", "astronaut")):
        Image.fromarray(getattr(skdata, name)()).save(photos / ("sub" if i else "") / f"{name}.png")
    (photos / "notes.txt").write_text("not an image")
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3)), num_classes=4,
                                include_preprocessing=True)
    model.save(tmp_path / "small.keras")
    out = tmp_path / "small_int8.tflite"
    code = export_main(["--model", str(tmp_path / "small.keras"), "--out", str(out),
                        "--quantize", "int8", "--representative", str(photos), "--uint8-io"])
    printed = capsys.readouterr().out
    assert code == 0 and f"wrote {out}" in printed and "bytes" in printed
    assert "input images [image]: uint8[1, 64, 64, 3]" in printed
    tensors = tm.tensors_of(out.read_bytes())
    assert tensors["inputs"][0]["quantization"] == (1.0, 0)  # camera pixels as they are
    assert tensors["outputs"][0]["dtype"] == "uint8"


def test_cli_usage_errors_exit_2_and_bad_models_exit_3(tmp_path, capsys):
    usage = [
        ["--out", "x.tflite"],  # neither --preset nor --model
        ["--preset", "a", "--model", "b.keras", "--out", "x.tflite"],
        ["--preset", "a", "--out", "x.onnx"],
        ["--preset", "a", "--out", "x.tflite", "--quantize", "int8"],
        ["--preset", "a", "--out", "x.tflite", "--representative", str(tmp_path)],
        ["--preset", "a", "--out", "x.tflite", "--uint8-io"],
        ["--preset", "a", "--out", "x.tflite", "--quantize", "int4"],
        ["--preset", "a", "--out", "x.tflite", "--postprocess", "nms"],
        ["--model", str(tmp_path / "missing.keras"), "--out", "x.tflite"],
        ["--preset", "a", "--out", "x.tflite", "--quantize", "int8", "--representative",
         str(tmp_path / "nope")],
    ]
    for argv in usage:
        with pytest.raises(SystemExit) as exit_info:
            export_main(argv)
        assert exit_info.value.code == 2, argv
    with pytest.raises(SystemExit) as exit_info:  # a usage error, found before Keras (issue 28)
        export_main(["--preset", "nope", "--out", str(tmp_path / "x.tflite")])
    assert exit_info.value.code == 2
    assert "Unknown preset 'nope'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_main(["--preset", presets.IMAGENET, "--out", str(tmp_path / "x.tflite"),
                        "--quantize", "int8", "--representative", str(empty)]) == 3
    assert "no readable image" in capsys.readouterr().err
    assert not (tmp_path / "x.tflite").exists()


def test_python_m_mobilenet_zoo_export_runs_the_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "mobilenet_zoo.export", "--preset", "nope",
                           "--out", str(tmp_path / "x.tflite")], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "Unknown preset 'nope'" in done.stderr


# ------------------------------------------------------------------ MediaPipe Tasks
def test_mediapipe_object_detector_finds_the_keras_face_on_astronaut(face):
    mp, BaseOptions, vision = _mediapipe()
    photo = skdata.astronaut()  # 512 x 512: the model's input size, no resizing
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=face["op_file"]),
                                           score_threshold=0.5)
    with vision.ObjectDetector.create_from_options(options) as detector:
        found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                         data=np.ascontiguousarray(photo))).detections
        ref = face["keras"]
        keep = ref["scores"][0] > 0.5
        assert len(found) == keep.sum() == 1
        box = found[0].bounding_box
        h, w = photo.shape[:2]
        got = (box.origin_y / h, box.origin_x / w, (box.origin_y + box.height) / h,
               (box.origin_x + box.width) / w)
        assert _iou(got, ref["boxes"][0, keep][0]) >= 0.9
        assert found[0].categories[0].category_name == "face"
        assert abs(found[0].categories[0].score - ref["scores"][0, keep][0]) <= 0.02
        # scikit-learn's photos: no face for Keras (preset note), none for MediaPipe.
        from sklearn.datasets import load_sample_images

        for image in load_sample_images().images:
            keras_scores = _op_file_scores(face, image)
            mp_found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                data=np.ascontiguousarray(image))).detections
            assert len(mp_found) == int((keras_scores > 0.5).sum())


def _op_file_scores(face, image):
    """Scores of the float op file (= Keras, tested above) on ``image`` stretched to 512."""
    return TFLiteRunner(face["op"])(_resized(image, (512, 512)))["scores"][0]


def test_mediapipe_image_classifier_gives_the_keras_top1_on_skimage_photos(classifier_file):
    mp, BaseOptions, vision = _mediapipe()
    model = MobileNetClassifier.from_preset(presets.IMAGENET)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=classifier_file),
                                            max_results=1)
    names = class_names()
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for photo in (skdata.chelsea(), skdata.coffee()):
            x = _resized(photo, (224, 224)) / 127.5 - 1.0
            keras_top1 = names[int(model.predict(x, verbose=0)[0].argmax())]
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                  data=np.ascontiguousarray(photo)))
            assert result.classifications[0].categories[0].category_name == keras_top1


def test_mediapipe_image_segmenter_runs_a_deeplab_export_with_its_labels(tmp_path):
    mp, BaseOptions, vision = _mediapipe()
    model = DeepLabV3(MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3), output_stride=16),
                      num_classes=3, include_preprocessing=True)
    path = str(tmp_path / "seg.tflite")
    labels = ["background", "cat", "sky"]
    to_tflite(model, path, image_size=64, metadata={"labels": labels})
    photo = np.ascontiguousarray(_resized(skdata.chelsea(), (64, 64))[0].astype(np.uint8))
    options = vision.ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=path),
                                           output_category_mask=True)
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        assert segmenter.labels == labels
        mask = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=photo)).category_mask
        got = mask.numpy_view()
    keras_ids = model.predict(photo[None].astype(np.float32), verbose=0)[0].argmax(-1)
    assert got.shape[:2] == (64, 64)
    assert (got.reshape(64, 64) == keras_ids).mean() > 0.95


def test_faster_rcnn_file_describes_its_keras_layout_and_mediapipe_refuses_it_clearly(tmp_path):
    """Faster R-CNN exports builtin NMS (int32 class ids, -1 padding): the metadata names
    its outputs and says MediaPipe's ObjectDetector does not run it; MediaPipe's own error
    names the int32 output."""
    from mobilenet_zoo.detection.faster_rcnn import FasterRCNN

    model = FasterRCNN(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128,
                       proposal_layer={"max_proposals": 20}, class_names=["cat", "dog", "owl"])
    path = tmp_path / "frcnn.tflite"
    flat = to_tflite(model, path)
    meta = tm.read_metadata(flat)
    outputs = {t["name"]: t for t in meta["subgraph_metadata"][0]["output_tensor_metadata"]}
    assert set(outputs) == {"location", "category", "score", "number of detections"}
    assert "-1 after the last detection" in outputs["category"]["description"]
    assert "ObjectDetector does not run this file" in meta["description"]
    assert tm.associated_files(flat)["labels.txt"] == b"cat\ndog\nowl\n"
    assert "int32[1, 300]" in tm.describe(flat)
    _, BaseOptions, vision = _mediapipe()
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)))
    with pytest.raises((ValueError, RuntimeError), match="INT32"):
        vision.ObjectDetector.create_from_options(options)


def test_every_tflite_file_the_recipes_write_has_metadata(tmp_path):
    """The recipes write ``model.tflite`` only through ``training.finish`` (one
    ``to_tflite`` call with each task report's keyword arguments); the only other writer is
    ``training.finetune``, whose files MediaPipe reads with the user's labels
    (tests/finetune). Nothing else in the package or the recipes converts to TFLite. Each
    report's arguments, with every export flag the recipes take (--quantize,
    --tflite-argmax), keep the metadata on."""
    import ast
    import glob

    from mobilenet_zoo.training.detection import CocoReport
    from mobilenet_zoo.training.flags import ExportOptions
    from mobilenet_zoo.training.segmentation import MaskReport

    writers = []
    for path in glob.glob(os.path.join(REPO, "recipes", "*.py")) + glob.glob(
            os.path.join(REPO, "mobilenet_zoo", "**", "*.py"), recursive=True):
        if os.path.relpath(path, REPO) in (os.path.join("mobilenet_zoo", "export", "tflite.py"),
                                           os.path.join("mobilenet_zoo", "cli", "export.py")):
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            name = getattr(node, "attr", None) or getattr(node, "id", None)
            if name in ("to_tflite", "TFLiteConverter"):
                writers.append(os.path.relpath(path, REPO))
    assert sorted(set(writers)) == [os.path.join("mobilenet_zoo", "training", name)
                                    for name in ("finetune.py", "run.py")]
    ssd = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128)
    deeplab = DeepLabV3(MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3), output_stride=16),
                        num_classes=3)
    cases = [(ssd, CocoReport(val_source=None), ExportOptions(quantize=q)) for q in (None, "float16")]
    cases += [(deeplab, MaskReport(num_classes=3, image_size=64), ExportOptions(argmax=a))
              for a in (False, True)]
    for model, report, export in cases:
        kwargs = report.tflite_kwargs(model, export)
        assert kwargs.get("metadata", True) is not False
        path = tmp_path / "model.tflite"
        to_tflite(model, path, **kwargs)  # as training.finish writes it
        meta = tm.read_metadata(path.read_bytes())
        assert meta and meta["subgraph_metadata"][0]["output_tensor_metadata"], (report, export)
        assert "labels.txt" in tm.associated_files(path.read_bytes())
