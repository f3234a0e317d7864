"""Turns a published archive into a cached preset: fetch, verify, convert, check, register.

Per source kind (``catalog.py``):

* ``keras_h5``: keras.applications' Keras 2 HDF5 -> ``convert.convert`` (every
  tensor shape-checked against the Keras model of the preset's alpha);
* ``tf_slim_tgz``: the TF-slim archive's checkpoint -> ``convert.convert``; when
  the archive has ``*_frozen.pb``, the converted classifier must give that graph's
  probabilities on a test photo (background class renormalised away);
* ``od_api_tar``: the TF OD API archive's ``pipeline.config`` builds the SSD
  (classes, image size, anchors, box coder, post-processing, feature extractor)
  and ``model.ckpt`` fills it; with ``frozen_inference_graph.pb`` the anchor
  order is the one whose detections equal that graph's on a test photo, and a
  conversion that matches no order fails before anything is registered.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.convert.core import convert
from mobilenet_zoo.convert.keras_files import alpha_from_name
from mobilenet_zoo.convert.od_api import is_od_api_ssd, od_api_ssd_to_keras
from mobilenet_zoo.convert.pipeline_config import ssd_arguments
from mobilenet_zoo.convert.slim import read_slim_checkpoint
from mobilenet_zoo.data.coco import label_map_90
from mobilenet_zoo.hub import catalog, registry
from mobilenet_zoo.hub.download import (
    HashMismatchError,
    download,
    file_lock,
    resolve_url,
    sha256_of,
)
from mobilenet_zoo.hub.tasks import get_task
from mobilenet_zoo.tensorflow_support import (
    TensorFlowRequiredError,
    import_tensorflow,
    tensorflow_available,
)

KINDS = ("keras_h5", "tf_slim_tgz", "od_api_tar")
CHECK_TOLERANCE = 1e-3  # probabilities / scores / normalised box corners


class ConversionCheckError(ValueError):
    """The converted model does not reproduce the archive's own frozen graph."""


class PublishedFileError(ValueError):
    """A downloaded file is not the preset's archive (an HTML page, another or a truncated
    file); it was deleted. The host's fault, not the caller's: exit 3 in the CLI."""


def kind_of_file(path: str | os.PathLike) -> str:
    """Source kind from a carried-in file's name."""
    name = os.fspath(path).lower()
    if name.endswith((".h5", ".hdf5")):
        return "keras_h5"
    if name.endswith(".tgz"):
        return "tf_slim_tgz"
    if name.endswith(".tar.gz") or name.endswith(".tar"):
        return "od_api_tar"
    raise ValueError(f"{path}: expected a keras.applications .h5, a TF-slim .tgz or a TF OD API "
                     ".tar.gz archive.")


def fetch_hint(name: str) -> str:
    return (f"On a machine without access, download the file elsewhere and run "
            f"`mobilenet-zoo presets fetch {name} --from FILE`, or set "
            f"$MOBILENET_ZOO_MIRROR to a host that serves it.")


def _pick_source(name: str, meta: dict[str, Any], kind: str | None) -> dict[str, Any]:
    sources = meta.get("sources") or []
    if kind is None:
        return sources[0]
    for source in sources:
        if source["kind"] == kind or source.get("label") == kind:
            return source
    raise ValueError(f"Preset {name!r} is published as {[s['kind'] for s in sources]}; "
                     f"a {kind} file is not one of them.")


def install(name: str, from_file: str | os.PathLike | None = None,
            source: str | None = None, force: bool = False) -> Path:
    """Installs remote preset ``name`` into the user cache and returns its weights file.

    Args:
        name: a published preset (``mobilenet-zoo presets``).
        from_file: a published archive carried in by hand, instead of downloading.
        source: a source kind or label (``keras_h5`` / ``tf_slim_tgz``...) instead of
            the default first one.
        force: install again even when the cache holds a good copy.

    One process installs a preset at a time (a lock per name); a second one waits
    and then finds it installed. A downloaded archive that fails to convert is
    deleted, so the next attempt downloads it again.
    """
    return _install(name, from_file, source, force)[0]


