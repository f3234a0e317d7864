"""Helpers for tests and benchmarks of this package."""

from __future__ import annotations

import keras
import numpy as np

from mobilenet_zoo.weights_io import iter_weighted_layers


def randomize_batch_norm(model: keras.Model, seed: int = 0) -> keras.Model:
    """Gives every BatchNorm trained-like statistics (gamma, beta, mean, variance).

    A fresh BatchNorm is the identity in inference, which would make BatchNorm
    folding or parity checks trivially pass; returns ``model`` for chaining.
    """
    rng = np.random.default_rng(seed)
    for layer in iter_weighted_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.3, 3.0, c)])
    return model
