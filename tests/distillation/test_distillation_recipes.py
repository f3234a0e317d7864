import json

import numpy as np
import pytest

from mobilenet_zoo.distillation.verification import make_pairs, verification_metrics
from mobilenet_zoo.training.geo import adaptive_cells, fraction_within, great_circle_km
from recipes import face_attributes, facenet_distill, planet


def test_great_circle_distances_match_hand_values():
    # One degree of longitude on the equator: 2 * pi * R / 360.
    assert great_circle_km(0, 0, 0, 1) == pytest.approx(2 * np.pi * 6371.0088 / 360, rel=1e-9)
    # Antipodes: half the circumference.
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(np.pi * 6371.0088, rel=1e-9)
    # Paris - London, about 343.5 km.
    assert great_circle_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)
    assert fraction_within([0.5, 20, 300, 3000]) == {
        "1km": 0.25, "25km": 0.5, "200km": 0.5, "750km": 0.75, "2500km": 0.75}


def test_adaptive_cells_put_every_photo_in_one_cell_within_the_bounds():
    rng = np.random.default_rng(0)
    lats = np.concatenate([rng.normal(48.8, 0.2, 300), rng.normal(40.7, 0.2, 100), rng.uniform(-60, 60, 50)])
    lons = np.concatenate([rng.normal(2.3, 0.2, 300), rng.normal(-74, 0.2, 100), rng.uniform(-180, 180, 50)])
    cells = adaptive_cells(lats, lons, min_photos=5, max_photos=40)
    labels = cells.assign(lats, lons)
    kept = labels >= 0
    counts = np.bincount(labels[kept], minlength=len(cells))
    assert counts.tolist() == cells.counts  # each photo in exactly one kept cell
    assert all(5 <= c <= 40 for c, lvl in zip(cells.counts, cells.levels) if lvl < 13)
    assert len(set(cells.tokens)) == len(cells)
    dense = {lvl for lvl, la in zip(cells.levels, cells.centers[:, 0]) if abs(la - 48.8) < 1}
    assert max(dense) > min(cells.levels)  # dense Paris was split finer
    # Dropped: photos whose cell (or child cell after a split) has fewer than 5, as in
    # PlaNet; the scattered photos mostly, few of the two dense clusters.
    assert kept[:400].mean() > 0.9 and kept[400:].mean() < 0.5
    with pytest.raises(ValueError, match="latitudes"):
        adaptive_cells([95.0], [0.0])


def test_verification_pairs_are_deterministic_and_metrics_hand_checked():
    labels = np.array([0, 0, 1, 1, 2, 2, 3])
    p1, s1 = make_pairs(labels, 6, seed=0)
    p2, s2 = make_pairs(labels, 6, seed=0)
    assert np.array_equal(p1, p2) and np.array_equal(s1, s2) and s1.sum() == 3
    assert all(labels[i] == labels[j] for (i, j), same in zip(p1, s1) if same)
    emb = np.array([[0, 0], [0, 0.1], [5, 5], [5, 5.1], [9, 0], [9, 0.1], [-9, -9]], float)
    m = verification_metrics(emb, p1, s1)
    assert m["accuracy"] == 1.0 and m["num_pairs"] == len(p1)
    # Too few different pairs to resolve FAR 1e-3: the threshold sits below every one.
    assert m["tar@far=0.001"] == 1.0  # same pairs here are all closer than any different pair


def test_face_attributes_smoke_unlabeled(tmp_path):
    r = face_attributes.main(["--smoke", "--unlabeled", "--out", str(tmp_path), "--verbose", "0"])
    assert r["unlabeled"] and 0 <= r["mean_ap"]["student"] <= 1
    assert (tmp_path / "student.keras").exists() and (tmp_path / "teacher.keras").exists()


def test_facenet_distill_smoke(tmp_path):
    r = facenet_distill.main(["--smoke", "--out", str(tmp_path), "--verbose", "0"])
    v = r["verification"]["student"]
    assert {"accuracy", "tar@far=0.001", "tar@far=0.0001"} <= set(v)
    assert json.loads((tmp_path / "results.json").read_text())["teacher"] == "stand-in (smoke)"


def test_facenet_distill_requires_a_teacher_outside_smoke(tmp_path):
    with pytest.raises(SystemExit, match="lfw|teacher"):
        facenet_distill.main(["--data-dir", str(tmp_path)])


def test_planet_smoke_reports_table_11_columns(tmp_path):
    r = planet.main(["--smoke", "--out", str(tmp_path), "--verbose", "0", "--weights", "scratch",
                     "--alpha", "0.25"])
    assert set(r["within"]) == {"1km", "25km", "200km", "750km", "2500km"}
    assert r["num_cells"] >= 4 and (tmp_path / "results.json").exists()
