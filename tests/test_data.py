"""cnnvis.data: generated datasets (determinism, shapes, boxes, balance, learnability) and real loaders.

The Lab 3 learnability test trains at 96x96 instead of 300x300 to keep the suite fast: the
class evidence (fur colour, shape, texture) and the object's share of the image are the same at
every size. The full-size figures (512 images at 300x300, 2 epochs) were measured by hand and are
in the toolkit's report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnvis import data

CATS_SIZE = 96  # below full size to keep the suite fast: see the module docstring


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Never touch the network or a real cache from the tests, whatever machine runs them."""
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.delenv(data.CATS_DOGS_DIR_ENV, raising=False)


def _check_image_set(images: data.ImageSet, n: int, shape: tuple[int, ...], num_classes: int) -> None:
    assert images.images.shape == (n, *shape)
    assert images.images.dtype == np.float32
    assert images.images.min() >= 0.0 and images.images.max() <= 1.0
    assert images.labels.shape == (n,) and images.labels.dtype == np.int64
    assert len(images.class_names) == num_classes
    assert set(np.unique(images.labels)) <= set(range(num_classes))


def _check_boxes(images: data.ImageSet) -> None:
    boxes = images.boxes
    height, width = images.images.shape[1:3]
    assert boxes is not None and boxes.shape == (len(images), 4) and boxes.dtype == np.int32
    y0, x0, y1, x1 = boxes.T
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y1 <= height).all() and (x1 <= width).all()
    assert (y1 - y0 >= 4).all() and (x1 - x0 >= 4).all()


@pytest.mark.parametrize(
    "make",
    [lambda seed: data.generate_fashion_mnist(64, seed), lambda seed: data.generate_cats_vs_dogs(40, 64, seed)],
    ids=["fashion", "cats_vs_dogs"],
)
def test_generators_are_deterministic_and_depend_on_the_seed(make) -> None:
    first, again, other = make(7), make(7), make(8)
    assert first.images.tobytes() == again.images.tobytes()
    assert np.array_equal(first.labels, again.labels) and np.array_equal(first.boxes, again.boxes)
    assert not np.array_equal(first.images, other.images)
    assert first.source == "generated"


def test_fashion_shapes_ranges_balance_and_boxes() -> None:
    images = data.generate_fashion_mnist(1000, seed=3)
    _check_image_set(images, 1000, (28, 28, 1), 10)
    assert images.class_names == data.FASHION_CLASSES and len(data.FASHION_CLASSES) == 10
    assert np.array_equal(np.bincount(images.labels, minlength=10), np.full(10, 100))
    _check_boxes(images)
    # Objects are at least 0.44 bright, the background at most 0.15 plus noise (sigma 0.06): the box
    # holds the object (its border rows and columns touch it) and nothing bright lies outside it.
    pixels = images.images[..., 0]
    inside = np.zeros(pixels.shape, dtype=bool)
    for index, (y0, x0, y1, x1) in enumerate(images.boxes):
        inside[index, y0:y1, x0:x1] = True
        box = pixels[index, y0:y1, x0:x1] > 0.42
        assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
    assert (pixels[~inside] < 0.42).mean() > 0.9999
    assert pixels[inside].mean() > 3 * pixels[~inside].mean()


def test_fashion_classes_are_distinct_silhouettes() -> None:
    images = data.generate_fashion_mnist(400, seed=5)
    # Average silhouette per class, centred on its box and resized to 16x16: no two alike.
    means = []
    for class_id in range(10):
        crops = []
        for index in np.flatnonzero(images.labels == class_id)[:30]:
            y0, x0, y1, x1 = images.boxes[index]
            crop = Image.fromarray(images.images[index, y0:y1, x0:x1, 0]).resize((16, 16), Image.Resampling.BILINEAR)
            crops.append(np.asarray(crop) > 0.42)
        means.append(np.mean(crops, axis=0).ravel())
    means = np.array(means)
    distances = np.abs(means[:, None] - means[None]).mean(axis=2)
    assert distances[~np.eye(10, dtype=bool)].min() > 0.08, np.round(distances, 2)


