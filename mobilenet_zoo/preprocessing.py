"""Input preprocessing of TF-slim / keras.applications MobileNet: [0, 255] -> [-1, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np


def preprocess_input(x: Any) -> Any:
    """Maps pixel values in [0, 255] to [-1, 1] (``x / 127.5 - 1``).

    Same numbers as ``keras.applications.mobilenet.preprocess_input`` (mode
    "tf") and TF-slim's inception preprocessing. Accepts numpy arrays (any
    dtype, returned as float32) and tensors.

    Example:

    ```python
    x = preprocess_input(np.array(pil_image))  # uint8 HxWx3 -> float32 in [-1, 1]
    ```
    """
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        return np.asarray(x, dtype=np.float32) / 127.5 - 1.0
    import keras

    return keras.ops.cast(x, "float32") / 127.5 - 1.0


def preprocessing_layer(name: str = "preprocessing"):
    """The same mapping as a Keras layer, for models that take raw pixels."""
    import keras

    return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=name)
