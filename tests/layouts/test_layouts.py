"""The dataset layouts users have (issue 29): COCO JSON, Pascal VOC and YOLO give the same
model inputs for the same photos; every bad label is named with its file and line or
object before anything trains; class folders and PNG masks read as the pipelines want.

The photos are scikit-image's, written in each layout by the test (no download)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo.data.layouts import (
    LabelError,
    check_labels,
    hashed_split,
    parse_coco,
    parse_masks,
    parse_voc,
    parse_yolo,
    read_detection,
    read_folders,
    read_masks,
    resolve_format,
)

NAMES = ["cat", "cup", "person"]  # alphabetical: VOC's sorted names give the same order
# (file stem, photo, boxes as integer pixel edges x0, y0, x1, y1, class index)
PHOTOS = [
    ("0_astronaut", skdata.astronaut, [(170, 20, 350, 220, 2), (0, 300, 120, 512, 1)]),
    ("1_coffee", skdata.coffee, [(180, 40, 460, 330, 1)]),
    ("2_chelsea", skdata.chelsea, [(120, 20, 380, 300, 0), (10, 10, 60, 70, 1)]),
    ("3_rocket", skdata.rocket, [(300, 30, 360, 400, 2)]),
    ("4_ihc", skdata.immunohistochemistry, [(0, 0, 512, 512, 0), (100, 100, 200, 250, 2)]),
    ("5_cat", skdata.cat, [(110, 15, 390, 299, 0)]),
]


def _photos(root: Path) -> list[tuple[str, Path, tuple[int, int], list]]:
    """The JPEG files once (same bytes in every layout), with their sizes."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for stem, load, boxes in PHOTOS:
        path = root / f"{stem}.jpg"
        if not path.exists():
            Image.fromarray(load()).save(path, quality=90)
        w, h = Image.open(path).size
        out.append((stem, path, (h, w), boxes))
    return out


def write_coco(root: Path, photos, category_ids=(1, 2, 3), val=1) -> Path:
    for split, items in (("train", photos), ("val", photos[:val])):
        if not items:
            continue
        images, annotations = [], []
        for i, (_, path, (h, w), boxes) in enumerate(items):
            target = root / split / "images" / "sub" / path.name  # file_name with a sub-folder
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
            images.append({"id": 100 + i, "file_name": f"sub/{path.name}", "width": w, "height": h})
            for x0, y0, x1, y1, c in boxes:
                annotations.append({"id": len(annotations) + 1, "image_id": 100 + i,
                                    "category_id": category_ids[c], "iscrowd": 0,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
        categories = [{"id": cid, "name": n} for cid, n in zip(category_ids, NAMES)]
        (root / split / "annotations.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    return root


def _voc_xml(stem: str, size, objects) -> str:
    h, w = size
    body = "".join(
        f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for x0, y0, x1, y1, n, d in objects)
    return (f"<annotation><filename>{stem}.jpg</filename><size><width>{w}</width><height>{h}"
            f"</height><depth>3</depth></size>{body}</annotation>")


def write_voc(root: Path, photos, val=1, difficult=()) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem, path, size, boxes in photos:
        shutil.copy(path, root / "JPEGImages" / path.name)
        # 1-based inclusive pixels: edges x0..x1 are pixels x0+1..x1 (the devkit's convention)
        objects = [(x0 + 1, y0 + 1, x1, y1, NAMES[c], (stem, k) in difficult)
                   for k, (x0, y0, x1, y1, c) in enumerate(boxes)]
        (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(stem, size, objects))
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(p[0] for p in photos) + "\n")
    if val:
        (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(p[0] for p in photos[:val]))
    return root


def write_yolo(root: Path, photos, names_as_dict=False, val=1) -> Path:
    for split, items in (("train", photos), ("val", photos[:val] if val else [])):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for _, path, (h, w), boxes in items:
            shutil.copy(path, root / "images" / split / path.name)
            lines = [f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} "
                     f"{(y1 - y0) / h:.6f}" for x0, y0, x1, y1, c in boxes]
            (root / "labels" / split / f"{path.stem}.txt").write_text("\n".join(lines) + "\n")
    names = ("\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES)) if names_as_dict
             else f"[{', '.join(NAMES)}]\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\n"
                                    + ("val: images/val\n" if val else "") + f"names: {names}")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("photos"))