def _install(name: str, from_file: str | os.PathLike | None = None,
             source: str | None = None, force: bool = False) -> tuple[Path, bool]:
    """``install``, and whether this call installed it (False: another process did while
    this one waited for the lock)."""
    remote = catalog.remote_presets()
    meta = remote.get(name)
    if meta is None:
        known = registry.all_presets().get(name)
        where = f"a {known['location']} preset, not a published one" if known else "not a preset"
        close = difflib.get_close_matches(str(name), list(remote), n=3)
        guess = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{name!r} is {where}.{guess} Run `mobilenet-zoo presets` to list the "
                         "published presets that can be fetched.")
    if from_file is not None:
        if os.path.isdir(from_file):
            raise ValueError(f"--from {from_file}: is a directory; give the archive file itself.")
        if not os.path.isfile(from_file):
            raise ValueError(f"--from {from_file}: no such file.")
        kind = kind_of_file(from_file)
        if source is not None and source != kind:
            raise ValueError(f"--from {from_file} is a {kind} file, but --source {source} was given.")
        source = kind
    chosen = _pick_source(name, meta, source)
    if chosen["kind"] != "keras_h5" and not tensorflow_available():  # before any download
        raise TensorFlowRequiredError(
            f"installing preset {name!r} from its {chosen['kind']} archive (TensorFlow format) "
            "needs TensorFlow to read it: `pip install tensorflow`, or install it on a machine "
            "with TensorFlow and copy the cache folder (MOBILENET_ZOO_CACHE).")
    with file_lock(_mkdir(registry.downloads_dir()) / f"{name}.install.lock"):
        if not force and from_file is None and (done := _installed(name)) is not None:
            return done, False
        archive = _archive(name, meta, chosen, from_file)
        try:
            target = _convert_and_register(name, meta, chosen, archive,
                                           None if from_file is None else Path(from_file))
        except BaseException:
            if from_file is None:
                archive.unlink(missing_ok=True)  # a bad download is never reused
            raise
        if from_file is None:
            archive.unlink(missing_ok=True)  # converted and registered: not needed
    return target, True


def _installed(name: str) -> Path | None:
    """The cached file of ``name`` when it is there and has its recorded sha256."""
    entry = registry.read_manifest(registry.cache_dir()).get(name)
    if not isinstance(entry, dict) or "file" not in entry:
        return None
    path = registry.cache_dir() / entry["file"]
    return path if path.is_file() and sha256_of(path) == entry.get("sha256") else None


def _archive(name: str, meta: dict[str, Any], chosen: dict[str, Any],
             from_file: str | os.PathLike | None) -> Path:
    if from_file is not None:
        archive = Path(from_file)
        found = sha256_of(archive)
        if chosen.get("sha256") and found != chosen["sha256"]:
            raise HashMismatchError(
                f"{archive} has sha256 {found}, but {chosen['sha256']} is published for "
                f"{chosen['file']}: it is another file or a damaged copy. Nothing was installed.")
        return archive
    others = [s for s in meta["sources"] if s is not chosen]
    try:
        return download(chosen["url"], registry.downloads_dir() / chosen["file"],
                        chosen.get("sha256"), fetch_hint(name))
    except HashMismatchError as err:
        if not others:
            raise
        alt = others[0]
        raise HashMismatchError(
            f"{err} The host may now serve a different file than the one whose hash was "
            f"published. The same weights are published by {alt['label']} ({alt['url']}): "
            f"`mobilenet-zoo presets fetch {name} --source {alt['kind']}`.") from err


