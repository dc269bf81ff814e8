"""Grad-CAM (Selvaraju et al. 2017): relu(sum_k w_k A_k), w_k = spatial mean of d score_c / d A_k.

The score is the class logit, never the loss (whose gradient points the other way). With a
global-average-pooling + Dense head the gradient does not depend on A, so once compiled the
backward part is nearly free and the whole map costs about one forward pass.
`relu=False` and the non-logit scores reproduce common mistakes for the judge's diagnosis.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from autograder.reference.base import HeatmapMethod, Score


class GradCAM(HeatmapMethod):
    def __init__(self, model: keras.Model, layer_name: str, score: Score = "logit", relu: bool = True):
        super().__init__(model, layer_name, score)
        self.relu = relu

    def _maps(self, images: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            activations, features = self._features(images)
            total = tf.reduce_sum(self.score(features, class_index))
        grads = tape.gradient(total, activations)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        maps = tf.einsum("bijk,bk->bij", activations, weights)
        if self.relu:
            maps = tf.nn.relu(maps)
        return maps