def _batches(source):
    from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor

    images, boxes, classes = [], [], []
    for x, y in DetectionPreprocessor(image_size=128, augment=False).pipeline(source, batch_size=2):
        images.append(x.numpy())
        boxes.append(y["boxes"].numpy())
        classes.append(y["classes"].numpy())
    return np.concatenate(images), np.concatenate(boxes), np.concatenate(classes)


def test_coco_voc_and_yolo_of_the_same_photos_give_the_same_model_inputs(photos, tmp_path):
    sources = {
        "coco": read_detection(write_coco(tmp_path / "coco", photos)),
        "voc": read_detection(write_voc(tmp_path / "voc", photos)),
        "yolo": read_detection(write_yolo(tmp_path / "yolo", photos)),
    }
    assert {f: s.format for f, s in sources.items()} == {f: f for f in sources}  # found, not forced
    assert all(s.class_names == NAMES and s.num_examples == 6 for s in sources.values())
    got = {f: _batches(s) for f, s in sources.items()}
    images, boxes, classes = got["coco"]
    assert images.shape == (6, 128, 128, 3) and (classes >= 0).sum() == 9
    expected = np.full_like(boxes, -1.0)
    for i, (_, _, (h, w), bs) in enumerate(photos):  # the model's boxes: normalised yxyx (rel_yxyx)
        expected[i, : len(bs)] = [[y0 / h, x0 / w, y1 / h, x1 / w] for x0, y0, x1, y1, _ in bs]
    np.testing.assert_allclose(boxes, expected, atol=1e-6)
    for fmt in ("voc", "yolo"):
        np.testing.assert_array_equal(got[fmt][0], images, err_msg=fmt)
        np.testing.assert_allclose(got[fmt][1], boxes, atol=1e-4, err_msg=fmt)
        np.testing.assert_array_equal(got[fmt][2], classes, err_msg=fmt)


def test_coco_non_contiguous_category_ids_crowd_and_background_images(photos, tmp_path):
    root = write_coco(tmp_path, photos, category_ids=(3, 17, 90))
    file = root / "train" / "annotations.json"
    coco = json.loads(file.read_text())
    coco["images"].append({"id": 999, "file_name": f"sub/{photos[1][1].name}", "width": 1, "height": 1})
    coco["annotations"][0]["iscrowd"] = 1
    file.write_text(json.dumps(coco))
    source = read_detection(root, format="coco")
    assert source.class_names == NAMES and source.category_ids == [3, 17, 90]
    examples = list(source.dataset.as_numpy_iterator())
    assert [e["image_id"] for e in examples][-1] == 999 and len(examples[-1]["classes"]) == 0
    assert examples[0]["classes"].tolist() == [2, 1] and examples[0]["is_crowd"].tolist() == [1, 0]
    assert examples[2]["classes"].tolist() == [0, 1]


def test_voc_difficult_objects_are_kept_flagged_and_marked_crowd(photos, tmp_path):
    root = write_voc(tmp_path, photos, difficult={("0_astronaut", 1)})
    example = next(read_detection(root, format="voc").dataset.as_numpy_iterator())
    assert example["classes"].tolist() == [2, 1]
    assert example["difficult"].tolist() == [0, 1] and example["is_crowd"].tolist() == [0, 1]


def test_yolo_names_as_a_dict_and_an_image_without_labels_is_background(photos, tmp_path):
    root = write_yolo(tmp_path, photos, names_as_dict=True)
    (root / "labels" / "train" / "5_cat.txt").unlink()
    labelled = parse_yolo(root, "train")
    assert labelled.class_names == NAMES and labelled.images[5].boxes == []
    assert check_labels(labelled).images[5].boxes.shape == (0, 4)


@pytest.mark.parametrize("layout", ["coco", "voc", "yolo"])
def test_no_validation_split_is_made_by_hashing_file_names_and_says_so(photos, tmp_path, layout):
    write, parse = {"coco": (write_coco, parse_coco), "voc": (write_voc, parse_voc),
                    "yolo": (write_yolo, parse_yolo)}[layout]
    root = write(tmp_path, photos, val=0)
    train, val = parse(root, "train"), parse(root, "val")
    names = lambda s: {i.path.name for i in s.images}  # noqa: E731
    assert names(train) | names(val) == {p[1].name for p in photos} and not names(train) & names(val)
    assert len(val.images) >= 1 and "hashing their file names" in val.notes[0]
    assert "hashing their file names" in train.notes[0]
    assert names(parse(root, "val")) == names(val)  # deterministic
    keys = [f"img_{i}.jpg" for i in range(1000)]
    held = set(hashed_split(keys, "val")[0])
    assert 60 < len(held) < 140 and held <= set(hashed_split(keys + ["new.jpg"], "val")[0])