def test_cats_vs_dogs_shapes_ranges_balance_and_boxes() -> None:
    images = data.generate_cats_vs_dogs(64, 128, seed=11)
    _check_image_set(images, 64, (128, 128, 3), 2)
    assert images.class_names == data.CATS_DOGS_CLASSES == ("cat", "dog")
    assert np.array_equal(np.bincount(images.labels), [32, 32])
    _check_boxes(images)
    widths = (images.boxes[:, 3] - images.boxes[:, 1]) / 128
    assert widths.min() >= 0.15 and widths.max() <= 0.45, (widths.min(), widths.max())
    # The background is neutral grey; fur is cool (cats) or warm (dogs): colour marks the object.
    warmth = images.images[..., 0] - images.images[..., 2]
    inside = np.zeros(warmth.shape, dtype=bool)
    for index, (y0, x0, y1, x1) in enumerate(images.boxes):
        inside[index, y0:y1, x0:x1] = True
        assert np.abs(warmth[index, y0:y1, x0:x1]).mean() > 3 * np.abs(warmth[index][~inside[index]]).mean()
    box_warmth = np.array([warmth[i][inside[i]].mean() for i in range(64)])
    assert (box_warmth[images.labels == 1] > 0.1).all() and (box_warmth[images.labels == 0] < -0.1).all()


def test_cats_vs_dogs_background_does_not_depend_on_the_class() -> None:
    images = data.generate_cats_vs_dogs(200, 64, seed=2)
    outside = []
    for index, (y0, x0, y1, x1) in enumerate(images.boxes):
        keep = np.ones((64, 64), dtype=bool)
        keep[y0:y1, x0:x1] = False
        outside.append(images.images[index][keep].mean(axis=0))
    outside = np.array(outside)
    cats, dogs = outside[images.labels == 0], outside[images.labels == 1]
    assert np.abs(cats.mean(axis=0) - dogs.mean(axis=0)).max() < 0.02
    assert np.abs(cats.std(axis=0) - dogs.std(axis=0)).max() < 0.02


def test_cats_vs_dogs_any_size_and_bounded_time() -> None:
    for size in (32, 224, 300):
        images = data.generate_cats_vs_dogs(4, size, seed=0)
        _check_image_set(images, 4, (size, size, 3), 2)
        _check_boxes(images)
    with pytest.raises(ValueError):
        data.generate_cats_vs_dogs(4, 16, seed=0)
    start = time.perf_counter()
    data.generate_fashion_mnist(1000, seed=0)
    data.generate_cats_vs_dogs(32, 300, seed=0)
    # A sanity bound only (the machine is shared); the measured times are in the report.
    assert time.perf_counter() - start < 30


def test_loaders_default_to_the_profile_and_split_deterministically(monkeypatch) -> None:
    monkeypatch.setenv("CNNVIS_PROFILE", "grading")
    from cnnvis import settings

    sizes = settings.profile()["fashion_mnist"]
    train = data.load_fashion_mnist("train")
    test = data.load_fashion_mnist("test")
    assert (len(train), len(test)) == (sizes["train"], sizes["test"])
    assert train.source == "generated"
    assert np.array_equal(train.images, data.load_fashion_mnist("train").images)
    assert not np.array_equal(train.images[: len(test)], test.images)
    cats_train = data.load_cats_vs_dogs("train", n=8, size=48)
    cats_test = data.load_cats_vs_dogs("test", n=8, size=48)
    assert not np.array_equal(cats_train.images, cats_test.images)
    assert np.array_equal(cats_train.images, data.load_cats_vs_dogs("train", n=8, size=48, seed=settings.seed()).images)
    with pytest.raises(ValueError):
        data.load_fashion_mnist("validation", n=4)
    with pytest.raises(ValueError):
        data.load_cats_vs_dogs(n=4, source="internet")


def test_real_sources_fail_fast_and_clearly_offline(capsys) -> None:
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="Fashion-MNIST is not in"):
        data.load_fashion_mnist(n=4, source="real")
    with pytest.raises(data.DataUnavailableError, match="no folder given"):
        data.load_cats_vs_dogs(n=4, size=48, source="real")
    with pytest.raises(data.DataUnavailableError, match="is not a folder"):
        data.load_cats_vs_dogs(n=4, size=48, source="real", folder="/nonexistent/cats")
    assert time.perf_counter() - start < 5
    assert capsys.readouterr().out == ""


