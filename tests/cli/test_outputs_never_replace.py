"""The CLIs under careless use, part two (issue 28): no output replaces a file the run
did not write unless ``--overwrite`` is given; a preset of another task (or a
backbone without a head) is refused from its metadata, naming the command that
fits; cheap checks answer before Keras or TensorFlow is imported; an expected error
is one line, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo import presets
from mobilenet_zoo.cli import common as cli
from mobilenet_zoo.cli.convert import main as convert_main
from mobilenet_zoo.cli.detect import main as detect_main

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "mobilenet_v1_0.25_128_imagenet"  # published, not shipped: downloaded on first use


def _cli(*argv, env=None, cwd=ROOT):
    """``python -X importtime -m mobilenet_zoo ARGV``: (exit code, stdout, stderr without
    the import-time lines, names of the modules imported)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), MOBILENET_ZOO_TF_LOGS="1", **(env or {}))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mobilenet_zoo", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=cwd)
    lines = done.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    err = "\n".join(line for line in lines if not line.startswith("import time:"))
    return done.returncode, done.stdout, err, imported


def _no_keras(imported):
    return not imported & {"keras", "tensorflow", "jax", "torch"}


# --- outputs get new names; --overwrite is the one way to replace a file ----------------

def test_detect_never_replaces_a_file_it_did_not_write_and_says_so(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).save(photos / "upright.jpg")
    Image.fromarray(skdata.astronaut()[::2, ::2]).save(photos / "upright.png")  # same stem: -2
    mine = tmp_path / "mypics"
    mine.mkdir()
    (mine / "upright.png").write_bytes(b"my own picture")  # unrelated to this run
    code = detect_main([str(photos), "--out", str(mine)])
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    assert (mine / "upright.png").read_bytes() == b"my own picture"
    # upright.jpg would be upright.png (taken) -> upright-2.png; upright.png -> upright-3.png
    assert sorted(p.name for p in mine.iterdir()) == ["upright-2.png", "upright-3.png", "upright.png"]
    assert Image.open(mine / "upright-2.png").size == (512, 512)
    assert Image.open(mine / "upright-3.png").size == (256, 256)
    assert f"{mine / 'upright.png'} already exists and was not written by this run: wrote " \
           f"{mine / 'upright-2.png'} instead" in captured.err
    assert "--overwrite" in captured.err

    assert detect_main([str(photos / "upright.jpg"), "--out", str(mine), "--overwrite"]) == cli.EXIT_OK
    assert Image.open(mine / "upright.png").size == (512, 512)  # replaced, as asked
    assert sorted(p.name for p in mine.iterdir()) == ["upright-2.png", "upright-3.png", "upright.png"]


def test_a_file_created_after_the_outputs_were_named_is_not_replaced_either(tmp_path):
    target = tmp_path / "out" / "a.png"
    target.parent.mkdir()
    target.write_text("someone else's")  # appeared while the batch ran

    def write(tmp):
        Path(tmp).write_text("ours")

    assert cli.write_new(str(target), write) == str(tmp_path / "out" / "a-2.png")
    assert target.read_text() == "someone else's" and (tmp_path / "out" / "a-2.png").read_text() == "ours"
    assert cli.write_new(str(target), write, overwrite=True) == str(target)
    assert target.read_text() == "ours"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a-2.png", "a.png"]  # no temp files


def test_export_refuses_an_existing_out_before_loading_anything(tmp_path):
    out = tmp_path / "existing.tflite"
    out.write_bytes(b"my earlier export")
    code, _, err, imported = _cli("export", "--preset", presets.IMAGENET, "--out", out)
    assert code == cli.EXIT_USAGE and _no_keras(imported)
    assert err.strip() == (f"error: --out {out} exists; pass --overwrite to replace it, or choose "
                           "another --out")
    assert out.read_bytes() == b"my earlier export"


def test_convert_refuses_to_write_over_its_source_or_an_existing_out(tmp_path, capsys):
    src = tmp_path / "mobilenet_2_5_128_tf.h5"
    src.write_bytes(b"the only copy")
    for out, overwrite in ((src, []), (src, ["--overwrite"]), (tmp_path / "." / src.name, ["--overwrite"])):
        with pytest.raises(SystemExit) as exit_info:
            convert_main([str(src), "--out", str(out), *overwrite])
        assert exit_info.value.code == cli.EXIT_USAGE
        assert "is the source being converted" in capsys.readouterr().err
    prefix = tmp_path / "ckpt" / "model.ckpt"  # a TF checkpoint: prefix.index, prefix.data-*
    prefix.parent.mkdir()
    for suffix in (".index", ".data-00000-of-00001"):
        Path(f"{prefix}{suffix}").write_bytes(b"tensors")
    with pytest.raises(SystemExit):
        convert_main([str(prefix), "--out", f"{prefix}.index", "--overwrite"])
    assert "is the source being converted" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_main([str(prefix.parent), "--out", str(prefix.parent / "new.weights.h5")])
    assert "inside the source folder" in capsys.readouterr().err
    earlier = tmp_path / "earlier.weights.h5"
    earlier.write_bytes(b"an earlier conversion")
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(src), "--out", str(earlier)])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert f"--out {earlier} exists; pass --overwrite" in capsys.readouterr().err
    assert src.read_bytes() == b"the only copy" and earlier.read_bytes() == b"an earlier conversion"