def test_a_bad_box_names_the_file_and_line_and_nothing_is_read(photos, tmp_path):
    root = write_yolo(tmp_path, photos)
    label = root / "labels" / "train" / "1_coffee.txt"
    label.write_text(label.read_text() + "1 0.9 0.5 0.4 0.2\n7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\nbad line\n")
    with pytest.raises(LabelError) as raised:
        read_detection(root)
    message = str(raised.value)
    assert "4 label problem(s)" in message and "--skip-bad-labels" in message
    assert "labels/train/1_coffee.txt line 2: box x 0.7..1.1" in message and "outside the image" in message
    assert "line 3: unknown class (class id 7)" in message
    assert "line 4: zero-area box" in message and "line 5: expected 'class cx cy w h'" in message
    source = read_detection(root, skip_bad_labels=True)
    assert source.stats["boxes_dropped"] == 4 and "dropped 4 box(es)" in source.notes[-1]


def test_voc_inverted_box_and_unknown_name_name_the_xml_object(photos, tmp_path):
    root = write_voc(tmp_path, photos)
    xml = root / "Annotations" / "3_rocket.xml"
    xml.write_text(xml.read_text().replace("<xmin>301</xmin>", "<xmin>390</xmin>"))
    (root / "labels.txt").write_text("\n".join(NAMES))
    xml = root / "Annotations" / "1_coffee.xml"
    xml.write_text(xml.read_text().replace("<name>cup</name>", "<name>mug</name>"))
    problems = [str(p) for p in pytest.raises(LabelError, read_detection, root).value.problems]
    assert any(p.startswith("Annotations/3_rocket.xml object 1: inverted box") for p in problems)
    assert any(p.startswith("Annotations/1_coffee.xml object 1: unknown class (name 'mug')")
               for p in problems)


def test_coco_missing_image_duplicate_id_and_empty_class_are_all_listed(photos, tmp_path):
    root = write_coco(tmp_path, photos)
    file = root / "train" / "annotations.json"
    coco = json.loads(file.read_text())
    coco["images"].append({"id": 100, "file_name": "sub/again.jpg"})
    coco["images"].append({"id": 7, "file_name": "sub/missing.jpg"})
    coco["categories"].append({"id": 4, "name": "dog"})
    coco["annotations"].append({"id": 55, "image_id": 100, "category_id": 12, "bbox": [1, 1, 5, 5]})
    file.write_text(json.dumps(coco))
    problems = [str(p) for p in pytest.raises(LabelError, read_detection, root).value.problems]
    assert any("annotations.json image id 100 (sub/again.jpg): duplicate image id 100" in p for p in problems)
    assert any(p.endswith("sub/missing.jpg: image file missing (declared in annotations.json image id 7 "
                          "(sub/missing.jpg))") for p in problems)
    assert "annotations.json annotation id 55: unknown class (category_id 12); the 4 classes are " \
           "0 'cat', 1 'cup', 2 'person', 3 'dog'" in problems
    assert "class 3 'dog': has no box in the train split" in problems


def test_an_unreadable_image_is_named(photos, tmp_path):
    root = write_voc(tmp_path, photos)
    (root / "JPEGImages" / "2_chelsea.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(LabelError, match=r"2_chelsea.jpg: not a readable image"):
        read_detection(root)


def test_the_layout_is_detected_and_an_unclear_folder_lists_what_it_found(photos, tmp_path):
    assert resolve_format(write_voc(tmp_path / "v", photos)) == "voc"
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"(?s)it holds notes.txt.*coco: .*voc: .*yolo: .*--format coco\|voc\|yolo"):
        resolve_format(tmp_path / "odd")
    with pytest.raises(ValueError, match="format 'tfrecord' is not a detection layout; allowed: coco, voc, yolo"):
        resolve_format(tmp_path / "v", "tfrecord")


def test_class_folders_read_as_labelled_images_with_a_hashed_split(photos, tmp_path):
    for k, (_, path, _, _) in enumerate(photos):
        folder = tmp_path / ("cats" if k % 2 else "dogs")
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / path.name)
    assert resolve_format(tmp_path, task="classification") == "folders"
    train, val = read_folders(tmp_path, "train"), read_folders(tmp_path, "val")
    assert train.class_names == ["cats", "dogs"] and train.num_examples + val.num_examples == 6
    image, label = next(iter(train.dataset))
    assert image.dtype.name == "uint8" and image.shape[-1] == 3 and int(label) in (0, 1)
    assert "hashing" in val.notes[0]


