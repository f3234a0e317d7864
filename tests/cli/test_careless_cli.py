"""The CLIs and recipes under careless use (issue 21, part A): each test does what a
user would do and pins down what must happen instead of data loss or a silent
surprise. Fast: the CLIs are called in-process (``main(argv)``), except where the
point is the process itself (start-up without TensorFlow, logs in a file)."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo.cli import common as cli
from mobilenet_zoo.cli import detect
from mobilenet_zoo.cli.classify import main as classify_main
from mobilenet_zoo.cli.detect import main as detect_main
from mobilenet_zoo.images import ImageTooLarge, load_rgb
from mobilenet_zoo.training import detection as recipe
from mobilenet_zoo.training import flags

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _huge_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A tiny file whose PNG header claims ``width`` x ``height`` pixels (a
    decompression bomb as far as the header goes; PIL reads the size from IHDR)."""
    Image.new("L", (1, 1)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    raw[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr:ihdr + 17])))
    path.write_bytes(bytes(raw))


@pytest.fixture
def photos(tmp_path):
    """photos/a.jpg, photos/a.png (same stem), photos/2024/a.jpg (same name, sub-folder)."""
    root = tmp_path / "photos"
    (root / "2024").mkdir(parents=True)
    face = skdata.astronaut()
    Image.fromarray(face).save(root / "a.jpg")
    Image.fromarray(face[::2, ::2]).save(root / "a.png")
    Image.fromarray(skdata.coffee()).save(root / "2024" / "a.jpg")
    return root


# --- CLIs never modify their inputs ---------------------------------------------------

@pytest.mark.parametrize("out", [".", "2024", "new/inside"])
def test_detect_refuses_out_inside_the_input_folder_and_leaves_the_photos_alone(photos, capsys, out):
    before = _snapshot(photos)
    with pytest.raises(SystemExit) as exit_info:
        detect_main([str(photos), "--out", str(photos / out)])
    assert exit_info.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "inside the input folder" in err and "Choose a folder outside" in err
    assert _snapshot(photos) == before


def test_detect_refuses_an_output_that_would_overwrite_an_input_file(tmp_path, capsys):
    Image.fromarray(skdata.astronaut()).save(tmp_path / "face.png")
    before = (tmp_path / "face.png").read_bytes()
    with pytest.raises(SystemExit) as exit_info:  # face.png -> OUT/face.png == the input
        detect_main([str(tmp_path / "face.png"), "--out", str(tmp_path)])
    assert exit_info.value.code == cli.EXIT_USAGE and "would overwrite the input" in capsys.readouterr().err
    assert (tmp_path / "face.png").read_bytes() == before