def _keras_applications_h5(model, path, extra):
    """A keras.applications-style HDF5 (``layer_names`` / ``weight_names``) of ``model``'s
    weighted layers plus ``extra`` ({name: arrays}; [] for a layer without weights,
    as keras.applications files list their ReLU, Dropout and Reshape layers)."""
    from mobilenet_zoo.weights_io import iter_weighted_layers

    layers = {la.name: la.get_weights() for la in iter_weighted_layers(model)} | extra
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for name, arrays in layers.items():
            group = f.create_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, value in zip(names, arrays):
                group.create_dataset(weight_name, data=value)
    return path


def test_convert_lists_as_not_used_only_layers_that_have_weights(tmp_path, capsys):
    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier

    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3)))
    src = _keras_applications_h5(model, tmp_path / "mobilenet_2_5_128_tf.h5", {
        "conv1_relu": [], "dropout": [], "reshape_2": [], "act_softmax": [],
        "extra_dense": [np.ones((4, 2), "float32")]})
    assert convert_main([str(src), "--out", str(tmp_path / "k.weights.h5")]) == 0
    printed = capsys.readouterr().out
    assert "not used: ['extra_dense']" in printed


# --- cheap checks first, before Keras and TensorFlow -----------------------------------

def test_export_of_an_unknown_preset_is_a_usage_error_with_close_matches_before_keras(tmp_path):
    code, _, err, imported = _cli("export", "--preset", "mobilenet_v1_1.0_224_imagnet",
                                  "--out", tmp_path / "x.tflite")
    assert code == cli.EXIT_USAGE and _no_keras(imported)
    assert len(err.strip().splitlines()) == 1 and "Unknown preset 'mobilenet_v1_1.0_224_imagnet'" in err
    assert f"did you mean {presets.IMAGENET}" in err and "`mobilenet-zoo presets`" in err
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize("command", ["detect", "classify"])
def test_a_missing_photo_fails_before_keras_is_imported(tmp_path, command):
    code, stdout, err, imported = _cli(command, tmp_path / "missing.jpg", cwd=tmp_path)
    assert code == cli.EXIT_SKIPPED and _no_keras(imported) and stdout == ""
    assert f"{tmp_path / 'missing.jpg'}: no such file or folder" in err
    assert not (tmp_path / "detections").exists()


def test_offline_classify_of_a_remote_preset_is_one_line_naming_the_fix(tmp_path):
    code, stdout, err, imported = _cli(
        "classify", tmp_path / "photo.jpg", "--preset", REMOTE,
        env={"MOBILENET_ZOO_OFFLINE": "1", "MOBILENET_ZOO_CACHE": str(tmp_path / "empty_cache")})
    assert code == cli.EXIT_USAGE and _no_keras(imported) and stdout == ""
    [line] = err.strip().splitlines()  # no traceback
    assert line.startswith(f"error: preset {REMOTE} is not installed")
    assert "MOBILENET_ZOO_OFFLINE" in line and f"`mobilenet-zoo presets fetch {REMOTE} --from FILE`" in line


def test_an_expected_error_inside_a_run_is_one_line_not_a_traceback(capsys):
    from mobilenet_zoo.hub.download import DownloadError

    def body():
        raise DownloadError("https://example.invalid/x.h5: timed out; set $MOBILENET_ZOO_MIRROR")

    assert cli.run_guarded(body) == cli.EXIT_FATAL
    assert capsys.readouterr().err == \
        "error: https://example.invalid/x.h5: timed out; set $MOBILENET_ZOO_MIRROR\n"


# --- tasks refuse presets of another task -----------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["classify", "PHOTO", "--preset", presets.FACE_SSD],
     f"error: {presets.FACE_SSD} is an SSD preset (a detector): run `mobilenet-zoo detect --preset "
     f"{presets.FACE_SSD} ...`"),
    (["detect", "PHOTO", "--preset", presets.IMAGENET, "--out", "OUT"],
     f"error: {presets.IMAGENET} is a MobileNetClassifier preset (a classifier): run `mobilenet-zoo "
     f"classify --preset {presets.IMAGENET} ...`"),
])
def test_classify_and_detect_refuse_a_preset_of_the_other_task(tmp_path, argv, message):
    Image.fromarray(skdata.astronaut()).save(tmp_path / "photo.jpg")
    argv = [{"PHOTO": tmp_path / "photo.jpg", "OUT": tmp_path / "out"}.get(a, a) for a in argv]
    code, stdout, err, imported = _cli(*argv)
    assert code == cli.EXIT_USAGE and _no_keras(imported) and stdout == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(message)
    assert not (tmp_path / "out").exists()


