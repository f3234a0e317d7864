"""The published family one call away: weights="imagenet" by alpha and size, remote
presets downloaded from a local HTTP server (127.0.0.1, started here) that serves
files written here in the published layouts, verified, resumed, converted, cached.
Nothing here reaches the internet."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import published_layouts as pl  # noqa: E402
import pytest
from PIL import Image
from skimage import data

from mobilenet_zoo import SSD, MobileNetBackbone, MobileNetClassifier, presets, weights_io
from mobilenet_zoo.cli import presets as cli
from mobilenet_zoo.convert import read_tfjs, tfjs_od_api_ssd_to_checkpoint
from mobilenet_zoo.data.coco import label_map_90
from mobilenet_zoo.hub import catalog, download, registry
from mobilenet_zoo.presets.install import ConversionCheckError, install
from mobilenet_zoo.testing import randomize_batch_norm

# One worker runs the module (`--dist loadgroup`), so its module fixtures are built once.
pytestmark = pytest.mark.xdist_group("published_family")

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data"
SMALL = "mobilenet_v1_0.25_128_imagenet"
KERAS_FILE, SLIM_FILE = "mobilenet_2_5_128_tf.h5", "mobilenet_v1_0.25_128.tgz"


def _classifier(num_classes, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3)),
                                num_classes=num_classes)
    return randomize_batch_norm(model, seed)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The files, written once: a keras.applications h5, a TF-slim tgz (1001 classes,
    frozen graph), the shipped face SSD as face-api.js's tfjs folder, and TF OD API
    archives of the face SSD read back from that folder."""
    root = tmp_path_factory.mktemp("published")
    keras_model = _classifier(1000, 1)
    slim_model = _classifier(1001, 2)
    files = {
        KERAS_FILE: pl.write_keras2_h5(keras_model, root / KERAS_FILE).read_bytes(),
        SLIM_FILE: pl.write_slim_tgz(slim_model, 128, root / SLIM_FILE).read_bytes(),
    }
    face = SSD.from_preset(presets.FACE_SSD)
    face_manifest = pl.write_tfjs_face_ssd(face, root / "faceapi-ssd")
    tensors = tfjs_od_api_ssd_to_checkpoint(read_tfjs(face_manifest))
    for name, kwargs in {"face_ssd.tar.gz": {}, "face_ssd_nofrozen.tar.gz": {"frozen": False},
                         "face_ssd_badcoder.tar.gz": {"y_scale": 5.0}}.items():
        files[name] = pl.write_od_api_tar(tensors, face, root / name, **kwargs).read_bytes()
    return {"files": files, "keras_model": keras_model, "slim_model": slim_model, "face": face,
            "face_manifest": face_manifest, "root": root}


@pytest.fixture
def online(monkeypatch, tmp_path, published):
    """A fresh user cache, downloads allowed, the mirror pointed at a local server."""
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MOBILENET_ZOO_OFFLINE", raising=False)
    with pl.FileServer(published["files"]) as server:
        monkeypatch.setenv("MOBILENET_ZOO_MIRROR", server.url)
        yield server


@pytest.fixture
def keras_hash_published(monkeypatch, published):
    """Pretend our keras.applications-layout file is the published one (its hash)."""
    digest = download.hashlib.sha256(published["files"][KERAS_FILE]).hexdigest()
    monkeypatch.setitem(catalog.KERAS_APPLICATIONS_SHA256, "2_5_128", (digest, "0" * 64))


@pytest.fixture
def face_presets(monkeypatch):
    """Remote presets for the served face archives (the COCO entries' shape)."""
    original = catalog.remote_presets

    def with_face():
        entries = dict(original())
        for name, file, extra in (("face_od_api", "face_ssd.tar.gz", {}),
                                  ("face_od_api_nofrozen", "face_ssd_nofrozen.tar.gz",
                                   {"anchor_order": "2017"}),
                                  ("face_od_api_badcoder", "face_ssd_badcoder.tar.gz", {})):
            entry = catalog._ssd_entry(file, 1.0, 0, "test archive of the face SSD")
            entry.update(class_names=["face", "unused"], labels=None, input_size=512,
                         num_classes=2, **extra)
            entries[name] = entry
        return entries

    monkeypatch.setattr(catalog, "remote_presets", with_face)


def _backbone_weights(model):
    backbone = getattr(model, "backbone", model)
    return {la.name: la.get_weights() for la in backbone.layers if la.weights}


