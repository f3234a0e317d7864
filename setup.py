"""mobilenet_zoo: MobileNet v1 for Keras 3 with a detection/segmentation zoo."""

from setuptools import find_packages, setup


def _version() -> str:
    """The version, from mobilenet_zoo/version.py (one place)."""
    scope: dict = {}
    exec(open("mobilenet_zoo/version.py", encoding="utf8").read(), scope)
    return scope["__version__"]


def _requirements(path: str) -> list[str]:
    """The packages of a requirements file (the TensorFlow-free installs, docs/backends.md)."""
    with open(path, encoding="utf8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


setup(
    name="mobilenet_zoo",
    version=_version(),
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
    # One command: `mobilenet-zoo presets|detect|classify|export|convert` (mobilenet_zoo/cli).
    entry_points={"console_scripts": ["mobilenet-zoo = mobilenet_zoo.cli:main"]},
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
        # Another backend beside the default TensorFlow stack. (pip installs the package's
        # own requirements with any extra: a TensorFlow-free install is `pip install
        # --no-deps mobilenet_zoo` + `pip install -r requirements-jax.txt`, docs/backends.md.)
        "jax": _requirements("requirements-jax.txt"),
        "torch": _requirements("requirements-torch.txt"),
        # jax / torch: the tests run every task model on the JAX and PyTorch backends
        # (torch==2.13.0 is PyTorch's CPU build where a local wheel provides it; plain
        # `torch` from PyPI is the CUDA build). mediapipe: the tests run MediaPipe Tasks
        # on our .tflite files (skipped where its wheel does not exist).
        "test": ["pytest>=7", "pytest-xdist", "ruff", "import-linter>=2.1", "jax[cpu]>=0.4", "torch==2.13.0", "mediapipe"],
    },
)