def test_a_backbone_only_preset_is_refused_by_classify_detect_and_export(tmp_path, monkeypatch):
    from mobilenet_zoo import MobileNetBackbone
    from mobilenet_zoo.weights_io import save_by_name

    cache = tmp_path / "cache"
    monkeypatch.setenv(presets.ENV_CACHE_DIR, str(cache))
    save_by_name(MobileNetBackbone(alpha=0.25, input_shape=(96, 96, 3)), tmp_path / "features.weights.h5")
    presets.register_preset("my_features", tmp_path / "features.weights.h5", {"alpha": 0.25, "input_size": 96})
    Image.fromarray(skdata.astronaut()).save(tmp_path / "photo.jpg")
    for argv in (["classify", tmp_path / "photo.jpg"], ["detect", tmp_path / "photo.jpg", "--out", tmp_path / "o"],
                 ["export", "--out", tmp_path / "f.tflite"]):
        code, stdout, err, imported = _cli(*argv, "--preset", "my_features",
                                           env={"MOBILENET_ZOO_CACHE": str(cache)})
        assert code == cli.EXIT_USAGE and _no_keras(imported) and stdout == "", (argv, err)
        [line] = err.strip().splitlines()
        assert line.startswith("error: my_features is a backbone-only preset (MobileNet features, "
                               "no task head), so it cannot"), line
        assert "MobileNetBackbone.from_preset('my_features')" in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "f.tflite").exists()


# --- careless-user sweep: killed and interrupted runs, misleading hints -------------------

