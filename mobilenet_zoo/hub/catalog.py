"""The published MobileNet v1 family, as data (timm-style: one entry per variant).

Each remote preset names where its weights are published (``sources``, tried in
order; the first is the default), the sha256 published for that file when there
is one, and the metadata of ``weights/manifest.json`` (task, alpha, input size,
classes, licence, published metric). Nothing here downloads: see ``download.py``
and ``install.py``.

Sources:

* keras.applications (Keras 2 HDF5, ``keras/src/applications/mobilenet.py``):
  ``mobilenet_{A}_{R}_tf.h5``, with the SHA-256 that a later revision of that file
  pins per variant (``WEIGHTS_HASHES``, key ``A_R``, value ``(with top, no top)``).
* TF-slim (``research/slim/nets/mobilenet_v1.md``, 2018-08-02 archives):
  ``mobilenet_v1_{alpha}_{size}.tgz`` with the checkpoint and ``_frozen.pb``;
  TensorFlow's build pins the 1.0-224 archive's sha256.
* TF Object Detection API TF1 model zoo (``g3doc/tf1_detection_zoo.md``): the
  SSD archives with ``model.ckpt.*``, ``pipeline.config`` and
  ``frozen_inference_graph.pb``; no hash is published (the first download's
  sha256 is recorded in the user's cache).
"""

from __future__ import annotations

from typing import Any

from mobilenet_zoo.paper import SLIM_TABLE  # TF-slim's (mult-adds, top-1, top-5) per (alpha, size)

ALPHAS = (0.25, 0.5, 0.75, 1.0)
KERAS_ALPHA = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}  # keras.applications' spelling
SIZES = (128, 160, 192, 224)

# keras.applications' SHA-256 per "A_R": (with top, no top).
KERAS_APPLICATIONS_SHA256: dict[str, tuple[str, str]] = {
    "1_0_128": ("ef1480dcb7f11a75bc5187a74863b3b97c4cfed6b6dd5c78f003ba002a4d7fe6",
                "8fbb8332b956430de61ad4fa1ab261ab5b7922ef1d0f38c30056a485ec0d4ecb"),
    "1_0_160": ("a41aa0195ebe0a5301ab90af589155b42671f78704fd9a2e7dda919c478cd479",
                "22d25b67a8936869b5f0d0c840ba150c90dc89c0b07f8aacd387614be67845d2"),
    "1_0_192": ("bd7e7f6a7cd6690a10aedba3e93bec811240418bd9179546e50c0f4c35899a01",
                "d67556231564ded95aaa7a44004c73aa9696fba267a6817f430eee097af11782"),
    "1_0_224": ("006a2d9484fbea625dd4e6518652c101a3eca052671671c56265fc84f2e1181f",
                "9f9cfd8c925431c06ce96744e1d201575f6a681bf38ae2de38e2ae8f7d7829d3"),
    "7_5_128": ("cafcb7455c36187c93eb7fb3a68e29f76b5761cb2d946d57d1967578e3b05361",
                "dcc5aaa418bbf397a431e79a52be0ad1a61fb6364a9bb6d68b5258f13669c8ba"),
    "7_5_160": ("3ee6f1daa0f9da149bec3311eacfb4451ca236bc126dc25ee191f5bdc6e641be",
                "6056d87ad4e3b341cc8272d68b54a8a113ef0b0e5ab1399e4a801d2942a064fa"),
    "7_5_192": ("a7a2364ee404c19301edb827de693f46eeb46aad13e2c5e73494545e57749eef",
                "b8ea4352b99a87552c0b84c59b59d146b823b684766026ed8f0c68d3aab9e677"),
    "7_5_224": ("811e0307a7e8895a180b81c191033482d99470a0604ea8e88e8d947005067d84",
                "1da9019b66f05a0256dedfed0f321fcaf8bfa71f9facf3f9117e62820be39aa5"),
    "5_0_128": ("26752cdb9ab8459c85fb4cd0f45475bbd3bd25f9225b87bbedd474f5976da145",
                "7f9871530e19990a9a180626566fcc32fb487c70880306592cae219d67179635"),
    "5_0_160": ("71c742137645f19426ea3540bb2933310b0a5f2d3a2d09ee1aea91e348f6fba7",
                "7b15a4d22079138dd889a78cdea8d921a3b73cf7d313ff12f23634c4f71bcace"),
    "5_0_192": ("fabfe055bd26ea40c1c0798c4e22fe1eb437feab111be9f1f722360dff81e040",
                "b848a83f140e284973d80805dc4c184a0a885dadcc1700630a86879c9103d5b1"),
    "5_0_224": ("b4b134ed41de14fd8d6717ab4e88b53e3113194acae392bc41c012ba463906bb",
                "df860c59562f4c4af7a2fb2ae90731caef39fd5d03e5fcd6ca46988965f0a4b7"),
    "2_5_128": ("fe295db7f78635f1403127e3ba8cdc6237f83262bdb745063a67c1d81190c7f8",
                "7d8b7f3c9555cb4579f9659ee233a540e66fd7ad514c0a8b14493b667447c5d6"),
    "2_5_160": ("74b32700eb3f6fb8d0b3f416c3fb52ab5eca35dc82393341eb7bb52676b6b003",
                "c2f18432229c945b816f8b9f9cfa40d2964454b033efea804f6cd03942865bd4"),
    "2_5_192": ("22a302e8a39e545c7372ca96fe8698e3cbbc7d3906f60316e0617c15616f8894",
                "4b7370b9880577f12f31942049d19610a4559c8af38f39dc67d1f90ec9663aa1"),
    "2_5_224": ("98d047950e59f478af63681720906940efc8ce8cecb95bce5c7b47394f8bd63d",
                "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"),
}
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/{file}"
SLIM_URL = ("https://storage.googleapis.com/download.tensorflow.org/models/"
            "mobilenet_v1_2018_08_02/{file}")