def _photo(size):
    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size)))[None].astype("float32")


# ---------------------------------------------------------------- the alias
def test_imagenet_alias_follows_alpha_and_size_like_keras_applications():
    assert presets.imagenet_preset(0.5, 160) == "mobilenet_v1_0.5_160_imagenet"
    assert presets.imagenet_preset(1, 224) == presets.IMAGENET
    with pytest.warns(UserWarning, match=r"input size 300.*mobilenet_v1_0.75_224_imagenet"):
        assert presets.imagenet_preset(0.75, 300) == "mobilenet_v1_0.75_224_imagenet"
    with pytest.raises(ValueError, match=r"alpha=0.6.*\[0.25, 0.5, 0.75, 1.0\]"):
        MobileNetBackbone(alpha=0.6, weights="imagenet")


def test_imagenet_at_alpha_1_224_is_the_shipped_preset_offline():
    backbone = MobileNetBackbone(weights="imagenet")  # MOBILENET_ZOO_OFFLINE=1 (conftest)
    reference = MobileNetBackbone.from_preset(presets.IMAGENET)
    for name, arrays in _backbone_weights(reference).items():
        for a, b in zip(arrays, _backbone_weights(backbone)[name]):
            np.testing.assert_array_equal(a, b)


def test_every_published_variant_is_listed_with_source_hash_and_metric(capsys):
    names = presets.list_presets()
    family = [catalog.imagenet_name(a, s) for a in catalog.ALPHAS for s in catalog.SIZES]
    assert set(family) <= set(names) and len(family) == 16
    assert {"ssd_mobilenet_v1_coco", "ssd_mobilenet_v1_0.75_depth_coco", presets.FACE_SSD} <= set(names)
    assert cli.main(["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    row = rows["mobilenet_v1_0.5_160_imagenet"]
    assert row["location"] == "remote" and row["url"].endswith("/mobilenet_5_0_160_tf.h5")
    assert row["sha256"] == catalog.KERAS_APPLICATIONS_SHA256["5_0_160"][0]
    assert row["metric"].startswith("top-1 59.1% / top-5 81.9%")
    assert rows[presets.IMAGENET]["location"] == "package" and rows[presets.IMAGENET]["size_bytes"] > 1e7
    assert rows["ssd_mobilenet_v1_coco"]["metric"] == "COCO mAP 21 (TF OD API model zoo)"


def test_offline_machine_is_told_how_to_install_a_remote_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    with pytest.raises(download.DownloadError,
                       match=r"mobilenet_5_0_160_tf.h5.*fetch mobilenet_v1_0.5_160_imagenet --from FILE"):
        MobileNetBackbone(alpha=0.5, rho=160 / 224, weights="imagenet")


def test_coco_label_map_names_the_90_slots():
    names = label_map_90()
    assert len(names) == 90 and names[0] == "person" and names[89] == "toothbrush"
    assert names[11] == "N/A" and names[12] == "stop sign" and names.count("N/A") == 10


# ---------------------------------------------------------------- downloads
def test_keras_h5_downloads_converts_and_reloads_offline(online, keras_hash_published, published,
                                                          monkeypatch):
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(128, 128, 3), weights="imagenet")
    source = _backbone_weights(published["keras_model"])
    for name, arrays in _backbone_weights(backbone).items():
        for a, b in zip(arrays, source[name]):
            np.testing.assert_array_equal(a, b)
    meta = presets.get_preset(SMALL)
    assert meta["location"] == "cache" and meta["source_kind"] == "keras_h5"
    assert meta["published_top1"] == 41.5 and meta["source_sha256_published"]
    left = [p.name for p in registry.downloads_dir().iterdir() if not p.name.endswith(".lock")]
    assert not left, "the archive is removed once converted"
    online.httpd.shutdown()  # the host is gone; the next call needs no network
    monkeypatch.setenv("MOBILENET_ZOO_OFFLINE", "1")
    model = MobileNetClassifier.from_preset(SMALL)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               published["keras_model"].predict(x, verbose=0), atol=1e-6)


def test_published_hash_mismatch_is_refused_and_names_the_second_source(online):
    with pytest.raises(download.HashMismatchError) as err:
        MobileNetClassifier.from_preset(SMALL)
    message = str(err.value)
    published = catalog.KERAS_APPLICATIONS_SHA256["2_5_128"][0]
    assert published in message and download.hashlib.sha256(
        online.files[KERAS_FILE]).hexdigest() in message
    assert "TF-slim" in message and f"fetch {SMALL} --source tf_slim_tgz" in message
    assert presets.get_preset(SMALL)["location"] == "remote"
    assert not [p for p in registry.downloads_dir().iterdir() if not p.name.endswith(".lock")]


