import json

import keras
import pytest

from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier, complexity
from mobilenet_zoo.complexity import profile


def test_mobilenet_224_has_569m_mult_adds_and_4_2m_params():
    p = profile(MobileNetClassifier())
    assert round(p.mult_adds / 1e6) == 569
    assert round(p.params / 1e6, 1) == 4.3 and p.params == 4_253_864


def test_per_layer_counts_follow_the_paper_formulas():
    p = profile(MobileNetClassifier())
    rows = {r.name: r for r in p.layers}
    # Standard conv Dk*Dk*M*N*Df*Df: 3*3*3*32*112*112.
    assert rows["conv1"].mult_adds == 3 * 3 * 3 * 32 * 112 * 112
    # Depthwise Dk*Dk*M*Df*Df and pointwise M*N*Df*Df (block 2: 64 -> 128 at 56x56).
    assert rows["conv_dw_2"].mult_adds == 3 * 3 * 64 * 56 * 56
    assert rows["conv_pw_2"].mult_adds == 64 * 128 * 56 * 56
    assert rows["conv_preds"].mult_adds == 1024 * 1000
    assert rows["conv_dw_2_bn"].mult_adds == 0
    assert sum(r.mult_adds for r in p.layers) == p.mult_adds


def test_dense_layers_are_counted():
    inputs = keras.Input((10,))
    model = keras.Model(inputs, keras.layers.Dense(7)(keras.layers.Dense(5)(inputs)))
    assert profile(model).mult_adds == 10 * 5 + 5 * 7


def test_dynamic_models_need_an_input_shape():
    backbone = MobileNetBackbone(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="input_shape"):
        profile(backbone)
    at_224 = profile(backbone, input_shape=(224, 224, 3))
    assert at_224.mult_adds == profile(MobileNetBackbone()).mult_adds


def test_every_paper_table_row_is_within_2_percent():
    for key, table in complexity.paper_tables().items():
        for row in table["rows"]:
            for what in ("mult_adds", "params"):
                c = row[what]
                ok = c["within_2pct"] or c["agrees_at_published_precision"]
                assert ok, (key, row["label"], what, c)
    rows = complexity.paper_tables()["6"]["rows"]
    assert all(r["mult_adds"]["within_2pct"] for r in rows)


def test_each_slim_variant_is_within_2_percent_or_explained():
    rows = complexity.slim_table()
    assert len(rows) == 16
    unexplained = [
        r["label"]
        for r in rows
        for what in ("mult_adds", "params")
        if not (r[what]["within_2pct"] or r[what]["agrees_at_published_precision"] or r["note"])
    ]
    assert unexplained == []
    # Params of the release (1001 classes) all within 2%.
    assert all(r["params"]["within_2pct"] for r in rows)


def test_cli_prints_tables_and_json(capsys):
    assert complexity.main([]) == 0
    text = capsys.readouterr().out
    assert "Table 4" in text and "Table 9" in text and "TF-slim" in text and "Table 13" in text
    for row in ("SSD 300 MobileNet", "Faster-RCNN 300 MobileNet", "Faster-RCNN 600 MobileNet"):
        assert row in text
    assert complexity.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["paper"]) == {"4", "5", "6", "7", "9"}
    # Table 13: every MobileNet row within 5% of the paper's mult-adds and params.
    for row in data["detection"]:
        assert abs(row["mult_adds"]["rel_diff"]) < 0.05 and abs(row["params"]["rel_diff"]) < 0.05, row
