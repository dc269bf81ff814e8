"""The course's two datasets: real loaders when the data is there, generated look-alikes otherwise.

Every lab works offline and every grading run is reproducible because of the generated data: the
same seed gives the same bytes, the object in each image sits at a known box (so a heatmap can be
checked against where the object is), and the classes are easy enough for the seed models to learn
in a couple of CPU epochs. Generated images are made on the fly and never stored.

Which data a loader returns is an explicit argument, ``source``:
  "generated"  always the generated images;
  "real"       the real dataset, or a clear error when it is neither cached nor reachable;
  "auto"       the real dataset when available, otherwise generated (it prints which one it got);
  None         the active profile's ``data`` setting (see cnnvis.settings).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnvis import settings

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CATS_DOGS_CLASSES: tuple[str, ...] = ("cat", "dog")
SOURCES = ("auto", "real", "generated")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CATS_DOGS_DIR_ENV = "CNNVIS_CATS_DOGS_DIR"
OFFLINE_ENV = "CNNVIS_OFFLINE"  # set to 1: never try the network, use only cached data
_FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
_FASHION_HOST = "storage.googleapis.com"
_TFDS_HOST = "download.microsoft.com"
_FOLDER_ALIASES = {"cat": 0, "cats": 0, "dog": 1, "dogs": 1}


class DataUnavailableError(RuntimeError):
    """The real dataset was asked for but is neither cached nor reachable."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A batch of images with their labels and, for generated data, where the object is."""

    images: np.ndarray  # float32 in [0, 1], (N, H, W, C)
    labels: np.ndarray  # int64 class ids, (N,)
    boxes: np.ndarray | None  # int32 (N, 4) as (y0, x0, y1, x1), end exclusive; None for real data
    class_names: tuple[str, ...]
    source: str  # "generated", "keras", "tfds" or "folder:<path>"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def one_hot(self) -> np.ndarray:
        """Labels as a float32 one-hot array (N, num_classes)."""
        return np.eye(len(self.class_names), dtype=np.float32)[self.labels]


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """Every class equally often (up to one), in a seeded random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(y0, x0, y1, x1), end exclusive, of the True pixels of each (B, H, W) mask."""
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    height, width = masks.shape[1:]
    y0 = rows.argmax(axis=1)
    y1 = height - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = width - cols[:, ::-1].argmax(axis=1)
    return np.stack([y0, x0, y1, x1], axis=1).astype(np.int32)