def test_tf_slim_tgz_is_checked_against_its_frozen_graph(online, published, capsys):
    assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 0
    printed = capsys.readouterr().out
    assert "no published hash: recorded now" in printed and "frozen graph" in printed
    meta = presets.get_preset(SMALL)
    assert meta["source_kind"] == "tf_slim_tgz" and "max probability difference" in meta["frozen_graph_check"]
    model = MobileNetClassifier.from_preset(SMALL)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    slim = published["slim_model"].predict(x, verbose=0)[:, 1:]
    np.testing.assert_allclose(model.predict(x, verbose=0), slim / slim.sum(1, keepdims=True),
                               atol=1e-5)


def test_a_cut_connection_is_resumed_with_a_range_request(online, keras_hash_published, tmp_path):
    online.cut_after[KERAS_FILE] = len(online.files[KERAS_FILE]) // 2
    dest = download.download(f"https://example.invalid/x/{KERAS_FILE}", tmp_path / KERAS_FILE,
                             catalog.KERAS_APPLICATIONS_SHA256["2_5_128"][0])
    assert dest.read_bytes() == online.files[KERAS_FILE]
    ranges = [r for name, r in online.requests if name == KERAS_FILE]
    assert ranges == [None, f"bytes={len(online.files[KERAS_FILE]) // 2}-"]


@pytest.mark.integration
def test_a_killed_download_is_never_used_and_resumes(online, keras_hash_published, tmp_path):
    online.httpd.delay = 0.1  # 64 KiB per 100 ms: the kill lands mid-file
    dest = tmp_path / KERAS_FILE
    code = ("import sys; from mobilenet_zoo.hub import download; "
            "download.download(sys.argv[1], sys.argv[2])")
    proc = subprocess.Popen([sys.executable, "-c", code, f"{online.url}/{KERAS_FILE}", str(dest)],
                            stderr=subprocess.DEVNULL, env=dict(os.environ))
    part = dest.with_name(dest.name + ".part")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < 200_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert part.exists() and not dest.exists(), "only the .part file, never the final name"
    online.httpd.delay = 0.0
    size = part.stat().st_size
    download.download(f"{online.url}/{KERAS_FILE}", dest,
                      catalog.KERAS_APPLICATIONS_SHA256["2_5_128"][0])
    assert dest.read_bytes() == online.files[KERAS_FILE] and not part.exists()
    assert online.requests[-1] == (KERAS_FILE, f"bytes={size}-")


def test_a_dead_mirror_fails_fast_naming_url_cache_and_fetch(monkeypatch, tmp_path):
    import socket

    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    monkeypatch.delenv("MOBILENET_ZOO_OFFLINE", raising=False)
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MOBILENET_ZOO_MIRROR", f"http://127.0.0.1:{port}/models")
    start = time.monotonic()
    with pytest.raises(download.DownloadError) as err:
        presets.preset_path(SMALL)
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert f"http://127.0.0.1:{port}/models/{KERAS_FILE}" in message
    assert str(tmp_path / "downloads") in message and f"fetch {SMALL} --from FILE" in message


