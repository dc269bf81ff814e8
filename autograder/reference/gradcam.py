"""Grad-CAM (Selvaraju et al. 2017): relu(sum_k w_k A_k), w_k = spatial mean of d score_c / d A_k.

The score is the class logit, never the loss (whose gradient points the other way). With a
global-average-pooling + Dense head the gradient does not depend on A, so once compiled the
backward part is nearly free and the whole map costs about one forward pass.
`relu=False` and the non-logit scores reproduce common mistakes for the judge's diagnosis.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from autograder.reference.base import ClassScore, HeatmapMethod, Score, last_dense, normalize_maps, resize_maps


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

    def variant_maps(self, images, class_index: int, upsample: bool = True) -> dict[str, np.ndarray]:
        """Normalised maps of the reference ("") and of each usual mistake, from one forward pass.

        Keys: "", "relu_missing", "score_loss", "score_probability" and "class:K" (the reference for
        every other class K). The judge's diagnosis tries all of them on a few probe images; with one
        HeatmapMethod per mistake each paid its own compile and forward pass through the whole network
        (VGG16: about 30 s per diagnosed notebook). Here the forward pass runs once, eagerly, under a
        persistent tape, and each score is differentiated back to the layer only through the head.
        """
        c = self.score.check_class(class_index)
        batch = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
        dense = last_dense(self.model)
        scores = {kind: ClassScore(dense, kind) for kind in ("logit", "loss", "probability")}
        wanted = {"": ("logit", c), "score_loss": ("loss", c), "score_probability": ("probability", c)}
        wanted |= {f"class:{k}": ("logit", k) for k in range(self.score.num_classes) if k != c}
        with tf.GradientTape(persistent=True) as tape:
            activations, features = self._features(batch)
            totals = {
                key: tf.reduce_sum(scores[kind](features, tf.constant(k, tf.int32)))
                for key, (kind, k) in wanted.items()
            }
        raw: dict[str, tf.Tensor] = {}
        for key, total in totals.items():
            weights = tf.reduce_mean(tape.gradient(total, activations), axis=(1, 2))
            weighted = tf.einsum("bijk,bk->bij", activations, weights)
            raw[key] = tf.nn.relu(weighted)
            if key == "":
                raw["relu_missing"] = weighted
        del tape
        out = {}
        for key, maps in raw.items():
            if upsample and tuple(maps.shape[1:3]) != self.input_size:
                maps = resize_maps(maps, self.input_size)
            out[key] = normalize_maps(maps).numpy()
        return out
