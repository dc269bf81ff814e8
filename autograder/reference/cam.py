"""Class Activation Map (Zhou et al. 2016) for a conv -> global-average-pooling -> Dense head.

cam[b] = sum_k A[b, :, :, k] * W[k, c] on the CAM layer's output A, with W the last Dense kernel
(sign-flipped for class 0 of a single sigmoid unit), upsampled, then normalised. One forward
pass to A; no gradient. `relu=True` reproduces a common mistake for the judge.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autograder.reference.base import HeatmapMethod


class CAM(HeatmapMethod):
    def __init__(self, model: keras.Model, layer_name: str, relu: bool = False):
        super().__init__(model, layer_name)
        self.relu = relu  # True only to reproduce a mistake: CAM has no ReLU

    def _maps(self, images: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
        activations, _ = self._features(images)
        maps = tf.einsum("bijk,k->bij", activations, self.score.direction(class_index))
        return tf.nn.relu(maps) if self.relu else maps
