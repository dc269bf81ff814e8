"""Grad-CAM (Selvaraju et al. 2017): relu(sum_k w_k A_k), w_k = spatial mean of d score_c / d A_k.

The score is the class logit, never the loss (whose gradient points the other way). With a
global-average-pooling + Dense head the gradient does not depend on A, so once compiled the
backward part is nearly free and the whole map costs about one forward pass: every class and
every variant asked for together share it. `relu=False` and the non-logit scores reproduce
common mistakes for the judge's diagnosis.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from autograder.reference.base import HeatmapMethod, Score


class GradCAM(HeatmapMethod):
    defaults = {"score": "logit", "relu": True}

    def __init__(self, model: keras.Model, layer_name: str, score: Score = "logit", relu: bool = True):
        super().__init__(model, layer_name, score=score, relu=relu)

    def _maps(self, images: tf.Tensor, classes: tf.Tensor, variants: list[dict[str, Any]]) -> list[list[tf.Tensor]]:
        kinds = sorted({v["score"] for v in variants})
        with tf.GradientTape(persistent=True) as tape:
            activations, features = self._features(images)
            totals = self.class_scores(features, classes, kinds)
        # Only the layers above the activations are differentiated: the forward pass below them is shared.
        weights = {key: tf.reduce_mean(tape.gradient(total, activations), axis=(1, 2)) for key, total in totals.items()}

        def one(v: dict[str, Any], i: int) -> tf.Tensor:
            maps = tf.einsum("bijk,bk->bij", activations, weights[(v["score"], i)])
            return tf.nn.relu(maps) if v["relu"] else maps

        return self.per_variant_and_class(variants, classes, one)
