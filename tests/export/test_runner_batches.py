"""TFLiteRunner as the README uses it (issue 28): `TFLiteRunner("ssd.tflite")(images)` took
only the file's batch of 1 ("XNNPack delegate failed to reshape" for any other batch and
for one (H, W, 3) image). Now any batch runs, in chunks of the file's batch, and one
image gives results with a batch axis of 1, as keras predict on image[None]."""

import numpy as np
import pytest

from mobilenet_zoo import SSD, MobileNetBackbone
from mobilenet_zoo.export import TFLiteRunner, to_tflite


@pytest.fixture(scope="module")
def ssd_file(tmp_path_factory):
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128)
    path = tmp_path_factory.mktemp("runner") / "ssd.tflite"
    to_tflite(model, path, postprocess="detection_postprocess_fast")  # the export CLI's layout
    return str(path)


def test_runner_takes_any_batch_and_one_image_with_the_per_image_results(ssd_file, rng):
    runner = TFLiteRunner(ssd_file)
    assert runner.input_shape == (1, 128, 128, 3)
    images = rng.uniform(0, 255, (3, 128, 128, 3)).astype(np.float32)
    batch = runner(images)  # before: "XNNPack delegate failed to reshape"
    one_by_one = [runner(image[None]) for image in images]
    assert set(batch) == {"boxes", "classes", "scores", "num_detections"}
    for key, value in batch.items():
        assert value.shape[0] == 3
        np.testing.assert_allclose(value, np.concatenate([r[key] for r in one_by_one]), atol=1e-5)
    single = runner(images[1])  # one (H, W, 3) image: a batch axis of 1
    assert single["boxes"].shape == (1, *batch["boxes"].shape[1:])
    np.testing.assert_allclose(single["scores"], batch["scores"][1:2], atol=1e-5)
    uint8 = runner(images.astype(np.uint8))  # camera pixels: cast to the file's float32 input
    assert uint8["boxes"].shape == batch["boxes"].shape


def test_runner_refuses_images_of_another_size_naming_the_files_shape(ssd_file):
    runner = TFLiteRunner(ssd_file)
    for bad in (np.zeros((2, 300, 300, 3), np.float32), np.zeros((128, 128), np.float32),
                np.zeros((0, 128, 128, 3), np.float32)):
        with pytest.raises(ValueError, match=r"\(128, 128, 3\).*preprocessor.resize"):
            runner(bad)


def test_runner_errors_say_what_is_wrong_and_the_resize_hint_works_as_written(ssd_file):
    from skimage import data as skdata

    runner = TFLiteRunner(ssd_file)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) RGB; got \(128, 128\), a grayscale image") as err:
        runner(np.zeros((128, 128), np.float32))
    assert "Image.convert('RGB')" in str(err.value) and "Resize them first" not in str(err.value)
    with pytest.raises(ValueError, match=r"got \(128, 128, 4\), RGBA .*image\[\.\.\., :3\]"):
        runner(np.zeros((128, 128, 4), np.float32))
    with pytest.raises(ValueError, match=r"got an empty batch \(0, 128, 128, 3\): pass at least one image") as err:
        runner(np.zeros((0, 128, 128, 3), np.float32))
    assert "Resize them first" not in str(err.value)
    with pytest.raises(ValueError, match=r"got \(2, 300, 300, 3\)\. Resize them first") as err:
        runner(np.zeros((2, 300, 300, 3), np.float32))
    hint = "x, frame = model.preprocessor.resize(image)"
    assert hint in str(err.value)
    # Followed as written (before: `runner(model.preprocessor.resize(image))`, the (x, frame)
    # tuple, failed in NumPy with "inhomogeneous shape").
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128)
    image = skdata.astronaut()
    x, frame = model.preprocessor.resize(image)
    assert runner(x)["boxes"].shape[:2] == (1, runner(x[None])["boxes"].shape[1])


def test_a_fixed_batch_of_two_runs_three_images_padding_the_last_chunk_and_dropping_it():
    """The chunking on its own: a file whose batch is 2 (a stand-in signature runner)."""
    runner = TFLiteRunner.__new__(TFLiteRunner)
    runner.input_name, runner.input_shape, runner.input_dtype = "images", (2, 4, 4, 3), np.dtype("uint8")
    seen = []

    def signature_runner(images):
        seen.append(images.copy())
        return {"total": images.reshape(len(images), -1).sum(axis=1)}

    runner.runner = signature_runner
    images = np.stack([np.full((4, 4, 3), v, np.float32) for v in (1.4, 2.6, 300.0)])
    out = runner(images)
    assert [chunk.shape[0] for chunk in seen] == [2, 2]  # the file's batch, the last one padded
    assert seen[0].dtype == np.uint8 and seen[1][1].max() == 0  # padding: zeros, dropped below
    np.testing.assert_array_equal(out["total"], [48 * 1, 48 * 3, 48 * 255])  # rounded, clipped
