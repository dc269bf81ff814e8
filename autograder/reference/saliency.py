"""Vanilla saliency (Simonyan et al. 2014): max over colour channels of |d score_c / d x|, normalised.

`reduce="sum"`, `absolute=False` and the non-logit scores reproduce common mistakes for the judge's diagnosis.
"""

from __future__ import annotations

from typing import Literal

import keras
import tensorflow as tf

from autograder.reference.base import HeatmapMethod, Score


class Saliency(HeatmapMethod):
    def __init__(
        self, model: keras.Model, score: Score = "logit", reduce: Literal["max", "sum"] = "max", absolute: bool = True
    ):
        super().__init__(model, None, score)
        self.reduce = reduce
        self.absolute = absolute

    def _maps(self, images: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(images)
            (features,) = self._features(images)
            # Images are independent (inference mode), so the gradient of the sum is each image's own gradient.
            total = tf.reduce_sum(self.score(features, class_index))
        grads = tape.gradient(total, images)
        grads = tf.abs(grads) if self.absolute else grads
        maps = tf.reduce_max(grads, axis=-1) if self.reduce == "max" else tf.reduce_sum(grads, axis=-1)
        return maps