def _local_coords(
    size: tuple[int, int], cy: np.ndarray, cx: np.ndarray, ry: np.ndarray, rx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates relative to each object's centre, in units of its radius: (B, H, W) each."""
    ys = np.arange(size[0], dtype=np.float32) + 0.5
    xs = np.arange(size[1], dtype=np.float32) + 0.5
    v = (ys[None, :, None] - cy[:, None, None]) / ry[:, None, None]
    u = (xs[None, None, :] - cx[:, None, None]) / rx[:, None, None]
    return np.broadcast_to(u, (len(cy), *size)), np.broadcast_to(v, (len(cy), *size))


def _split_seed(seed: int, split: str) -> int:
    """Train and test get different, fixed streams from the same course seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return int(np.random.SeedSequence([int(seed), SPLITS.index(split)]).generate_state(1)[0])


def _resolve(source: str | None, split: str, n: int | None, seed: int | None, dataset: str) -> tuple[str, int, int]:
    """Fill in the profile's defaults: (source, n, seed)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    active = settings.profile()
    source = source or active.get("data", "generated")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES} or None, got {source!r}")
    n = int(active[dataset][split]) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    seed = settings.seed() if seed is None else int(seed)
    return source, n, seed


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a download host answers at all (fails fast on a machine without network)."""
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


# --------------------------------------------------------------------------------------------
# Generated Fashion-MNIST look-alike: ten silhouettes on a noisy background
# --------------------------------------------------------------------------------------------
# Each silhouette is a mask on coordinates (u, v) in about [-1, 1], u to the right, v downwards.


def _tshirt(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    body = (np.abs(u) < 0.45) & (v > -0.8) & (v < 0.95)
    sleeves = (np.abs(u) < 1.0) & (v > -0.8) & (v < -0.35)
    neck = u**2 + (v + 0.8) ** 2 < 0.22**2
    return (body | sleeves) & ~neck


def _trouser(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    waist = (np.abs(u) < 0.6) & (v > -0.95) & (v < -0.55)
    legs = (np.abs(u) > 0.1) & (np.abs(u) < 0.6 + 0.1 * (v + 0.55)) & (v >= -0.55) & (v < 0.95)
    return waist | legs


def _pullover(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    body = (np.abs(u) < 0.45) & (v > -0.8) & (v < 0.85)
    shoulders = (np.abs(u) < 0.9) & (v > -0.8) & (v < -0.5)
    arms = (np.abs(u) > 0.68) & (np.abs(u) < 1.0) & (v > -0.8) & (v < 0.95)
    return body | shoulders | arms


def _dress(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    half_width = 0.22 + 0.55 * (v + 0.6) / 1.55
    skirt = (np.abs(u) < half_width) & (v > -0.6) & (v < 0.95)
    straps = (np.abs(np.abs(u) - 0.18) < 0.08) & (v > -0.95) & (v <= -0.6)
    return skirt | straps


def _coat(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    body = (np.abs(u) < 0.75) & (v > -0.95) & (v < 1.0)
    opening = (np.abs(u) < 0.1) & (v > -0.6)
    collar = (np.abs(u) < 0.45 - 0.9 * (v + 0.95)) & (v < -0.55)
    return body & ~opening & ~collar


def _sandal(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    sole = (np.abs(u) < 1.0) & (v > 0.55) & (v < 0.8)
    straps = (np.abs(u) < 0.9) & (v > -0.1) & (v <= 0.55) & (np.sin(7.0 * (u + 0.6 * v)) > 0.35)
    heel = (u < -0.6) & (u > -0.95) & (v > -0.3) & (v <= 0.55)
    return sole | straps | heel


def _shirt(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Long sleeves flaring out and down, a deep V collar and a button strip: an "A" with a notch.
    body = (np.abs(u) < 0.42) & (v > -0.85) & (v < 0.95)
    flare = 0.47 + 0.25 * (v + 0.85) / 1.6
    sleeves = (np.abs(u) > flare) & (np.abs(u) < flare + 0.28) & (v > -0.85) & (v < 0.75)
    v_neck = (np.abs(u) < 0.45 * (0.1 - v) / 0.95) & (v < 0.1)
    return (body | sleeves) & ~v_neck


def _sneaker(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    top = 0.15 - 0.45 * (u < -0.1) - 0.2 * np.clip(u, 0.0, 1.0)
    shoe = (np.abs(u) < 1.0) & (v > top) & (v < 0.75)
    return shoe


def _bag(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    body = (np.abs(u) < 1.0) & (v > 0.0) & (v < 0.85)
    ring = u**2 / 0.6**2 + v**2 / 0.9**2
    handle = (ring < 1.0) & (ring > 0.45) & (v <= 0.0)
    return body | handle


def _ankle_boot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    shaft = (u > -0.85) & (u < 0.05) & (v > -0.95) & (v < 0.9)
    foot = (u > -0.85) & (u < 0.95) & (v > 0.2 + 0.3 * np.clip(u - 0.5, 0.0, 1.0)) & (v < 0.9)
    return shaft | foot


_SILHOUETTES: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _tshirt,
    _trouser,
    _pullover,
    _dress,
    _coat,
    _sandal,
    _shirt,
    _sneaker,
    _bag,
    _ankle_boot,
)


def generate_fashion_mnist(n: int, seed: int) -> ImageSet:
    """n generated 28x28x1 images of ten clothing silhouettes at random sizes and positions.

    Balanced classes; each object's tight bounding box is recorded; deterministic for a seed.
    """
    size = 28
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(rng, n, len(FASHION_CLASSES))
    radius = rng.uniform(7.5, 12.0, size=n).astype(np.float32)
    aspect = rng.uniform(0.85, 1.15, size=n).astype(np.float32)
    ry, rx = radius, radius * aspect
    cy = rng.uniform(ry, size - ry).astype(np.float32)
    cx = rng.uniform(np.minimum(rx, size / 2), np.maximum(size - rx, size / 2)).astype(np.float32)
    u, v = _local_coords((size, size), cy, cx, ry, rx)
    masks = np.zeros((n, size, size), dtype=bool)
    for class_id, silhouette in enumerate(_SILHOUETTES):
        chosen = labels == class_id
        masks[chosen] = silhouette(u[chosen], v[chosen])
    brightness = rng.uniform(0.55, 1.0, size=(n, 1, 1)).astype(np.float32)
    fabric = 1.0 - 0.2 * rng.random((n, size, size), dtype=np.float32)
    background = rng.uniform(0.0, 0.15, size=(n, 1, 1)).astype(np.float32)
    noise = 0.06 * rng.standard_normal((n, size, size), dtype=np.float32)
    images = np.where(masks, brightness * fabric, background + noise)
    images = np.clip(images, 0.0, 1.0, out=images)[..., None]
    return ImageSet(images, labels, _tight_boxes(masks), FASHION_CLASSES, "generated")


# --------------------------------------------------------------------------------------------
# Generated cats vs dogs: a class-specific head on a textured background
# --------------------------------------------------------------------------------------------
# The background (grey blotches of varying brightness, a faint tint, fine grain) is drawn the same
# way for both classes; only the object differs. A cat is a round head with pointed ears, dark
# stripes and green eyes, in cool fur (silver, blue-grey, lilac); a dog an elongated head with dark
# floppy ears and a black nose, in warm fur (tan, brown, golden). The background is neutral in hue,
# so each class has its own positive evidence (shape, texture and colour), all of it on the object:
# the seed models learn it in a few dozen steps and their heatmaps have something to point at.

_CAT_FUR = np.array([[0.45, 0.62, 1.0], [0.35, 0.5, 0.95], [0.62, 0.74, 1.0]], dtype=np.float32)
_DOG_FUR = np.array([[1.0, 0.6, 0.15], [0.92, 0.48, 0.1], [1.0, 0.76, 0.32]], dtype=np.float32)
_BACKGROUND = np.float32(0.22)
_CHUNK = 32  # images composed at a time: bounds the float32 temporaries to a few hundred MB at 300x300


def _upsample_linear(grid: np.ndarray, size: int, out: np.ndarray) -> np.ndarray:
    """Bilinear upsampling of (B, g, g, C) coarse noise to (B, size, size, C), corner-aligned.

    Rows first (small), then columns as one 2-D matmul with kron(weights, identity over channels),
    which writes the channel-last result directly: far faster than gathers or batched tiny matmuls.
    """
    count, coarse, _, channels = grid.shape
    position = np.linspace(0.0, coarse - 1.0, size, dtype=np.float32)
    weights = np.maximum(0.0, 1.0 - np.abs(position[:, None] - np.arange(coarse, dtype=np.float32)[None, :]))
    rows = np.einsum("hi,bijc->bhjc", weights, grid).reshape(count * size, coarse * channels)
    columns = np.kron(weights.T, np.eye(channels, dtype=np.float32)).astype(np.float32)  # (g*C, size*C)
    np.matmul(rows, columns, out=out.reshape(count * size, size * channels))
    return out


def _cat_parts(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fur, dark features, eyes) masks for a cat head, the head radius being 1."""
    head = u**2 + v**2 < 1.0
    ears = np.zeros_like(head)
    for side in (-1.0, 1.0):
        along = (-0.45 - v) / 1.0  # 0 at the ear's base, 1 at its tip
        centre = side * (0.55 + 0.15 * along)
        ears |= (along > 0.0) & (along < 1.0) & (np.abs(u - centre) < 0.38 * (1.0 - along))
    fur = head | ears
    stripes = fur & (np.sin(9.0 * v + 2.0 * np.abs(u)) > 0.55) & (np.abs(u) > 0.25)
    eyes = ((np.abs(u) - 0.38) ** 2 / 0.16**2 + (v + 0.1) ** 2 / 0.1**2) < 1.0
    nose = (np.abs(u) < 0.12 * (0.45 - v) / 0.2) & (v > 0.25) & (v < 0.45)
    return fur, stripes | nose, eyes & head


