"""cnnvis.models (VGG16 base offline), cnnvis.images (RGB loading, overlays, PNGs) and cnnvis.plots."""

from __future__ import annotations

import io
import os

import matplotlib
import numpy as np
import pytest
from PIL import Image

from cnnvis import images, models

matplotlib.use("Agg")  # before cnnvis.plots is imported by any test below


@pytest.fixture
def no_vgg16_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    monkeypatch.delenv(models.VGG16_WEIGHTS_ENV, raising=False)


def test_vgg16_base_offline_has_the_seed_parameter_count(no_vgg16_weights, capsys) -> None:
    base = models.vgg16_base()
    out = capsys.readouterr()
    assert base.count_params() == models.VGG16_BASE_PARAMS == 14_714_688
    assert tuple(base.output.shape) == (None, 7, 7, 512)
    assert [layer.name for layer in base.layers][-1] == "block5_pool"
    assert "random weights" in out.out and out.out.count("\n") == 1
    assert out.err == ""  # nbgrader zeroes a cell that wrote to stderr
    with pytest.raises(FileNotFoundError, match="VGG16 ImageNet weights not found"):
        models.vgg16_base(weights="imagenet")
    with pytest.raises(ValueError):
        models.vgg16_base(weights="random")


def test_vgg16_base_loads_a_weights_file_from_path_or_environment(no_vgg16_weights, tmp_path, monkeypatch, capsys):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    # A stand-in for the ImageNet file, in the same legacy HDF5 layout Keras ships it in.
    source = models.vgg16_base(input_shape=(32, 32, 3), weights="none")
    path = tmp_path / models.VGG16_NOTOP_FILE
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    loaded = models.vgg16_base(input_shape=(32, 32, 3), weights_path=str(path))
    assert f"weights from {path}" in capsys.readouterr().out
    for expected, actual in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)
    monkeypatch.setenv(models.VGG16_WEIGHTS_ENV, str(path))
    assert models.find_vgg16_weights() == path
    from_env = models.vgg16_base(input_shape=(32, 32, 3), weights="imagenet")
    np.testing.assert_array_equal(from_env.get_weights()[0], source.get_weights()[0])


def test_vgg16_preprocess_is_caffe_bgr_mean_centred() -> None:
    rgb = np.random.default_rng(0).random((2, 4, 5, 3), dtype=np.float32)
    out = models.vgg16_preprocess(rgb)
    assert out.dtype == np.float32 and out.shape == rgb.shape
    expected = rgb[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68], dtype=np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    np.testing.assert_array_equal(rgb, np.random.default_rng(0).random((2, 4, 5, 3), dtype=np.float32))


def test_load_image_is_rgb_resized_and_scaled(tmp_path) -> None:
    path = tmp_path / "red.jpg"
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[..., 0] = 250  # pure red: channel 0 must stay the largest (BGR would make it blue)
    Image.fromarray(pixels).save(path, quality=95)
    image = images.load_image(path, 16)
    assert image.shape == (16, 16, 3) and image.dtype == np.float32
    assert image[..., 0].min() > 0.9 and image[..., 2].max() < 0.1
    assert images.load_image(path, (8, 12)).shape == (8, 12, 3)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((10, 10), 128, dtype=np.uint8), mode="L").save(grey)
    np.testing.assert_allclose(images.load_image(grey, 10), 128 / 255, atol=1e-6)