def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os;print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _no_sigint_ignore():
    """A child started from a background shell job inherits SIGINT ignored; Ctrl-C reaches
    an interactive command, so restore the default (Python then raises KeyboardInterrupt)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory):
    """A 3-class classifier saved with model.save(): a fast export."""
    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier

    path = tmp_path_factory.mktemp("small") / "clf3.keras"
    MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(96, 96, 3)), num_classes=3).save(path)
    return path


def test_detect_writes_one_temporary_per_output_and_removes_those_a_killed_run_left(
        tmp_path, capsys, monkeypatch):
    photos, out = tmp_path / "photos", tmp_path / "out"
    (photos / "sub").mkdir(parents=True)
    (out / "sub").mkdir(parents=True)
    small = skdata.astronaut()[::4, ::4]
    Image.fromarray(small).save(photos / "a.png")
    Image.fromarray(small).save(photos / "sub" / "b.png")
    dead = _dead_pid()
    # What a run SIGKILLed mid-write left (the nested name: write_new around draw's atomic_write).
    stale = [out / f"..a.png.tmp-{dead}.png.tmp-{dead}.png", out / f".a.png.tmp-{dead}.png",
             out / "sub" / f".b.png.tmp-{dead}.png"]
    live = out / f".c.png.tmp-{os.getpid()}.png"  # another run, still writing
    users = out / f"notes.tmp-{dead}.txt"  # not hidden: not a temporary of ours
    for path in (*stale, live, users):
        path.write_bytes(b"partial")
    saved = []
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        saved.append(os.path.basename(fp))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    code = detect_main([str(photos), "--out", str(out)])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    assert not any(path.exists() for path in stale)
    assert live.read_bytes() == b"partial" and users.read_bytes() == b"partial"
    pid = os.getpid()  # one temporary per output, not a temporary inside a temporary
    assert sorted(saved) == [f".a.png.tmp-{pid}.png", f".b.png.tmp-{pid}.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.png", "sub", live.name, users.name])
    assert [p.name for p in (out / "sub").iterdir()] == ["b.png"]


def test_a_rerun_of_detect_into_the_same_out_ends_saying_how_many_got_a_new_name(tmp_path, capsys):
    photo = tmp_path / "a.png"
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(photo)
    out = tmp_path / "dk"
    assert detect_main([str(photo), "--out", str(out)]) == cli.EXIT_OK
    assert "new name" not in capsys.readouterr().err
    assert detect_main([str(photo), "--out", str(out)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        "1 output(s) written under a new name (NAME-2 ...) because the name was taken by a file "
        "this run did not write; pass --overwrite to replace them")
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a.png"]
    assert detect_main([str(photo), "--out", str(out), "--overwrite"]) == cli.EXIT_OK
    assert "new name" not in capsys.readouterr().err


def test_export_and_convert_remove_the_temporaries_a_killed_run_left_for_their_out(
        tmp_path, small_keras, capsys):
    out = tmp_path / "user.tflite"
    out.write_text("x\n")
    dead = _dead_pid()
    stale = [tmp_path / f"user.tflite.tmp-{dead}", tmp_path / f".user.tflite.tmp-{dead}.tflite"]
    kept = [tmp_path / f"user.tflite.tmp-{os.getpid()}",  # a live export's
            tmp_path / f"other.tflite.tmp-{dead}"]  # another file's: not this run's business
    for path in (*stale, *kept):
        path.write_bytes(b"")
    code, stdout, err, _ = _cli("export", "--model", small_keras, "--out", out, "--overwrite")
    assert code == cli.EXIT_OK, err
    assert stdout.startswith(f"wrote {out}:") and out.read_bytes()[4:8] == b"TFL3"
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)

    weights = tmp_path / "w.weights.h5"
    stale = tmp_path / f".w.weights.h5.tmp-{dead}.h5"
    stale.write_bytes(b"")
    (tmp_path / "bogus.h5").write_bytes(b"not hdf5")
    with pytest.raises(SystemExit):
        convert_main([str(tmp_path / "bogus.h5"), "--out", str(weights)])
    capsys.readouterr()
    assert not stale.exists() and not weights.exists()


def test_ctrl_c_during_export_keeps_the_old_file_in_one_line_exit_130(tmp_path, small_keras):
    import signal
    import time

    out = tmp_path / "user.tflite"
    out.write_text("my earlier export\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MOBILENET_ZOO_TF_LOGS="0")
    child = subprocess.Popen(
        [sys.executable, "-m", "mobilenet_zoo", "export", "--model", str(small_keras), "--out", str(out),
         "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=_no_sigint_ignore)
    tmp = Path(f"{out}.tmp-{child.pid}")  # created just before the conversion starts
    deadline = time.monotonic() + 120
    while not tmp.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tmp.exists(), "the export ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == cli.EXIT_INTERRUPTED == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == \
        f"interrupted; {out} is as it was (no temporary file is left)"
    assert out.read_text() == "my earlier export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user.tflite"]


def test_export_to_a_path_under_a_file_is_a_usage_error_before_loading(tmp_path):
    (tmp_path / "clf3.keras").write_bytes(b"never read")
    (tmp_path / "cachefile").write_text("a file\n")
    out = tmp_path / "cachefile" / "x.tflite"
    code, stdout, err, imported = _cli("export", "--model", tmp_path / "clf3.keras", "--out", out)
    assert code == cli.EXIT_USAGE and _no_keras(imported) and stdout == ""
    assert err.strip() == (f"error: --out {out} cannot be written: {tmp_path / 'cachefile'} is a file, "
                           "not a folder; choose an --out outside it")
    Image.fromarray(skdata.astronaut()[::4, ::4]).save(tmp_path / "a.png")  # detect's --out too
    code, stdout, err, imported = _cli("detect", tmp_path / "a.png", "--out", tmp_path / "cachefile" / "dk")
    assert code == cli.EXIT_USAGE and _no_keras(imported) and stdout == ""
    assert f"{tmp_path / 'cachefile'} is a file, not a folder" in err


def test_detect_of_a_classifier_of_other_classes_suggests_python_not_classify(tmp_path, monkeypatch):
    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier
    from mobilenet_zoo.weights_io import save_by_name

    cache = tmp_path / "cache"
    monkeypatch.setenv(presets.ENV_CACHE_DIR, str(cache))
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(96, 96, 3)), num_classes=3)
    save_by_name(model, tmp_path / "clf3.weights.h5")
    presets.register_preset("p_keras", tmp_path / "clf3.weights.h5", {
        "alpha": 0.25, "input_size": 96, "task": "MobileNetClassifier", "num_classes": 3})
    Image.fromarray(skdata.astronaut()).save(tmp_path / "x.png")
    env = {"MOBILENET_ZOO_CACHE": str(cache)}
    code, stdout, err, imported = _cli("detect", "--preset", "p_keras", tmp_path / "x.png",
                                       "--out", tmp_path / "o", env=env)
    assert code == cli.EXIT_USAGE and _no_keras(imported) and stdout == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: p_keras is a MobileNetClassifier preset (a classifier): it has 3 "
                           "classes, not ImageNet's 1000, so `mobilenet-zoo classify` does not take it")
    assert "MobileNetClassifier.from_preset('p_keras')" in line and "`mobilenet-zoo classify --preset" not in line
    # The advice holds: classify refuses it too, pointing at the same Python call.
    code, _, err, _ = _cli("classify", "--preset", "p_keras", tmp_path / "x.png", env=env)
    assert code == cli.EXIT_USAGE and "MobileNetClassifier.from_preset('p_keras')" in err
    assert not (tmp_path / "o").exists()
