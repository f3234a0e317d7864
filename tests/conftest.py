import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    # Keras' global state reset, without the forced full gc.collect() of the default
    # (free_memory=True): measured 0.45-0.73 s a test in a worker holding TensorFlow, minutes
    # over the suite; Python's own collector still runs.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def rng():
    return np.random.default_rng(0)

# No test reaches the internet: a download that a test did not point at its own
# 127.0.0.1 server fails at once (tests of downloads unset this themselves).
os.environ["MOBILENET_ZOO_OFFLINE"] = "1"