def test_auto_falls_back_to_generated_and_says_so(capsys) -> None:
    fashion = data.load_fashion_mnist(n=6, source="auto", seed=1)
    cats = data.load_cats_vs_dogs(n=6, size=48, source="auto", seed=1)
    out = capsys.readouterr()
    assert fashion.source == cats.source == "generated"
    assert "Fashion-MNIST: using generated data" in out.out and "Cats vs dogs: using generated data" in out.out
    assert out.err == ""
    assert np.array_equal(cats.images, data.load_cats_vs_dogs(n=6, size=48, source="generated", seed=1).images)


def _write_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def test_real_folder_loader_reads_rgb_resized_in_class_folders(tmp_path, capsys) -> None:
    root = tmp_path / "pets"
    for index in range(5):
        _write_jpeg(root / "cats" / f"c{index}.jpg", (220, 20, 20))  # red cats
        _write_jpeg(root / "dogs" / f"d{index}.JPG", (20, 20, 220), size=(25, 50))  # blue dogs
    (root / "dogs" / "notes.txt").write_text("not an image")
    train = data.load_cats_vs_dogs("train", n=100, size=32, source="real", folder=str(root))
    test = data.load_cats_vs_dogs("test", n=100, size=32, source="real", folder=str(root))
    assert train.source == f"folder:{root}" and train.boxes is None
    assert len(train) + len(test) == 10 and len(train) == 8
    for images in (train, test):
        _check_image_set(images, len(images), (32, 32, 3), 2)
        red = images.images[..., 0].mean(axis=(1, 2)) > images.images[..., 2].mean(axis=(1, 2))
        assert np.array_equal(red, images.labels == 0)  # RGB, never BGR: cats stay red
    # Train and test never share a file: images differ only by colour here, so check the counts.
    assert np.bincount(np.concatenate([train.labels, test.labels]), minlength=2).tolist() == [5, 5]
    assert capsys.readouterr().out == ""
    auto = data.load_cats_vs_dogs("train", n=3, size=32, source="auto", folder=str(root))
    assert len(auto) == 3 and auto.source.startswith("folder:")
    assert "real images from" in capsys.readouterr().out


def test_real_folder_loader_uses_split_subfolders(tmp_path, monkeypatch) -> None:
    root = tmp_path / "split"
    _write_jpeg(root / "train" / "cat" / "a.jpg", (200, 50, 50))
    _write_jpeg(root / "train" / "dog" / "b.jpg", (50, 50, 200))
    _write_jpeg(root / "test" / "dog" / "c.jpg", (50, 50, 200))
    monkeypatch.setenv(data.CATS_DOGS_DIR_ENV, str(root))
    train = data.load_cats_vs_dogs("train", size=16, source="real")
    test = data.load_cats_vs_dogs("test", size=16, source="real")
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [1]
    empty = tmp_path / "empty"
    (empty / "birds").mkdir(parents=True)
    with pytest.raises(data.DataUnavailableError, match="no images"):
        data.load_cats_vs_dogs(size=16, source="real", folder=str(empty))


def _seed_cnn(input_shape: tuple[int, int, int], units: int):
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(units, activation="softmax"),
        ]
    )


@pytest.mark.slow
def test_lab1_model_learns_generated_fashion_in_two_epochs() -> None:
    import keras

    keras.utils.set_random_seed(0)
    train = data.generate_fashion_mnist(2048, seed=101)
    test = data.generate_fashion_mnist(512, seed=102)
    model = _seed_cnn((28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.images, train.labels, batch_size=32, epochs=2, verbose=0)
    accuracy = model.evaluate(test.images, test.labels, verbose=0)[1]
    assert accuracy >= 0.70, accuracy


@pytest.mark.slow
def test_lab3_model_learns_generated_cats_vs_dogs_in_two_epochs() -> None:
    import keras

    keras.utils.set_random_seed(0)
    train = data.generate_cats_vs_dogs(512, CATS_SIZE, seed=201)
    test = data.generate_cats_vs_dogs(128, CATS_SIZE, seed=202)
    model = _seed_cnn((CATS_SIZE, CATS_SIZE, 3), 2)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.images, train.one_hot(), batch_size=32, epochs=2, verbose=0)
    accuracy = model.evaluate(test.images, test.one_hot(), verbose=0)[1]
    assert accuracy >= 0.90, accuracy