def _convert_and_register(name: str, meta: dict[str, Any], chosen: dict[str, Any],
                          archive: Path, from_file: Path | None = None) -> Path:
    """Converts ``archive`` and registers it; the cache entry records where it came
    from: the published URL, or the user's ``--from`` file (its path and sha256)."""
    with tempfile.TemporaryDirectory(dir=_mkdir(registry.downloads_dir())) as work:
        converted = Path(work) / f"{name}.weights.h5"
        try:
            if from_file is None:
                _refuse_html(archive)
            extra = CONVERTERS[chosen["kind"]](archive, converted, meta, Path(work))
        except (ValueError, OSError) as err:
            raise _named_by_source(err, archive, Path(work), chosen, from_file) from err
        entry = {k: v for k, v in meta.items() if k not in ("location", "directory", "sources")}
        fetched = resolve_url(chosen["url"])  # $MOBILENET_ZOO_MIRROR's URL when set
        entry.update(extra, file=converted.name, source_url=fetched,
                     source_kind=chosen["kind"], source_sha256=sha256_of(archive),
                     source_sha256_published=chosen.get("sha256") is not None)
        if fetched != chosen["url"]:  # the bytes came from the mirror, not the published host
            entry["source_published_url"] = chosen["url"]
        if from_file is not None:  # carried in by hand: that file is the source, not the URL
            carried = from_file.resolve()
            entry.update(source_url=carried.as_uri(), source_file=str(carried),
                         source_published_url=chosen["url"])
        with registry.locked_cache() as directory:
            target = directory / converted.name
            weights_io.atomic_write(target, lambda tmp: shutil.copyfile(converted, tmp))
            entry["sha256"] = sha256_of(target)
            registry.write_entry(name, entry)
    return target