# TensorFlow's build (WORKSPACE / tensorflow/lite examples) pins this archive.
SLIM_SHA256 = {"mobilenet_v1_1.0_224.tgz":
               "2fadeabb9968ec6833bee903900dda6e61b3947200535874ce2fe42a8493abc0"}
OD_API_URL = "http://download.tensorflow.org/models/object_detection/{file}"

APACHE = "Apache-2.0 (TensorFlow models: TF-slim / TF Object Detection API)"


def imagenet_name(alpha: float, size: int) -> str:
    """``mobilenet_v1_{alpha}_{size}_imagenet``, alpha written as TF-slim does (1.0, 0.75...)."""
    return f"mobilenet_v1_{float(alpha)}_{size}_imagenet"


def _imagenet_entry(alpha: float, size: int) -> dict[str, Any]:
    macs, top1, top5 = SLIM_TABLE[(alpha, size)]
    key = f"{KERAS_ALPHA[alpha]}_{size}"
    keras_file = f"mobilenet_{key}_tf.h5"
    slim_file = f"mobilenet_v1_{alpha}_{size}.tgz"
    return {
        "task": "MobileNetClassifier",
        "alpha": alpha,
        "input_size": size,
        "num_classes": 1000,
        "depth_multiplier": 1,
        "min_depth": 8,
        "variant": "separable",
        "published_top1": top1,
        "published_top5": top5,
        "published_mult_adds_millions": macs,
        "license": APACHE,
        "preprocessing": "RGB in [0, 255] -> x / 127.5 - 1",
        "source": f"Google's TF-slim MobileNet_v1_{alpha}_{size} ImageNet weights "
                  "(keras.applications' copy, or the TF-slim archive)",
        "sources": [
            {"kind": "keras_h5", "file": keras_file, "url": KERAS_URL.format(file=keras_file),
             "sha256": KERAS_APPLICATIONS_SHA256[key][0],
             "label": "keras.applications"},
            {"kind": "tf_slim_tgz", "file": slim_file, "url": SLIM_URL.format(file=slim_file),
             "sha256": SLIM_SHA256.get(slim_file), "label": "TF-slim"},
        ],
    }


def _ssd_entry(file: str, alpha: float, metric: float, note: str) -> dict[str, Any]:
    return {
        "task": "SSD",
        "alpha": alpha,
        "input_size": 300,
        "num_classes": 90,
        "depth_multiplier": 1,
        "min_depth": 16,
        "variant": "separable",
        "published_metric": f"COCO mAP {metric:g} (TF OD API model zoo)",
        "license": APACHE,
        "labels": "coco",
        "preprocessing": "RGB in [0, 255] -> x / 127.5 - 1 (inside the model), stretched to 300x300",
        # pipeline.config image_resizer { fixed_shape_resizer { height: 300 width: 300 } }:
        # the whole image resized to 300x300, aspect ratio not kept.
        "resize_mode": "stretch",
        "source": f"TF Object Detection API TF1 model zoo, {file} ({note}); built from its "
                  "pipeline.config and checkpoint, checked against its frozen graph",
        "sources": [{"kind": "od_api_tar", "file": file, "url": OD_API_URL.format(file=file),
                     "sha256": None, "label": "TF OD API model zoo"}],
    }


def remote_presets() -> dict[str, dict[str, Any]]:
    """Every published preset that is downloaded on first use."""
    entries = {imagenet_name(a, s): _imagenet_entry(a, s) for a in ALPHAS for s in SIZES}
    entries["ssd_mobilenet_v1_coco"] = _ssd_entry(
        "ssd_mobilenet_v1_coco_2018_01_28.tar.gz", 1.0, 21, "COCO trainval, 2018-01-28")
    entries["ssd_mobilenet_v1_0.75_depth_coco"] = _ssd_entry(
        "ssd_mobilenet_v1_0.75_depth_300x300_coco14_sync_2018_07_03.tar.gz", 0.75, 18,
        "depth multiplier 0.75, COCO14, 2018-07-03")
    return entries