def test_a_host_that_never_answers_times_out(monkeypatch, tmp_path):
    import socket

    monkeypatch.setenv("MOBILENET_ZOO_TIMEOUT", "1")
    monkeypatch.delenv("MOBILENET_ZOO_OFFLINE", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # accepts the connection, never answers
        start = time.monotonic()
        with pytest.raises(download.DownloadError, match="timed out"):
            download.download(f"http://127.0.0.1:{sock.getsockname()[1]}/{KERAS_FILE}",
                              tmp_path / KERAS_FILE)
        assert time.monotonic() - start < 10


def test_two_processes_downloading_one_file_fetch_it_once(online, keras_hash_published, tmp_path):
    online.httpd.delay = 0.01
    digest = catalog.KERAS_APPLICATIONS_SHA256["2_5_128"][0]
    results = []
    threads = [threading.Thread(target=lambda: results.append(download.download(
        f"{online.url}/{KERAS_FILE}", tmp_path / KERAS_FILE, digest))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0].read_bytes() == online.files[KERAS_FILE]
    assert [name for name, _ in online.requests] == [KERAS_FILE]


def test_a_tampered_file_carried_in_is_refused_with_both_hashes(online, keras_hash_published,
                                                                published, tmp_path):
    tampered = tmp_path / KERAS_FILE
    raw = bytearray(published["files"][KERAS_FILE])
    raw[-100] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    assert cli.main(["fetch", SMALL, "--from", str(tampered)]) == 2
    assert presets.get_preset(SMALL)["location"] == "remote"
    good = tmp_path / "good" / KERAS_FILE
    good.parent.mkdir()
    good.write_bytes(published["files"][KERAS_FILE])
    assert cli.main(["fetch", SMALL, "--from", str(good)]) == 0
    assert presets.get_preset(SMALL)["location"] == "cache" and online.requests == []


# ---------------------------------------------------------------- TF OD API archives
def test_face_api_tfjs_folder_has_the_published_layout(published):
    """The written folder is face-api.js's: the same weights (name, shape, dtype,
    quantization dtype) in the same order, the same graph constants, one .bin shard
    of exactly the described bytes (tests/data: the layout of the published manifest)."""
    reference = json.loads((DATA / "faceapi_ssd_manifest_layout.json").read_text())
    (group,) = json.loads(published["face_manifest"].read_text())
    assert group["paths"] == reference["paths"]
    assert [[w["name"], w["shape"], w["dtype"], w.get("quantization", {}).get("dtype")]
            for w in group["weights"]] == [row[:4] for row in reference["weights"]]
    values = read_tfjs(published["face_manifest"])
    for name, _, _, _, value in (row for row in reference["weights"] if len(row) == 5):
        np.testing.assert_allclose(values[name], value, rtol=1e-7, err_msg=name)
    stored = sum(int(np.prod(w["shape"])) * (1 if "quantization" in w else 4) for w in group["weights"])
    assert (published["face_manifest"].parent / group["paths"][0]).stat().st_size == stored


def test_face_api_tfjs_folder_converts_back_to_the_shipped_face_preset(published, tmp_path):
    """Writer and reader agree: the folder, converted as the preset was made
    (read_tfjs + tfjs_od_api_ssd_to_checkpoint, --input-size 512), detects as the
    shipped preset does on a real photo."""
    from mobilenet_zoo.convert import convert

    out = tmp_path / "face.weights.h5"
    meta = convert(published["face_manifest"], out, input_size=512)
    assert meta["unused"] == [] and (meta["alpha"], meta["num_classes"]) == (1.0, 2)
    model = SSD(MobileNetBackbone(alpha=1.0, min_depth=16), num_classes=2, image_size=512,
                anchor_generator={"order": "2017"})
    model.load_weights(str(out))
    assert meta["layers_loaded"] == len(list(weights_io.iter_weighted_layers(model)))
    photo = _photo(512)
    ours, shipped = model.predict(photo, verbose=0), published["face"].predict(photo, verbose=0)
    assert shipped["scores"][0, 0] > 0.9
    np.testing.assert_allclose(ours["scores"][0, :5], shipped["scores"][0, :5], atol=1e-5)
    np.testing.assert_allclose(ours["boxes"][0, :5], shipped["boxes"][0, :5], atol=1e-5)
    np.testing.assert_array_equal(ours["classes"][0, :5], shipped["classes"][0, :5])


def test_od_api_archive_builds_the_face_detector_from_pipeline_config(online, face_presets,
                                                                       published):
    model = SSD.from_preset("face_od_api")
    meta = presets.get_preset("face_od_api")
    assert meta["anchor_order"] == "2017" and "frozen_inference_graph" in meta["frozen_graph_check"]
    assert meta["task_config"]["image_size"] == [512, 512]
    assert meta["task_config"]["box_coder"]["scale_factors"] == [10.0, 10.0, 5.0, 5.0]
    assert model.class_names == ["face", "unused"] and model.image_size == (512, 512)
    ours, shipped = model.predict(_photo(512), verbose=0), published["face"].predict(_photo(512), verbose=0)
    assert ours["scores"][0, 0] > 0.9 and ours["classes"][0, 0] == 0
    np.testing.assert_allclose(ours["scores"][0, :5], shipped["scores"][0, :5], atol=1e-5)
    np.testing.assert_allclose(ours["boxes"][0, 0], shipped["boxes"][0, 0], atol=1e-5)


def test_od_api_archive_without_frozen_graph_takes_the_metadata_anchor_order(online, face_presets,
                                                                              published):
    model = SSD.from_preset("face_od_api_nofrozen")
    assert presets.get_preset("face_od_api_nofrozen")["anchor_order"] == "2017"
    ours, shipped = model.predict(_photo(512), verbose=0), published["face"].predict(_photo(512), verbose=0)
    np.testing.assert_allclose(ours["boxes"][0, 0], shipped["boxes"][0, 0], atol=1e-5)


def test_od_api_conversion_that_differs_from_its_frozen_graph_fails_loudly(online, face_presets):
    with pytest.raises(ConversionCheckError, match="does not reproduce frozen_inference_graph"):
        SSD.from_preset("face_od_api_badcoder")
    assert presets.get_preset("face_od_api_badcoder")["location"] == "remote"
    assert not (registry.cache_dir() / "face_od_api_badcoder.weights.h5").exists()


# ---------------------------------------------------------------- the registry
def _register_many(prefix, count):
    with registry.locked_cache():
        pass
    for i in range(count):
        with registry.locked_cache():
            registry.write_entry(f"{prefix}_{i}", {"alpha": 1.0, "input_size": 224, "file": "x",
                                                   "sha256": "0" * 64})


@pytest.mark.integration
def test_two_processes_registering_at_once_keep_every_entry(tmp_path):
    env = dict(os.environ, MOBILENET_ZOO_CACHE=str(tmp_path))
    code = ("import sys; sys.path[:0] = sys.argv[2:]; import test_published_family as t; "
            "t._register_many(sys.argv[1], 25)")
    here = Path(__file__).parent
    procs = [subprocess.Popen([sys.executable, "-c", code, p, str(here), str(here.parent)], env=env)
             for p in ("a", "b")]
    assert [p.wait() for p in procs] == [0, 0]
    manifest = json.loads((tmp_path / "presets" / "manifest.json").read_text())
    assert len(manifest) == 50


def test_a_long_lived_process_keeps_what_others_registered(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    _register_many("mine", 1)
    assert "mine_0" in presets.list_presets()  # parsed and cached by this process
    path = tmp_path / "presets" / "manifest.json"
    other = json.loads(path.read_text())
    other["theirs"] = {"alpha": 1.0, "input_size": 224, "file": "y", "sha256": "0" * 64}
    path.write_text(json.dumps(other))  # another process registers meanwhile
    _register_many("mine_again", 1)
    assert {"mine_0", "theirs", "mine_again_0"} <= set(json.loads(path.read_text()))


def test_register_refuses_metadata_the_file_cannot_honour(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))
    model = _classifier(3, 3)
    file = tmp_path / "three.weights.h5"
    from mobilenet_zoo import weights_io

    weights_io.save_by_name(model, file)
    with pytest.raises(ValueError, match="cannot be honoured.*conv_preds"):
        presets.register_preset("three", file, {"alpha": 0.25, "input_size": 128,
                                                "task": "MobileNetClassifier", "num_classes": 1000})
    assert "three" not in presets.list_presets()
    presets.register_preset("three", file, {"alpha": 0.25, "input_size": 128,
                                            "task": "MobileNetClassifier", "num_classes": 3})
    loaded = MobileNetClassifier.from_preset("three")
    assert loaded.num_classes == 3
    x = np.random.default_rng(2).uniform(-1, 1, (1, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_register_preset_from_a_url_needs_and_checks_its_sha256(online, tmp_path, published):
    file = tmp_path / "mine.weights.h5"
    from mobilenet_zoo import weights_io

    weights_io.save_by_name(published["keras_model"], file)
    online.files["mine.weights.h5"] = file.read_bytes()
    meta = {"alpha": 0.25, "input_size": 128, "task": "MobileNetClassifier", "num_classes": 1000}
    with pytest.raises(ValueError, match="needs `sha256`"):
        presets.register_preset("mine", f"{online.url}/mine.weights.h5", meta)
    with pytest.raises(download.HashMismatchError):
        presets.register_preset("mine", f"{online.url}/mine.weights.h5", meta, sha256="0" * 64)
    presets.register_preset("mine", f"{online.url}/mine.weights.h5", meta,
                            sha256=presets.sha256_of(file))
    assert presets.get_preset("mine")["location"] == "cache"


def test_from_preset_refuses_unknown_keyword_arguments():
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['num_clases'\].*num_classes"):
        MobileNetClassifier.from_preset(presets.IMAGENET, num_clases=3)
    with pytest.raises(TypeError, match="outptu_stride"):
        MobileNetBackbone.from_preset(presets.IMAGENET, outptu_stride=16)


def test_imagenet_recipe_evaluates_published_weights_without_training(capsys, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "recipes"))
    recipe = importlib.import_module("imagenet")
    (result,) = recipe.main(["--evaluate-only", "--smoke", "--weights", "imagenet"])
    assert result["preset"] == presets.IMAGENET and 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert (result["published_top1"], result["published_top5"]) == (70.9, 89.9)
    assert "TF-slim published top-1 70.9% / top-5 89.9%" in capsys.readouterr().out


def test_imagenet_recipe_refuses_to_evaluate_random_weights(capsys, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "recipes"))
    recipe = importlib.import_module("imagenet")
    with pytest.raises(SystemExit):
        recipe.parse_args(["--evaluate-only", "--weights", "scratch"])
    assert "--weights scratch is random" in capsys.readouterr().err


# ---------------------------------------------------------------- careless use (sweep)
def test_a_bad_download_without_published_hash_is_deleted_not_reused(online, published):
    online.files[SLIM_FILE] = b"<html>503 Service Unavailable</html>"  # a broken mirror
    assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 3  # bad published file: fatal
    assert not (registry.downloads_dir() / SLIM_FILE).exists()
    online.files[SLIM_FILE] = published["files"][SLIM_FILE]  # the mirror is fixed
    assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 0


def test_a_stale_partial_longer_than_the_file_is_discarded(online, keras_hash_published, tmp_path):
    dest = tmp_path / KERAS_FILE
    dest.with_name(dest.name + ".part").write_bytes(b"x" * (len(online.files[KERAS_FILE]) + 10))
    download.download(f"{online.url}/{KERAS_FILE}", dest, catalog.KERAS_APPLICATIONS_SHA256["2_5_128"][0])
    assert dest.read_bytes() == online.files[KERAS_FILE]


def test_two_processes_installing_one_preset_both_get_it(online, tmp_path):
    online.httpd.delay = 0.01
    results, errors = [], []

    def fetch():
        try:
            results.append(install(SMALL, source="tf_slim_tgz"))
        except Exception as err:  # noqa: BLE001  reported below
            errors.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert [name for name, _ in online.requests] == [SLIM_FILE]


def test_an_archive_of_another_size_is_not_installed_under_this_name(online, published, tmp_path):
    carried = published["root"] / SLIM_FILE  # the 0.25-128 archive
    assert cli.main(["fetch", "mobilenet_v1_0.25_160_imagenet", "--from", str(carried)]) == 2
    assert presets.get_preset("mobilenet_v1_0.25_160_imagenet")["location"] == "remote"


def test_register_refuses_published_and_alias_names(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    for name in ("mobilenet_v1_0.25_192_imagenet", "imagenet", "scratch", "..", "a/b"):
        with pytest.raises(ValueError, match="name"):
            presets.register_preset(name, __file__, {"alpha": 0.25, "input_size": 192})


def test_detector_builders_load_alpha_025_imagenet_despite_min_depth_16(online, published):
    tgz = published["root"] / "mobilenet_v1_0.25_224.tgz"
    if not tgz.exists():
        pl.write_slim_tgz(MobileNetClassifier(MobileNetBackbone(alpha=0.25), num_classes=1001),
                          224, tgz)
    assert cli.main(["fetch", "mobilenet_v1_0.25_224_imagenet", "--from", str(tgz)]) == 0
    from mobilenet_zoo import ssd_mobilenet_v1

    with pytest.warns(UserWarning, match=r"min_depth=8.*min_depth=16.*conv1"):
        model = ssd_mobilenet_v1(num_classes=3, alpha=0.25)
    source = presets.preset_path("mobilenet_v1_0.25_224_imagenet")
    from mobilenet_zoo import weights_io

    np.testing.assert_array_equal(model.backbone.get_layer("conv_pw_13").get_weights()[0],
                                  weights_io.read_by_name(source)["conv_pw_13"][0])


def test_a_broken_cache_manifest_does_not_break_shipped_presets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "manifest.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable and was ignored"):
        MobileNetBackbone(weights="imagenet")
    with pytest.raises(ValueError, match=r"not valid JSON .*restore or delete it"):
        presets.register_preset("mine", presets.preset_path(presets.IMAGENET),
                                {"alpha": 1.0, "input_size": 224})
    (tmp_path / "presets" / "manifest.json").write_text('{"x": 1, "y": {"alpha": 1.0}}')
    with pytest.warns(UserWarning, match="entry 'x' has no `file`"):
        assert cli.main(["--json"]) == 0
    assert "x" not in {r["name"] for r in json.loads(capsys.readouterr().out)}


def test_bad_download_settings_name_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("MOBILENET_ZOO_OFFLINE", raising=False)
    for value in ("abc", "-1", "0", "nan", "inf"):
        monkeypatch.setenv("MOBILENET_ZOO_TIMEOUT", value)
        with pytest.raises(ValueError, match=r"\$MOBILENET_ZOO_TIMEOUT must be a positive number"):
            download.download("http://127.0.0.1:9/x.h5", tmp_path / "x.h5")
    monkeypatch.delenv("MOBILENET_ZOO_TIMEOUT")
    monkeypatch.setenv("MOBILENET_ZOO_OFFLINE", "maybe")
    with pytest.raises(ValueError, match=r"\$MOBILENET_ZOO_OFFLINE must be"):
        download.download("http://127.0.0.1:9/x.h5", tmp_path / "x.h5")
    monkeypatch.setenv("MOBILENET_ZOO_OFFLINE", "false")
    monkeypatch.setenv("MOBILENET_ZOO_MIRROR", "https://mirror.example/m?token=abc")
    assert download.resolve_url("https://a/b/c.h5") == "https://mirror.example/m/c.h5?token=abc"


def test_a_deleted_cache_file_is_reinstalled_by_fetch(online, published, capsys):
    assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 0
    presets.preset_path(SMALL).unlink()
    with pytest.raises(ValueError, match=f"fetch {SMALL} --force"):
        presets.preset_path(SMALL)
    assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 0
    assert presets.preset_path(SMALL).is_file()


def test_classify_cli_and_transfer_builder_take_a_published_variant(online, published, tmp_path,
                                                                    capsys):
    from mobilenet_zoo import classify
    from mobilenet_zoo.training import transfer

    assert cli.main(["fetch", SMALL, "--source", "tf_slim_tgz"]) == 0
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    assert classify.main([str(photo), "--preset", SMALL, "--top", "3"]) == 0
    assert str(photo) in capsys.readouterr().out
    model = transfer.build_transfer_classifier(num_classes=4, image_size=128, alpha=0.25)
    installed = MobileNetClassifier.from_preset(SMALL)
    np.testing.assert_array_equal(model.backbone.get_layer("conv_pw_13").get_weights()[0],
                                  installed.backbone.get_layer("conv_pw_13").get_weights()[0])


def test_mobilenet_zoo_cache_is_one_root_for_presets_downloads_and_data(tmp_path, monkeypatch):
    from mobilenet_zoo.data import digits_on_photos

    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    assert registry.cache_root() == tmp_path == digits_on_photos.cache_dir()
    assert registry.cache_dir() == tmp_path / "presets"
    assert registry.downloads_dir() == tmp_path / "downloads"


def test_presets_listing_and_help_start_without_tensorflow():
    for args in (["--help"], ["--json"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mobilenet_zoo", "presets",
                               *args], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, MOBILENET_ZOO_TF_LOGS="1"))
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
        assert "tensorflow" not in imported and "keras" not in imported


def test_a_registered_deeplab_rebuilds_at_its_own_output_stride(tmp_path, monkeypatch):
    """A DeepLabV3 trained at output stride 8 (recipes/segmentation.py --output-stride 8) is
    registered with its stride and rebuilt with it: at DeepLabV3.from_preset's default, 16,
    the same weights would run with other ASPP rates and give other masks."""
    from mobilenet_zoo.segmentation import DeepLabV3

    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))
    model = randomize_batch_norm(DeepLabV3(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3),
                                                             output_stride=8), 3), seed=1)
    model.save(tmp_path / "mine.keras")
    presets.register_preset("deeplab_os8", tmp_path / "mine.keras")
    assert presets.get_preset("deeplab_os8")["output_stride"] == 8
    loaded = DeepLabV3.from_preset("deeplab_os8")
    assert loaded.backbone.output_stride == 8 and loaded.aspp_rates == (12, 24, 36)
    x = np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
