"""mobilenet_zoo: MobileNet v1 for Keras 3 with a detection/segmentation zoo."""

from setuptools import find_packages, setup

# What the models need at run time on JAX or PyTorch, TensorFlow aside.
_WITHOUT_TENSORFLOW = [
    "keras>=3.5,<4",
    "numpy",
    "h5py",
    "pillow",
    "scikit-image",
    "scikit-learn",
    "matplotlib",
    "pycocotools>=2.0",
    "s2cell",
]

setup(
    name="mobilenet_zoo",
    version="0.1.0",
    description="MobileNet v1 (Howard et al. 2017) backbone, task heads and recipes for Keras 3",
    long_description=open("README.md", encoding="utf8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The repository's weights/ folder travels inside the package as
    # mobilenet_zoo/weights, so a wheel or a non-editable install has its presets.
    packages=find_packages(include=["mobilenet_zoo", "mobilenet_zoo.*"]) + ["mobilenet_zoo.weights"],
    package_dir={"mobilenet_zoo.weights": "weights"},
    package_data={
        "mobilenet_zoo": ["data/*.txt", "data/*.json"],
        "mobilenet_zoo.weights": ["*.weights.h5", "manifest.json"],
    },
    install_requires=[
        "keras>=3.5,<4",
        "tensorflow>=2.16",
        "tensorboard",  # TensorBoard logs of the recipes (not a TF 2.21 dependency)
        "keras-cv>=0.9",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tensorflow-datasets needs it at run time, undeclared
        "pycocotools>=2.0",
        "h5py",
        "numpy",
        "pillow",
        "scikit-image",  # real photos shipped in its wheel: embedded default data
        "scikit-learn",  # digits and sample photos: embedded default data
        "matplotlib",  # PNGs of detections / overlays written by the recipes
        "ai-edge-litert",  # LiteRT interpreter to run exported .tflite files
        "s2cell",  # S2 cell ids for PlaNet geolocation (pure Python)
    ],
    extras_require={
        # A TensorFlow-free install (`pip install --no-deps mobilenet_zoo` plus one of these):
        # every model builds, loads presets, predicts, trains and saves on that backend;
        # tf.data pipelines, SavedModel / TFLite export and TF-format converters need
        # TensorFlow and say so when called.
        "jax": _WITHOUT_TENSORFLOW + ["jax[cpu]>=0.4"],
        "torch": _WITHOUT_TENSORFLOW + ["torch>=2.1"],
        # jax / torch: the tests run every task model on the JAX and PyTorch backends
        # (torch==2.13.0 is PyTorch's CPU build where a local wheel provides it; plain
        # `torch` from PyPI is the CUDA build). mediapipe: the tests run MediaPipe Tasks
        # on our .tflite files (skipped where its wheel does not exist).
        "test": ["pytest>=7", "pytest-xdist", "ruff", "jax[cpu]>=0.4", "torch==2.13.0", "mediapipe"],
    },
)