def _dog_parts(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fur, dark features, eyes) masks for a spotted dog head, the head half-width being 0.85."""
    head = u**2 / 0.85**2 + v**2 / 1.1**2 < 1.0
    snout = u**2 / 0.45**2 + (v - 0.75) ** 2 / 0.5**2 < 1.0
    ears = ((np.abs(u) - 0.85) ** 2 / 0.25**2 + (v - 0.1) ** 2 / 0.75**2) < 1.0
    ears &= v > -0.85
    spots = head & (np.sin(6.0 * u + 1.0) * np.sin(6.0 * v) > 0.55) & (v < 0.35)
    nose = u**2 / 0.2**2 + (v - 1.0) ** 2 / 0.13**2 < 1.0
    eyes = ((np.abs(u) - 0.3) ** 2 + (v + 0.2) ** 2) < 0.11**2
    return head | snout | ears, (ears & ~head) | spots | nose, eyes


def _compose_cats_dogs(rng: np.random.Generator, labels: np.ndarray, size: int, out: np.ndarray) -> np.ndarray:
    """Draw one chunk of images into out (B, size, size, 3), in place; return their boxes."""
    count = len(labels)
    brightness = rng.uniform(-0.1, 0.1, size=(count, 8, 8, 1)).astype(np.float32)
    blotches = brightness + rng.uniform(-0.015, 0.015, size=(count, 8, 8, 3)).astype(np.float32)
    blotches += _BACKGROUND + rng.uniform(-0.01, 0.01, size=(count, 1, 1, 3)).astype(np.float32)
    images = _upsample_linear(blotches, size, out)
    # Fine grey grain, uniform in about [-0.07, 0.07]: random bytes are the cheapest noise there is.
    grain = np.frombuffer(rng.bytes(images.size // 3), dtype=np.int8).reshape(*images.shape[:3], 1)
    images += grain * np.float32(0.07 / 128.0)
    del grain

    # The head is about 20-40% of the image wide (a cat 18-36% with its ears, a dog 20-40%). Heads span
    # v in [-1.5, 1.3] and u in [-1.2, 1.2] head radii, so they fit in a window of that size.
    width_fraction = rng.uniform(0.25, 0.4, size=count).astype(np.float32)
    radius = width_fraction * size / 2.2
    cy = rng.uniform(1.6 * radius, size - 1.45 * radius).astype(np.float32)
    cx = rng.uniform(1.2 * radius, size - 1.2 * radius).astype(np.float32)
    # Only a window around each head is drawn on: the masks cost a quarter of the full image.
    r_max = float(radius.max())
    win_h, win_w = min(size, int(np.ceil(3.1 * r_max)) + 2), min(size, int(np.ceil(2.4 * r_max)) + 2)
    top = np.clip(np.floor(cy - 1.55 * radius), 0, size - win_h).astype(np.int64)
    left = np.clip(np.floor(cx - 1.2 * radius), 0, size - win_w).astype(np.int64)
    u, v = _local_coords((win_h, win_w), cy - top, cx - left, radius, radius)

    fur = np.zeros((count, win_h, win_w), dtype=bool)
    dark = np.zeros_like(fur)
    eyes = np.zeros_like(fur)
    for class_id, parts in enumerate((_cat_parts, _dog_parts)):
        chosen = labels == class_id
        fur[chosen], dark[chosen], eyes[chosen] = parts(u[chosen], v[chosen])
    tone = rng.integers(0, 3, size=count)
    is_cat = (labels == 0)[:, None]
    fur_colour = np.where(is_cat, _CAT_FUR[tone], _DOG_FUR[tone])
    fur_colour = fur_colour + rng.uniform(-0.06, 0.06, size=(count, 3)).astype(np.float32)
    eye_colour = np.where(is_cat, [[0.35, 0.8, 0.25]], [[0.1, 0.07, 0.05]]).astype(np.float32)

    rows = top[:, None, None] + np.arange(win_h)[None, :, None]
    cols = left[:, None, None] + np.arange(win_w)[None, None, :]
    batch = np.arange(count)[:, None, None]
    window = images[batch, rows, cols]  # (B, win_h, win_w, 3)
    window = np.where(fur[..., None], fur_colour[:, None, None, :] + 0.5 * (window - _BACKGROUND), window)
    window = np.where(dark[..., None], 0.6 * window, window)
    window = np.where(eyes[..., None], eye_colour[:, None, None, :], window)
    images[batch, rows, cols] = window
    np.clip(images, 0.0, 1.0, out=images)
    return _tight_boxes(fur | dark | eyes) + np.stack([top, left, top, left], axis=1).astype(np.int32)


def generate_cats_vs_dogs(n: int, size: int, seed: int) -> ImageSet:
    """n generated size x size x 3 images of cat or dog heads on a textured background.

    Balanced classes (0 = cat, 1 = dog); each head's tight bounding box is recorded; deterministic
    for a seed. Built in chunks so that memory stays near the size of the result.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(rng, n, len(CATS_DOGS_CLASSES))
    images = np.empty((n, size, size, 3), dtype=np.float32)
    boxes = np.empty((n, 4), dtype=np.int32)
    chunk_seeds = rng.integers(0, 2**63 - 1, size=(n + _CHUNK - 1) // _CHUNK)
    for index, start in enumerate(range(0, n, _CHUNK)):
        stop = min(start + _CHUNK, n)
        chunk_rng = np.random.default_rng(chunk_seeds[index])
        boxes[start:stop] = _compose_cats_dogs(chunk_rng, labels[start:stop], size, images[start:stop])
    return ImageSet(images, labels, boxes, CATS_DOGS_CLASSES, "generated")


# --------------------------------------------------------------------------------------------
# Real loaders
# --------------------------------------------------------------------------------------------


def _fashion_cached() -> bool:
    folder = _keras_home() / "datasets" / "fashion-mnist"
    return all((folder / name).is_file() for name in _FASHION_FILES)


def _load_real_fashion(split: str, n: int) -> ImageSet:
    import keras

    (train_x, train_y), (test_x, test_y) = keras.datasets.fashion_mnist.load_data()
    x, y = (train_x, train_y) if split == "train" else (test_x, test_y)
    images = (x[:n].astype(np.float32) / 255.0)[..., None]
    return ImageSet(images, y[:n].astype(np.int64), None, FASHION_CLASSES, "keras")


def load_fashion_mnist(
    split: str = "train", n: int | None = None, source: str | None = None, seed: int | None = None
) -> ImageSet:
    """Fashion-MNIST (28x28x1, 10 classes) from keras.datasets, or generated look-alikes.

    ``n`` None means the active profile's size for the split; the real data's first n images are
    returned. ``seed`` only affects generated data (default: the course seed).
    """
    source, n, seed = _resolve(source, split, n, seed, "fashion_mnist")
    if source != "generated":
        if _fashion_cached() or _reachable(_FASHION_HOST):
            images = _load_real_fashion(split, n)
            if source == "auto":
                print(f"Fashion-MNIST: real data from keras.datasets ({len(images)} {split} images).")
            return images
        reason = (
            f"Fashion-MNIST is not in {_keras_home() / 'datasets' / 'fashion-mnist'} and {_FASHION_HOST} is unreachable"
        )
        if source == "real":
            raise DataUnavailableError(f"{reason}; use source='generated' to work offline")
        print(f"Fashion-MNIST: using generated data ({reason}).")
    return generate_fashion_mnist(n, _split_seed(seed, split))


def _folder_files(root: Path, split: str, seed: int) -> list[tuple[Path, int]]:
    """(file, label) pairs of a class-per-folder tree; root/<split>/ is used when it exists,
    otherwise a fixed 80/20 split of root's files (seeded, so train and test never overlap)."""
    split_root = root / split
    use_split_folder = split_root.is_dir()
    base = split_root if use_split_folder else root
    files: list[tuple[Path, int]] = []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        label = _FOLDER_ALIASES.get(class_dir.name.lower())
        if label is None:
            continue
        files += [(f, label) for f in sorted(class_dir.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataUnavailableError(f"{base}: no images in cat/ dog/ (or cats/ dogs/) sub-folders")
    if use_split_folder:
        return files
    order = np.random.default_rng(seed).permutation(len(files))
    cut = max(1, int(round(0.8 * len(files)))) if len(files) > 1 else 1
    chosen = order[:cut] if split == "train" else order[cut:]
    if len(chosen) == 0:
        raise DataUnavailableError(f"{root}: too few images for a {split} split")
    return [files[i] for i in sorted(chosen)]


def _load_folder(root: Path, split: str, n: int, size: int, seed: int) -> ImageSet:
    from cnnvis.images import load_image  # PIL only: keeps `import cnnvis.data` light

    files = _folder_files(root, split, seed)
    if n < len(files):
        pick = np.sort(np.random.default_rng(_split_seed(seed, split)).choice(len(files), size=n, replace=False))
        files = [files[i] for i in pick]
    images = np.empty((len(files), size, size, 3), dtype=np.float32)
    for index, (path, _) in enumerate(files):
        images[index] = load_image(path, size)
    labels = np.array([label for _, label in files], dtype=np.int64)
    return ImageSet(images, labels, None, CATS_DOGS_CLASSES, f"folder:{root}")


def _tfds_available() -> bool:
    try:
        import tensorflow_datasets  # noqa: F401  (optional: not a course dependency)
    except ImportError:
        return False
    data_dir = Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")
    return (data_dir / "cats_vs_dogs").is_dir() or _reachable(_TFDS_HOST)


def _load_tfds(split: str, n: int, size: int) -> ImageSet:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    # cats_vs_dogs has a single split of about 23k images: hold out its last 10% as the test split.
    tfds_split = "train[:90%]" if split == "train" else "train[90%:]"
    dataset = tfds.load("cats_vs_dogs", split=tfds_split, as_supervised=True).take(n)
    dataset = dataset.map(lambda x, y: (tf.image.resize(tf.cast(x, tf.float32) / 255.0, (size, size)), y))
    images, labels = [], []
    for batch_x, batch_y in dataset.batch(64):
        images.append(np.clip(batch_x.numpy(), 0.0, 1.0))
        labels.append(batch_y.numpy())
    return ImageSet(
        np.concatenate(images).astype(np.float32),
        np.concatenate(labels).astype(np.int64),
        None,
        CATS_DOGS_CLASSES,
        "tfds",
    )


def load_cats_vs_dogs(
    split: str = "train",
    n: int | None = None,
    size: int = 300,
    source: str | None = None,
    seed: int | None = None,
    folder: str | None = None,
) -> ImageSet:
    """Cats vs dogs (size x size x 3, 0 = cat, 1 = dog): a local folder, tensorflow-datasets, or generated.

    Real data is looked for in this order: ``folder`` (or $CNNVIS_CATS_DOGS_DIR), a class-per-folder
    tree of images (cat/ dog/ or cats/ dogs/, optionally under train/ and test/); then
    tensorflow-datasets' ``cats_vs_dogs`` when that package is installed and the data is cached or
    reachable. Real images are decoded as RGB, resized to size x size and scaled to [0, 1].
    """
    source, n, seed = _resolve(source, split, n, seed, "cats_vs_dogs")
    if source != "generated":
        folder = folder or os.environ.get(CATS_DOGS_DIR_ENV)
        reasons = []
        if folder:
            root = Path(folder).expanduser()
            if root.is_dir():
                images = _load_folder(root, split, n, size, seed)
                if source == "auto":
                    print(f"Cats vs dogs: real images from {root} ({len(images)} {split} images).")
                return images
            reasons.append(f"{root} is not a folder")
        else:
            reasons.append(f"no folder given (argument `folder` or ${CATS_DOGS_DIR_ENV})")
        if _tfds_available():
            images = _load_tfds(split, n, size)
            if source == "auto":
                print(f"Cats vs dogs: real data from tensorflow-datasets ({len(images)} {split} images).")
            return images
        reasons.append("tensorflow-datasets is not installed or its cats_vs_dogs data is neither cached nor reachable")
        reason = "; ".join(reasons)
        if source == "real":
            raise DataUnavailableError(f"cats vs dogs: {reason}; use source='generated' to work offline")
        print(f"Cats vs dogs: using generated data ({reason}).")
    return generate_cats_vs_dogs(n, size, _split_seed(seed, split))