def test_to_uint8_rounds_and_clips() -> None:
    values = np.array([-0.5, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    assert images.to_uint8(values).tolist() == [0, 0, 128, 255, 255]


@pytest.mark.parametrize(
    "image_shape, heatmap_shape",
    [((32, 32, 3), (32, 32)), ((32, 32, 3), (4, 4)), ((28, 28, 1), (3, 3)), ((28, 28), (28, 28))],
)
def test_overlay_is_rgb_in_unit_range_and_resizes_the_heatmap(image_shape, heatmap_shape) -> None:
    rng = np.random.default_rng(1)
    image = rng.random(image_shape, dtype=np.float32)
    heatmap = rng.normal(size=heatmap_shape).astype(np.float32) * 100  # any scale
    out = images.overlay(image, heatmap)
    assert out.shape == (*image_shape[:2], 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_overlay_handles_flat_and_non_finite_maps_and_blends() -> None:
    image = np.full((8, 8, 3), 0.5, dtype=np.float32)
    flat = images.overlay(image, np.zeros((8, 8), dtype=np.float32))
    assert np.isfinite(flat).all()
    broken = np.ones((8, 8), dtype=np.float32)
    broken[0, 0] = np.nan
    assert np.isfinite(images.overlay(image, broken)).all()
    assert np.array_equal(images.overlay(image, np.eye(8), alpha=0.0), image)
    hot = images.overlay(image, np.eye(8), alpha=1.0)
    np.testing.assert_allclose(hot[0, 0], images.colorize(np.ones((1, 1)))[0, 0], atol=1e-6)  # jet's top: dark red
    with pytest.raises(ValueError):
        images.overlay(image, np.zeros((2, 8, 8)))


def test_save_heatmap_png_is_deterministic(tmp_path) -> None:
    rng = np.random.default_rng(2)
    image, heatmap = rng.random((24, 24, 3), dtype=np.float32), rng.random((6, 6), dtype=np.float32)
    first = images.save_heatmap_png(tmp_path / "a" / "map.png", image, heatmap)
    second = images.save_heatmap_png(tmp_path / "b.png", image, heatmap)
    assert first.read_bytes() == second.read_bytes()
    with Image.open(first) as png:
        assert png.format == "PNG" and png.size == (24, 24) and png.mode == "RGB"
        assert np.array_equal(np.asarray(png), images.to_uint8(images.overlay(image, heatmap)))


def _png_size(fig) -> tuple[int, int]:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    with Image.open(io.BytesIO(buffer.getvalue())) as png:
        return png.size


def test_plots_return_figures_without_ticks() -> None:
    import matplotlib.pyplot as plt

    from cnnvis import data, plots

    sample = data.generate_cats_vs_dogs(3, 48, seed=0)
    maps = np.random.default_rng(0).random((3, 6, 6), dtype=np.float32)
    titles = [sample.class_names[label] for label in sample.labels]

    fig = plots.show_images(sample.images, titles=titles, ncols=2)
    assert len([ax for ax in fig.axes if ax.images]) == 3 and _png_size(fig)[0] > 0
    fig = plots.show_heatmaps(sample.images, maps, titles=titles, boxes=sample.boxes)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 and all(len(ax.patches) == 1 for ax in image_axes)
    assert len(fig.axes) == 3 + 1  # min(ncols, n) columns, plus the colour bar
    # House style: the image under a map whose opacity follows the heat, one labelled colour bar.
    for ax in image_axes:
        photo, heat = ax.images
        assert photo.get_array().shape == (48, 48, 3) and np.ndim(heat.get_alpha()) == 2
        # opacity follows the heat: cold pixels leave the image (nearly) untouched
        assert np.allclose(heat.get_alpha(), plots.HEAT_ALPHA * np.asarray(heat.get_array()))
    assert fig.axes[-1].get_ylabel() == plots.DEFAULT_HEAT_LABEL
    fig = plots.compare_heatmaps(
        sample.images, {"CAM": maps, "saliency": maps**2}, titles=titles, boxes=sample.boxes, label="saliency"
    )
    panels, bar = fig.axes[:9], fig.axes[9]
    assert len(fig.axes) == 10 and bar.get_ylabel() == "saliency"
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in panels)
    assert [panels[i].get_ylabel() for i in (0, 3, 6)] == ["image", "CAM", "saliency"]
    assert all(len(ax.patches) == 1 for ax in panels)
    with pytest.raises(ValueError):
        plots.show_heatmaps(sample.images, maps[:2])
    with pytest.raises(ValueError):
        plots.show_images(sample.images, titles=["one"])
    plt.close("all")


def test_prediction_title_and_example_picks() -> None:
    from cnnvis import plots

    names = ("cat", "dog")
    assert plots.prediction_title(names, 0, 0, 0.91) == "true cat\npredicted cat (p = 0.91)"
    assert plots.prediction_title(names, 0, 1, 0.6).startswith("WRONG: true cat")
    # The first test images are all cats and there is one mistake: both classes and the mistake are shown.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    predicted = np.array([0, 0, 0, 0, 1, 0, 1, 0])
    correct, wrong = plots.pick_correct_and_wrong(labels, predicted, 3, 3)
    assert set(labels[correct]) == {0, 1} and np.all(labels[correct] == predicted[correct])
    assert wrong.tolist() == [5]
    correct, wrong = plots.pick_correct_and_wrong(labels, labels, 4, 3)
    assert len(correct) == 4 and sorted(labels[correct].tolist()) == [0, 0, 1, 1] and wrong.size == 0


def test_peak_in_box_is_the_pointing_game() -> None:
    from cnnvis.images import peak_in_box

    maps = np.zeros((3, 10, 10), dtype=np.float32)
    maps[0, 2, 3] = 1.0  # inside (y 1..4, x 2..5)
    maps[1, 8, 8] = 1.0  # outside
    boxes = np.array([[1, 2, 5, 6]] * 3)
    assert peak_in_box(maps, boxes).tolist() == [True, False, False]  # a flat map points nowhere


def test_c_level_stderr_is_filtered_only_of_tensorflow_noise(capfd) -> None:
    from cnnvis.quiet import c_stderr_filtered

    with c_stderr_filtered():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"E0000 00:00:1796118946.922278   28702 cuda_platform.cc:52] failed call to cuInit: (303)\n")
        os.write(2, b"a real problem\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "a real problem\nafter\n"


def test_fit_above_frozen_trains_only_the_top_of_the_model() -> None:
    import keras

    from cnnvis.models import fit_above_frozen, model_above

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="frozen_conv")(inputs)
    x = keras.layers.MaxPooling2D(name="cut")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="top_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    for layer in model.layers[:3]:
        layer.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert [layer.name for layer in model_above(model, "cut").layers[1:]] == [layer.name for layer in model.layers[3:]]
    frozen, top = model.get_layer("frozen_conv").get_weights()[0].copy(), model.get_layer("top_conv").get_weights()[0]
    rng = np.random.default_rng(0)
    images, labels = rng.random((8, 8, 8, 3), dtype=np.float32), np.arange(8) % 2
    history = fit_above_frozen(model, images, labels, "cut", epochs=3, batch_size=4, learning_rate=1e-2)
    assert len(history.history["loss"]) == 3
    assert np.array_equal(model.get_layer("frozen_conv").get_weights()[0], frozen)
    assert not np.allclose(model.get_layer("top_conv").get_weights()[0], top)  # the model's own layers learned
    model.get_layer("frozen_conv").trainable = True  # features computed once would go stale
    with pytest.raises(ValueError, match="must be frozen"):
        fit_above_frozen(model, images, labels, "cut", epochs=1)


def test_missing_answer_names_say_what_they_wait_for(capsys) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from cnnvis.answers import explain_missing_names

    assert explain_missing_names({"model": "x"}) is False  # outside IPython: nothing to install
    shell = InteractiveShell.instance()
    try:
        assert explain_missing_names({"model": "`build_model` (section 2)"})
        result = shell.run_cell("model.summary()")
        out = capsys.readouterr().out
        assert isinstance(result.error_in_exec, NameError)
        assert "`model` does not exist yet: it is made by `build_model` (section 2)" in out
        assert "Traceback" not in out and "most recent call" not in out
        shell.run_cell("other_name + 1")  # names the notebook did not declare keep their usual traceback
        assert "name 'other_name' is not defined" in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