def _refuse_html(archive: Path) -> None:
    """A ValueError when the download is an HTML page (a login, captive-portal or error page
    served with status 200) instead of the archive."""
    with open(archive, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype", b"<html")):
        raise ValueError(f"{archive}: the server sent an HTML page, not the archive (a login or "
                         "error page?).")


def _mkdir(path: Path) -> Path:
    """``path`` created; an error naming ``$MOBILENET_ZOO_CACHE`` when it cannot be."""
    return registry.writable_cache_folder(path)


def _named_by_source(err: Exception, archive: Path, work: Path, chosen: dict[str, Any],
                     from_file: Path | None) -> Exception:
    """``err`` of a failed conversion, reworded to name what the user knows (the URL,
    or their ``--from`` file) instead of the download or the extracted members, which
    are deleted by the time the message is read."""
    source = str(from_file) if from_file is not None else resolve_url(chosen["url"])  # the mirror's
    message = str(err).replace(f"{work}{os.sep}", f"{source}, member ").replace(str(work), source)
    message = message.replace(str(archive), source)
    if source not in message:
        message = f"{source}: {message}"
    if from_file is None:
        published = ("its sha256 matched the published one" if chosen.get("sha256") else
                     "no sha256 is published for it, so the host may have served another file")
        message += f" ({published}; the download was deleted, the next attempt fetches it again.)"
    if from_file is None and type(err) is ValueError:  # the host's file, not the caller's input
        return PublishedFileError(message)
    try:
        return type(err)(message)
    except Exception:  # noqa: BLE001  an exception class with another signature
        return ValueError(message)


def _extract(archive: Path, work: Path, wanted: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    """Extracts members by the end of their name (never by their path: no traversal)."""
    found: dict[str, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                for key, suffixes in wanted.items():
                    if member.isfile() and base.endswith(suffixes) and not base.startswith("."):
                        target = work / base
                        with tar.extractfile(member) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        found.setdefault(key, target)
    except (tarfile.TarError, EOFError, OSError) as err:
        why = " ".join(str(err).split())  # tarfile lists each method it tried, one per line
        raise ValueError(f"{archive}: not a readable tar archive, or truncated ({why}).") from err
    return found


def _checkpoint_prefix(files: dict[str, Path], archive: Path) -> str:
    if "index" not in files or "data" not in files:
        raise ValueError(f"{archive}: no checkpoint (*.ckpt.index and *.ckpt.data-*) inside.")
    return str(files["index"])[: -len(".index")]


def _test_photo(size: tuple[int, int]) -> np.ndarray:
    """scikit-image's astronaut(), resized to the model's input: a real photo with
    a person and a face, the same pixels for both graphs."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)[None]


def run_frozen_graph(pb: Path, feeds: dict[str, np.ndarray], fetches: list[str]) -> list[np.ndarray]:
    """Runs a TF1 frozen GraphDef (``*.pb``) on ``feeds``; tensor names as ``node:0``."""

    tf = import_tensorflow("installing TF-format weights")

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    try:
        fn = wrapped.prune([wrapped.graph.get_tensor_by_name(k) for k in feeds],
                           [wrapped.graph.get_tensor_by_name(f) for f in fetches])
    except KeyError as err:
        raise ConversionCheckError(f"{pb}: the frozen graph has no tensor {err}.") from err
    return [np.asarray(t) for t in fn(*[tf.constant(v) for v in feeds.values()])]


def _convert_keras(archive: Path, out: Path, meta: dict[str, Any], work: Path) -> dict[str, Any]:

    return _checked(convert(archive, out, input_size=meta["input_size"]), meta, archive)


def _checked(converted: dict[str, Any], meta: dict[str, Any], archive: Path) -> dict[str, Any]:
    for key in ("alpha", "num_classes"):
        if key in meta and converted.get(key) is not None and abs(converted[key] - meta[key]) > 1e-6:
            raise ValueError(f"{archive}: holds {key} {converted[key]}, the preset expects "
                             f"{meta[key]}: not this preset's file.")
    return {}


def _convert_slim(archive: Path, out: Path, meta: dict[str, Any], work: Path) -> dict[str, Any]:

    files = _extract(archive, work, {"index": (".ckpt.index",), "data": (".ckpt.data-00000-of-00001",),
                                     "frozen": ("_frozen.pb",)})

    _, size_in_name = alpha_from_name(files.get("index", archive))
    if size_in_name is not None and size_in_name != meta["input_size"]:
        raise ValueError(f"{archive} holds {files['index'].name[: -len('.index')]} (input "
                         f"{size_in_name}); the preset is the {meta['input_size']} variant: not "
                         "this preset's archive.")
    _checked(convert(_checkpoint_prefix(files, archive), out, input_size=meta["input_size"]),
             meta, archive)
    if "frozen" not in files:
        return {"frozen_graph_check": "none (no frozen graph in the archive)"}
    size = meta["input_size"]
    model = get_task("MobileNetClassifier")(get_task("MobileNetBackbone")(alpha=meta["alpha"], input_shape=(size, size, 3)),
                                num_classes=1000, weights=str(out))
    photo = _test_photo((size, size)).astype("float32") / 127.5 - 1.0
    ours = np.asarray(model.predict(photo, verbose=0))[0]
    (theirs,) = run_frozen_graph(files["frozen"], {"input:0": photo},
                                 ["MobilenetV1/Predictions/Reshape_1:0"])
    theirs = theirs.reshape(-1)[1:] / theirs.reshape(-1)[1:].sum()  # drop background
    diff = float(np.abs(ours - theirs).max())
    if diff > CHECK_TOLERANCE:
        raise ConversionCheckError(
            f"{archive}: the converted classifier differs from the archive's frozen graph by "
            f"{diff:.2e} in probability on a test photo (allowed {CHECK_TOLERANCE}); not registered.")
    return {"frozen_graph_check": f"max probability difference {diff:.1e} on astronaut()"}


def _detections(boxes, classes, scores, min_score: float = 0.3) -> list[tuple]:
    keep = np.asarray(scores) >= min_score
    return sorted(((float(s), int(c), np.asarray(b, "float64")) for b, c, s in
                   zip(np.asarray(boxes)[keep], np.asarray(classes)[keep],
                       np.asarray(scores)[keep])), key=lambda d: -d[0])


def compare_detections(ours: list[tuple], theirs: list[tuple]) -> str | None:
    """None when both lists hold the same detections (class, box, score), else why not."""
    if len(ours) != len(theirs):
        return f"{len(ours)} detections above 0.3 vs {len(theirs)} in the frozen graph"
    for (s1, c1, b1), (s2, c2, b2) in zip(ours, theirs):
        if c1 != c2 or abs(s1 - s2) > CHECK_TOLERANCE * 10 or np.abs(b1 - b2).max() > 0.01:
            return f"detection (class {c1}, score {s1:.3f}) vs (class {c2}, score {s2:.3f})"
    return None


def _convert_od_api(archive: Path, out: Path, meta: dict[str, Any], work: Path) -> dict[str, Any]:

    files = _extract(archive, work, {"index": ("model.ckpt.index",),
                                     "data": ("model.ckpt.data-00000-of-00001",),
                                     "config": ("pipeline.config",),
                                     "frozen": ("frozen_inference_graph.pb",)})
    if "config" not in files:
        raise ValueError(f"{archive}: no pipeline.config inside; it is not a TF OD API model archive.")
    args = ssd_arguments(files["config"].read_text())
    tensors = read_slim_checkpoint(_checkpoint_prefix(files, archive))
    if not is_od_api_ssd(tensors):
        raise ValueError(f"{archive}: the checkpoint is not a TF OD API ssd_mobilenet_v1.")
    weights, found = od_api_ssd_to_keras(tensors)
    if abs(found["alpha"] - args["alpha"]) > 1e-6 or found["num_classes"] != args["num_classes"]:
        raise ValueError(f"{archive}: pipeline.config says depth_multiplier {args['alpha']} and "
                         f"{args['num_classes']} classes; the checkpoint holds {found['alpha']} and "
                         f"{found['num_classes']}.")
    names = meta.get("class_names") or (label_map_90() if meta.get("labels") == "coco" else None)
    orders = [meta["anchor_order"]] if meta.get("anchor_order") else ["2017", "current"]
    reasons = {}
    for order in orders:
        model = _build_ssd(args, order, names)
        weights_io.assign_by_name(model, weights, source=str(archive))
        if "frozen" not in files:
            if len(orders) > 1:
                raise ValueError(f"{archive}: no frozen_inference_graph.pb to tell the anchor order; "
                                 "give `anchor_order` ('2017' or 'current') in the preset metadata.")
            break
        reason = _check_against_frozen(model, files["frozen"], args["image_size"])
        if reason is None:
            break
        reasons[order] = reason
    else:
        raise ConversionCheckError(
            f"{archive}: the SSD built from pipeline.config and the checkpoint does not reproduce "
            f"frozen_inference_graph.pb on a test photo with any anchor order ({reasons}); the box "
            "coder, anchors or classes differ from what the graph runs. Nothing was registered.")
    weights_io.save_by_name(model, out, metadata={"alpha": args["alpha"]})
    config = {k: args[k] for k in ("num_classes", "anchor_generator", "box_coder", "decoder")}
    config.update(image_size=list(args["image_size"]), class_names=names)
    config["anchor_generator"] = dict(config["anchor_generator"], order=order)
    return {"task_config": config, "alpha": args["alpha"], "min_depth": args["min_depth"],
            "num_classes": args["num_classes"], "class_names": names, "anchor_order": order,
            "input_size": int(args["image_size"][0]),
            "frozen_graph_check": "same detections as frozen_inference_graph.pb on astronaut()"
            if "frozen" in files else "none (no frozen graph in the archive)"}


def _build_ssd(args: dict[str, Any], order: str, names: list[str] | None):
    return get_task("SSD")(get_task("MobileNetBackbone")(alpha=args["alpha"], min_depth=args["min_depth"]),
               num_classes=args["num_classes"], image_size=args["image_size"],
               min_depth=args["min_depth"], anchor_generator=dict(args["anchor_generator"], order=order),
               box_coder=args["box_coder"], decoder=args["decoder"], class_names=names)


def _check_against_frozen(model, frozen: Path, size: tuple[int, int]) -> str | None:
    photo = _test_photo(size)
    boxes, scores, classes, count = run_frozen_graph(
        frozen, {"image_tensor:0": photo},
        ["detection_boxes:0", "detection_scores:0", "detection_classes:0", "num_detections:0"])
    n = int(count[0])
    theirs = _detections(boxes[0, :n], classes[0, :n] - 1, scores[0, :n])
    out = model.predict(photo.astype("float32"), verbose=0)
    n = int(np.asarray(out["num_detections"])[0])
    ours = _detections(np.asarray(out["boxes"])[0, :n], np.asarray(out["classes"])[0, :n],
                       np.asarray(out["scores"])[0, :n])
    return compare_detections(ours, theirs)


CONVERTERS = {"keras_h5": _convert_keras, "tf_slim_tgz": _convert_slim, "od_api_tar": _convert_od_api}
