"""TF Object Detection API ``pipeline.config`` -> our ``SSD`` arguments.

A ``pipeline.config`` is a ``TrainEvalPipelineConfig`` in protobuf text format
(``object_detection/protos/pipeline.proto``). ``parse_text_proto`` reads that
format into nested dicts (repeated fields become lists) without the OD API's
compiled protos; ``ssd_arguments`` maps the ``model.ssd`` message onto our
pieces and refuses, naming the field, what our ``SSD`` does not reproduce.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([{}:<>\[\],;])|([^\s{}:<>\[\],;"\']+))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"pipeline.config: cannot read text at offset {pos}: {text[pos:pos + 30]!r}")
            break
        pos = m.end()
        if m.group(1) is None and m.group(0).strip():
            out.append(m.group(0).strip())
    return out


def _scalar(token: str) -> Any:
    if token[0] in "\"'":
        return bytes(token[1:-1], "utf8").decode("unicode_escape")
    if token in ("true", "True"):
        return True
    if token in ("false", "False"):
        return False
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token.rstrip("fF"))
    except ValueError:
        return token  # an enum value such as SIGMOID


def parse_text_proto(text: str) -> dict[str, Any]:
    """Protobuf text format -> ``{field: value}``; a field seen twice becomes a list."""
    tokens = _tokens(text)
    pos = 0

    def message(end: str | None) -> dict[str, Any]:
        nonlocal pos
        fields: dict[str, Any] = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1
            if pos < len(tokens) and tokens[pos] == ":":
                pos += 1
            if pos >= len(tokens):
                raise ValueError(f"pipeline.config: field {name!r} has no value")
            if tokens[pos] in "{<":
                close = "}" if tokens[pos] == "{" else ">"
                pos += 1
                value = message(close)
                pos += 1
            elif tokens[pos] == "[":  # a list of scalars
                pos += 1
                value = []
                while tokens[pos] != "]":
                    if tokens[pos] != ",":
                        value.append(_scalar(tokens[pos]))
                    pos += 1
                pos += 1
            else:
                value = _scalar(tokens[pos])
                pos += 1
            if pos < len(tokens) and tokens[pos] in (",", ";"):
                pos += 1
            if name in fields:
                old = fields[name]
                fields[name] = (old if isinstance(old, list) else [old]) + (
                    value if isinstance(value, list) else [value])
            else:
                fields[name] = value
        if end is not None and pos >= len(tokens):
            raise ValueError(f"pipeline.config: a message is not closed with {end!r}")
        return fields

    return message(None)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _one(config: dict, path: str, allowed: tuple[str, ...]) -> tuple[str, dict]:
    """The single ``oneof`` member set under ``path``; error naming the others."""
    node = config
    for part in path.split("."):
        if part not in node:
            raise ValueError(f"pipeline.config has no `{path}`.")
        node = node[part]
    kinds = [k for k in node if k in allowed]
    if len(kinds) != 1:
        raise ValueError(
            f"pipeline.config `{path}` is {sorted(node)}; mobilenet_zoo's SSD reproduces "
            f"{list(allowed)} only.")
    return kinds[0], node[kinds[0]]


def ssd_arguments(config: dict[str, Any] | str) -> dict[str, Any]:
    """``SSD`` / ``ssd_mobilenet_v1`` arguments from a parsed ``pipeline.config``.

    Returns ``alpha`` (the feature extractor's ``depth_multiplier``), ``min_depth``,
    ``num_classes``, ``image_size``, ``anchor_generator``, ``box_coder`` and
    ``decoder`` configs. The anchor ``order`` is not in the config (it follows the
    code that trained the checkpoint); the caller sets it.
    """
    if isinstance(config, str):
        config = parse_text_proto(config)
    model = config.get("model", {})
    if "ssd" not in model:
        raise ValueError(f"pipeline.config `model` is {sorted(model)}; only `ssd` models convert.")
    ssd = model["ssd"]
    extractor = ssd.get("feature_extractor", {})
    if extractor.get("type") != "ssd_mobilenet_v1":
        raise ValueError(f"pipeline.config feature_extractor.type is {extractor.get('type')!r}; "
                         "mobilenet_zoo's SSD reproduces 'ssd_mobilenet_v1' only.")
    if extractor.get("use_depthwise") or extractor.get("use_explicit_padding"):
        raise ValueError("pipeline.config feature_extractor sets use_depthwise / "
                         "use_explicit_padding, which mobilenet_zoo's SSD does not reproduce.")
    kind, resizer = _one(ssd, "image_resizer", ("fixed_shape_resizer", "keep_aspect_ratio_resizer"))
    if kind != "fixed_shape_resizer":
        raise ValueError("pipeline.config image_resizer must be fixed_shape_resizer for an SSD.")
    _, anchors = _one(ssd, "anchor_generator", ("ssd_anchor_generator",))
    _, coder = _one(ssd, "box_coder", ("faster_rcnn_box_coder",))
    predictor_kind, predictor = _one(ssd, "box_predictor", ("convolutional_box_predictor",))
    if predictor.get("kernel_size", 1) != 1 or predictor.get("use_depthwise"):
        raise ValueError("pipeline.config box_predictor must be a 1x1 convolutional_box_predictor "
                         f"(kernel_size {predictor.get('kernel_size')}).")
    post = ssd.get("post_processing", {})
    nms = post.get("batch_non_max_suppression", {})
    converter = str(post.get("score_converter", "IDENTITY")).lower()
    if converter not in ("sigmoid", "softmax"):
        raise ValueError(f"pipeline.config score_converter {converter.upper()} is not reproduced "
                         "(SIGMOID or SOFTMAX).")
    return {
        "alpha": float(extractor.get("depth_multiplier", 1.0)),
        "min_depth": int(extractor.get("min_depth", 16)),
        "num_classes": int(ssd["num_classes"]),
        "image_size": (int(resizer["height"]), int(resizer["width"])),
        "anchor_generator": {
            "num_layers": int(anchors.get("num_layers", 6)),
            "min_scale": float(anchors.get("min_scale", 0.2)),
            "max_scale": float(anchors.get("max_scale", 0.95)),
            "aspect_ratios": [float(r) for r in _as_list(anchors.get("aspect_ratios", [1.0]))],
            "interpolated_scale_aspect_ratio": float(
                anchors.get("interpolated_scale_aspect_ratio", 1.0)),
            "reduce_boxes_in_lowest_layer": bool(anchors.get("reduce_boxes_in_lowest_layer", True)),
        },
        "box_coder": {"scale_factors": [float(coder.get(k, d)) for k, d in (
            ("y_scale", 10.0), ("x_scale", 10.0), ("height_scale", 5.0), ("width_scale", 5.0))]},
        "decoder": {
            "score_threshold": float(nms.get("score_threshold", 0.0)),
            "iou_threshold": float(nms.get("iou_threshold", 0.6)),
            "max_detections_per_class": int(nms.get("max_detections_per_class", 100)),
            "max_detections": int(nms.get("max_total_detections", 100)),
            "score_converter": converter,
        },
    }
