"""Vanilla saliency (Simonyan et al. 2014): max over colour channels of |d score_c / d x|, normalised.

`reduce="sum"`, `absolute=False` and the non-logit scores reproduce common mistakes for the judge's
diagnosis; variants asked for together share one forward pass (and one backward pass per score).
"""

from __future__ import annotations

from typing import Any, Literal

import keras
import tensorflow as tf

from autograder.reference.base import HeatmapMethod, Score


class Saliency(HeatmapMethod):
    defaults = {"score": "logit", "reduce": "max", "absolute": True}

    def __init__(
        self, model: keras.Model, score: Score = "logit", reduce: Literal["max", "sum"] = "max", absolute: bool = True
    ):
        super().__init__(model, None, score=score, reduce=reduce, absolute=absolute)

    def _maps(self, images: tf.Tensor, classes: tf.Tensor, variants: list[dict[str, Any]]) -> list[list[tf.Tensor]]:
        kinds = sorted({v["score"] for v in variants})
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            (features,) = self._features(images)
            totals = self.class_scores(features, classes, kinds)
        grads = {key: tape.gradient(total, images) for key, total in totals.items()}

        def one(v: dict[str, Any], i: int) -> tf.Tensor:
            g = grads[(v["score"], i)]
            g = tf.abs(g) if v["absolute"] else g
            return tf.reduce_max(g, axis=-1) if v["reduce"] == "max" else tf.reduce_sum(g, axis=-1)

        return self.per_variant_and_class(variants, classes, one)