def test_masks_with_255_read_as_class_indices_and_bad_values_are_named(photos, tmp_path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
    (tmp_path / "labels.txt").write_text("background\ncat\n")
    _, path, (h, w), _ = photos[2]
    shutil.copy(path, tmp_path / "images" / "train" / path.name)
    mask = np.zeros((h, w), np.uint8)
    mask[20:300, 120:380], mask[:5] = 1, 255
    palette = Image.fromarray(mask, "L").convert("P")
    palette.save(tmp_path / "masks" / "train" / f"{path.stem}.png")
    source = read_masks(tmp_path, "train")
    got = next(iter(source.dataset))["mask"].numpy()[..., 0]
    assert source.class_names == ["background", "cat"] and set(np.unique(got)) == {0, 1, 255}
    np.testing.assert_array_equal(got, mask)
    mask[0, 0] = 7
    Image.fromarray(mask).save(tmp_path / "masks" / "train" / f"{path.stem}.png")
    with pytest.raises(LabelError, match=r"2_chelsea.png: mask values \[7\] are not classes 0..1 nor 255"):
        read_masks(tmp_path, "train")


def test_parsers_run_without_tensorflow_objects(photos, tmp_path):
    labelled = parse_coco(write_coco(tmp_path / "c", photos), "val")
    assert [i.key for i in labelled.images] == ["sub/0_astronaut.jpg"]
    assert parse_voc(write_voc(tmp_path / "v", photos), "val").images[0].boxes[0].coords == (170, 20, 350, 220)


@pytest.mark.parametrize("text", [
    "path: ../data  # root\ntrain: images/train\nval: 'images/val'\nnames: [cat, cup, person]\n",
    "train: images/train\nnc: 3\nnames:\n  0: cat\n  1: cup\n  2: person\n",
    "train: images/train\nnames:\n- cat\n- cup\n- person\n",
])
def test_data_yaml_reads_the_same_without_pyyaml(text, tmp_path, monkeypatch):
    from mobilenet_zoo.data.layouts import yolo

    (tmp_path / "data.yaml").write_text(text)
    with_pyyaml = yolo.read_data_yaml(tmp_path / "data.yaml")
    monkeypatch.setattr(yolo, "yaml", None)
    assert yolo.read_data_yaml(tmp_path / "data.yaml") == with_pyyaml
    assert with_pyyaml["names"] == NAMES and with_pyyaml["train"] == "images/train"


@pytest.mark.parametrize("lists", [("train",), ("val",), ("train", "val"), ()])
def test_a_voc_segmentation_folder_never_puts_a_photo_in_both_splits(photos, tmp_path, lists):
    """VOC ``SegmentationClass`` folders with either list, both or none: train and val never
    share a photo (a photo in both inflated the mIoU); a train.txt alone is split in two."""
    root = tmp_path / "VOC"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    _, path, (h, w), _ = photos[2]
    stems = [f"2008_{i:06d}" for i in range(12)]
    for stem in stems:
        shutil.copy(path, root / "JPEGImages" / f"{stem}.jpg")
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "SegmentationClass" / f"{stem}.png")
    given = {"train": stems[:8], "val": stems[8:]}
    for split in lists:
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(given[split]) + "\n")
    train = {p.stem for p in parse_masks(root, "train").images}
    val = {p.stem for p in parse_masks(root, "val").images}
    used = set(given["train"]) if lists == ("train",) else set(stems)
    assert not train & val and train | val == used and train and val
    if "val" in lists:
        assert val == set(given["val"])


def test_a_sixteen_bit_mask_value_is_named_not_wrapped(photos, tmp_path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
    _, path, (h, w), _ = photos[2]
    shutil.copy(path, tmp_path / "images" / "train" / path.name)
    mask = np.zeros((h, w), np.uint16)
    mask[0, 0] = 300  # would read as 44 in the uint8 pipeline
    Image.fromarray(mask).save(tmp_path / "masks" / "train" / f"{path.stem}.png")
    with pytest.raises(LabelError, match=r"mask values \[300\] are outside 0..254"):
        parse_masks(tmp_path, "train")