def test_detect_out_naming_an_existing_file_is_a_usage_error(photos, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        detect_main([str(photos), "--out", str(tmp_path / "notes.txt")])
    assert exit_info.value.code == cli.EXIT_USAGE and "takes a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_detect_walks_subfolders_and_gives_every_image_its_own_output(photos, tmp_path, capsys):
    before = _snapshot(photos)
    out = tmp_path / "out"
    assert detect_main([str(photos), "--out", str(out)]) == cli.EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = {Path(r["image"]).relative_to(photos).as_posix(): Path(r["annotated"]).relative_to(out).as_posix()
               for r in lines}
    assert written == {"2024/a.jpg": "2024/a.png", "a.jpg": "a.png", "a.png": "a-2.png"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["2024/a.png", "a-2.png", "a.png"]  # complete PNGs only: no temporary files left
    assert Image.open(out / "a-2.png").size == (256, 256)  # a.png's own output, not a.jpg's
    assert _snapshot(photos) == before


# --- one bad item never stops the batch; exit codes -------------------------------------

def test_detect_skips_an_oversized_and_a_broken_image_names_them_and_exits_1(photos, tmp_path, capsys):
    _huge_png(photos / "bomb.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code = detect_main([str(photos), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == cli.EXIT_SKIPPED
    assert len(captured.out.splitlines()) == 3  # the three good photos, after and before the bad ones
    assert "skipped 2 of 5 input(s)" in captured.err
    bomb = next(line for line in captured.err.splitlines() if "bomb.png" in line)
    assert "400,000,000 pixels" in bomb and "Image.MAX_IMAGE_PIXELS" in bomb and "--max-image-pixels" in bomb
    assert "broken.jpg" in captured.err


def test_the_pixel_limit_flag_is_checked_and_pil_guard_is_reported_by_name(tmp_path, capsys):
    _huge_png(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLarge, match="MAX_IMAGE_PIXELS"):  # PIL's own guard, as a clear error
        load_rgb(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLarge, match="over the limit of 100"):
        load_rgb(tmp_path / "bomb.png", max_pixels=100)
    with pytest.raises(SystemExit) as exit_info:
        detect_main([str(tmp_path), "--max-image-pixels", "-1", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == cli.EXIT_USAGE and "0 = no limit" in capsys.readouterr().err


def test_a_missing_input_is_listed_and_an_unexpected_error_is_fatal_exit_3(tmp_path, monkeypatch, capsys):
    def broken_model(*_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(detect, "load_detector", broken_model)
    assert detect_main([str(tmp_path / "nowhere.jpg"), "--out", str(tmp_path / "o")]) == cli.EXIT_FATAL
    assert "fatal: RuntimeError: disk on fire" in capsys.readouterr().err
    items, skipped, _ = cli.collect([str(tmp_path / "nowhere.jpg"), str(tmp_path)])
    assert items == [] and [why for _, why in skipped] == [
        "no such file or folder", "no image files in this folder or its sub-folders"]


def test_classify_walks_folders_skips_the_oversized_image_and_exits_1(photos, capsys):
    _huge_png(photos / "2024" / "bomb.png")
    code = classify_main([str(photos / "2024"), "--top", "1"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_SKIPPED
    assert captured.out.splitlines()[0] == str(photos / "2024" / "a.jpg") and "espresso" in captured.out
    assert "bomb.png" in captured.err and "--max-image-pixels" in captured.err


def test_classify_usage_errors_exit_2_before_loading_anything(photos, capsys):
    with pytest.raises(SystemExit) as exit_info:
        classify_main([str(photos), "--top", "0"])
    assert exit_info.value.code == cli.EXIT_USAGE and "--top must be in [1, 1000]" in capsys.readouterr().err


# --- start-up: flags before TensorFlow; logs without progress-bar redraws ---------------

@pytest.mark.parametrize("command", [
    ["-m", "mobilenet_zoo.detect", "--help"],
    ["-m", "mobilenet_zoo.classify", "--help"],
    ["-m", "mobilenet_zoo.presets", "--help"],
    ["-m", "mobilenet_zoo.presets", "fetch", "--help"],
    ["-m", "mobilenet_zoo.export", "--help"],
    ["-m", "mobilenet_zoo.convert", "--help"],
    [str(ROOT / "recipes/ssd_coco.py"), "--help"],
    [str(ROOT / "recipes/faster_rcnn_coco.py"), "--help"],
    [str(ROOT / "recipes/tradeoff.py"), "--help"],
    [str(ROOT / "recipes/imagenet.py"), "--no-such-flag"],
])
def test_help_and_usage_errors_answer_before_tensorflow_is_imported(command):
    # (`python -m mobilenet_zoo COMMAND --help`: tests/architecture/test_architecture.py)
    # -X importtime lists every module imported (on stderr); MOBILENET_ZOO_TF_LOGS=1
    # keeps the package from silencing stderr while it imports TensorFlow.
    env = dict(os.environ, MOBILENET_ZOO_TF_LOGS="1")
    done = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True,
                          env=env, timeout=60, cwd=ROOT)
    assert done.returncode == (2 if "--no-such-flag" in command else 0), done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "tensorflow" not in imported and "keras" not in imported
    if "--help" in command:
        assert "usage:" in done.stdout


def test_mobilenet_zoo_console_script_lists_its_commands_and_rejects_unknown_ones():
    from mobilenet_zoo.cli import COMMANDS, main

    assert set(COMMANDS) == {"presets", "detect", "classify", "export", "convert", "finetune"}
    done = subprocess.run(["mobilenet-zoo", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and all(name in done.stdout for name in COMMANDS)
    assert main(["detcet"]) == 2


def test_training_log_written_to_a_file_has_no_progress_bar_redraws(tmp_path):
    script = (
        "import argparse, numpy as np, keras\n"
        "from mobilenet_zoo.training import flags\n"
        "p = argparse.ArgumentParser(); flags.add_common_flags(p, 'runs/x'); args = p.parse_args([])\n"
        "m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]); m.compile('sgd', 'mse')\n"
        "x = np.zeros((64, 3), 'float32')\n"
        "m.fit(x, x[:, :1], epochs=2, batch_size=8, verbose=args.verbose, validation_data=(x, x[:, :1]))\n"
    )
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", script], stdout=f, stderr=subprocess.DEVNULL, check=True,
                       timeout=120, cwd=ROOT)
    text = log.read_bytes()
    assert b"Epoch 2/2" in text and b"val_loss" in text
    assert b"\r" not in text and b"\x08" not in text and b"\x1b" not in text


def test_verbose_defaults_to_one_line_per_epoch_when_stdout_is_not_a_terminal(monkeypatch):
    assert flags.progress_verbose() == 2  # pytest captures stdout
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert flags.progress_verbose() == 1 and flags.progress_verbose(0) == 0


# --- data choice is explicit ------------------------------------------------------------

def _coco_folder(root: Path) -> Path:
    """The layout embedded.build writes: {train,val}/annotations.json and {train,val}/images/."""
    for split, n in (("train", 3), ("val", 2)):
        (root / split / "images").mkdir(parents=True)
        images, annotations = [], []
        for i in range(n):
            Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(root / split / "images" / f"{i}.png")
            images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 48})
            annotations.append({"id": i, "image_id": i, "category_id": 7, "bbox": [4, 4, 20, 16],
                                "area": 320, "iscrowd": 0})
        (root / split / "annotations.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 7, "name": "widget"}]}))
    return root


def test_faster_rcnn_data_dir_with_a_coco_format_folder_trains_on_that_folder(tmp_path):
    from recipes import faster_rcnn_coco

    folder = _coco_folder(tmp_path / "mine")
    args = faster_rcnn_coco.parse_args(["--data-dir", str(folder)])
    choice = recipe.choose_data(flags.detection_data(args))
    train, val, line = choice.train, choice.val, choice.line
    assert train.class_names == ["widget"] and train.num_examples == 3 and val.num_examples == 2
    assert line.startswith("data: COCO-format annotations") and str(folder) in line
    assert "embedded" not in line and choice.kind == "full"


def test_a_data_dir_without_a_readable_dataset_is_an_error_listing_what_was_looked_for(tmp_path):
    from recipes import faster_rcnn_coco, ssd_coco

    (tmp_path / "empty").mkdir()
    for module in (faster_rcnn_coco, ssd_coco):
        with pytest.raises(SystemExit) as err:
            recipe.choose_data(flags.detection_data(module.parse_args(["--data-dir", str(tmp_path / "empty")])))
        message = str(err.value)
        assert "holds no dataset" in message and "TFDS coco/2017" in message
        assert "train/annotations.json" in message and "instances_train2017.json" in message
    with pytest.raises(SystemExit, match="is not a folder"):
        recipe.choose_data(flags.detection_data(ssd_coco.parse_args(["--data-dir", str(tmp_path / "typo")])))


def test_without_data_dir_the_embedded_fallback_is_announced(tmp_path, monkeypatch):
    from recipes import ssd_coco

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))
    monkeypatch.setattr(recipe.digits_on_photos, "build", lambda **_: _coco_folder(tmp_path / "embedded"))
    choice = recipe.choose_data(flags.detection_data(ssd_coco.parse_args([])))
    assert choice.line.startswith("data: embedded") and "fallback: no --data-dir given" in choice.line
    assert choice.kind == "embedded"


def test_tradeoff_with_an_empty_data_dir_refuses_instead_of_using_the_debian_copy(tmp_path):
    from recipes import tradeoff

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as err:
        tradeoff.load_data(tradeoff.parse_args(["--data-dir", str(tmp_path / "empty")]))
    message = str(err.value)
    assert f"--data-dir {tmp_path / 'empty'} holds no Fashion-MNIST" in message
    assert "idx files" in message and "TFDS fashion_mnist" in message and "only without --data-dir" in message


def test_results_json_data_field_has_no_repeated_label():
    # The first printed line is "data: ..."; results.json stores it under "data" without the label.
    for path in sorted((ROOT / "recipes").glob("*.py")):
        assert '"data": line,' not in path.read_text(), path.name
    assert flags.add_common_flags  # the flags module stays importable without TensorFlow


def test_an_image_named_twice_is_processed_once(tmp_path):
    from mobilenet_zoo.cli import common as cli

    photo = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    items, skipped, _ = cli.collect([str(photo), str(photo), str(tmp_path)])
    assert [item.path for item in items] == [str(photo)] and not skipped
