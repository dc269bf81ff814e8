"""Class Activation Map (Zhou et al. 2016) for a conv -> global-average-pooling -> Dense head.

cam[b] = sum_k A[b, :, :, k] * W[k, c] on the CAM layer's output A, with W the last Dense kernel
(sign-flipped for class 0 of a single sigmoid unit), upsampled, then normalised. One forward
pass to A for every class; no gradient. `relu=True` reproduces a common mistake for the judge.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from autograder.reference.base import HeatmapMethod


class CAM(HeatmapMethod):
    defaults = {"relu": False}  # relu=True only to reproduce a mistake: CAM has no ReLU

    def __init__(self, model: keras.Model, layer_name: str, relu: bool = False):
        super().__init__(model, layer_name, relu=relu)

    def _maps(self, images: tf.Tensor, classes: tf.Tensor, variants: list[dict[str, Any]]) -> list[list[tf.Tensor]]:
        activations, _ = self._features(images)

        def one(v: dict[str, Any], i: int) -> tf.Tensor:
            maps = tf.einsum("bijk,k->bij", activations, self.score.direction(classes[i]))
            return tf.nn.relu(maps) if v["relu"] else maps

        return self.per_variant_and_class(variants, classes, one)
