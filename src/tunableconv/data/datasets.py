"""Training and validation datasets of clean images, and a data loader factory.

Every dataset item is a dict; ``item["clean"]`` is a float32 ``(3, H, W)`` tensor in [0, 1]
(degradations are applied later, by the task). Images are decoded with
:func:`tunableconv.io.read_image` (8/16-bit, grey/colour, transparency onto white, EXIF
orientation).

* :class:`ImageFolderDataset`: random square patches from a folder of images (or a list of
  files), with random flips and 90-degree rotations, an optional in-memory cache and
  ``repeat`` to lengthen an epoch.
* :class:`ImageFolderEval`: full images (optionally centre-cropped) for validation.
* :class:`DefaultTrainingSource`: training patches that need no download: public-domain/CC0
  photos shipped inside scikit-image (when it is installed) mixed with synthetic
  dead-leaves images (:func:`dead_leaves`).
* :func:`make_dataloader`: a seeded :class:`torch.utils.data.DataLoader`, distributed-aware.
* :func:`bundled_sample_image`: one natural photo for demos.

Randomness: crops, flips and rotations are drawn from torch's random number generator, the
global one unless a ``generator`` is passed to ``sample``. Inside DataLoader workers torch
seeds that generator per worker from the loader's seed, so runs are reproducible; with
``num_workers=0`` the process's global generator is used (seed it with ``torch.manual_seed``).
"""

from __future__ import annotations

import importlib.util
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ..errors import InputError
from ..io import DEFAULT_MAX_PIXELS, _dequantize, image_size, list_images, read_image
from ..paths import resolve_dataset

__all__ = [
    "BUNDLED_PHOTOS",
    "ImageFolderDataset",
    "ImageFolderEval",
    "DefaultTrainingSource",
    "bundled_photo_paths",
    "bundled_sample_image",
    "center_crop",
    "dead_leaves",
    "make_dataloader",
    "pad_to_size",
    "random_crop",
    "random_flip_rotate",
    "seed_worker",
    "training_dataset",
]

#: Colour photos shipped inside the scikit-image wheel (no download), all public domain or
#: CC0 according to ``skimage.data``: Eileen Collins (NASA), Chelsea the cat, a cup of coffee,
#: a SpaceX rocket launch.
BUNDLED_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


# ----------------------------------------------------------------------------------------
# compact in-memory storage
# ----------------------------------------------------------------------------------------
def _compact(image: torch.Tensor) -> torch.Tensor:
    """Store an image exactly in as few bytes as possible: uint8 if it is an 8-bit image,
    uint16 if it is a 16-bit image, float32 otherwise (e.g. alpha-composited images)."""
    for max_value, dtype in ((255, torch.uint8), (65535, torch.uint16)):
        levels = torch.round(image * max_value)
        if torch.equal(_dequantize(levels, max_value), image):
            return levels.to(dtype)
    return image.to(torch.float32).clone()


def _expand(stored: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_compact`: float32 in [0, 1]."""
    if stored.dtype == torch.uint8:
        return _dequantize(stored, 255)
    if stored.dtype == torch.uint16:
        return _dequantize(stored.to(torch.int32), 65535)
    return stored.clone()


# ----------------------------------------------------------------------------------------
# crops and augmentation
# ----------------------------------------------------------------------------------------
def pad_to_size(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad a ``(C, H, W)`` image up to at least ``height x width``, centred.

    Mirror (reflect) padding where the image is large enough for it, edge replication
    otherwise; images are never upscaled, so noise level and sharpness are kept."""
    _, h, w = image.shape
    pad_h, pad_w = max(0, height - h), max(0, width - w)
    if pad_h == 0 and pad_w == 0:
        return image
    top, left = pad_h // 2, pad_w // 2
    pads = (left, pad_w - left, top, pad_h - top)
    mode = "reflect" if max(pads[2:]) < h and max(pads[:2]) < w else "replicate"
    return F.pad(image.unsqueeze(0), pads, mode=mode).squeeze(0)


def _crop_box(h: int, w: int, size: int, generator: torch.Generator | None) -> tuple[int, int]:
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator)) if h > size else 0
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator)) if w > size else 0
    return top, left


def random_crop(image: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size x size`` crop of a ``(C, H, W)`` image (padded with :func:`pad_to_size`
    where the image is smaller than ``size``)."""
    _, h, w = image.shape
    top, left = _crop_box(h, w, size, generator)
    return pad_to_size(image[:, top:top + size, left:left + size], size, size)


def random_flip_rotate(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One of the 8 flips/90-degree rotations of a ``(C, H, W)`` image, uniformly at random
    (horizontal flip, vertical flip and a 90-degree rotation, each with probability 1/2)."""
    hflip, vflip, rotate = torch.randint(0, 2, (3,), generator=generator).tolist()
    if hflip:
        image = image.flip(-1)
    if vflip:
        image = image.flip(-2)
    if rotate:
        image = torch.rot90(image, 1, (-2, -1))
    return image.contiguous()


def center_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``min(height, H) x min(width, W)`` part of a ``(C, H, W)`` image."""
    _, h, w = image.shape
    height, width = min(height, h), min(width, w)
    top, left = (h - height) // 2, (w - width) // 2
    return image[:, top:top + height, left:left + width]


# ----------------------------------------------------------------------------------------
# folders of images
# ----------------------------------------------------------------------------------------
#: Named subsets of a test folder: ``name -> (folder name, file stems)``.
#: ``bsd100-holdout``: the 32 BSD100 images that are *not* in CBSD68 (found by comparing the
#: pictures in all four rotations: BSD100 names its files img_001…, CBSD68 by BSDS id), disjoint from the training
#: set and from both denoising test sets (CBSD68, Kodak24): a validation set for choosing
#: settings without looking at the test sets.
SUBSETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bsd100-holdout": ("bsd100", ("img_023", *(f"img_{i:03d}" for i in range(70, 101)))),
}


def _image_paths(root_or_paths, data_root: str | os.PathLike | None) -> list[Path]:
    if isinstance(root_or_paths, (str, os.PathLike)):
        path = Path(root_or_paths)
        if path.is_file():
            return [path]
        if not path.is_dir() and str(root_or_paths) in SUBSETS:
            folder, stems = SUBSETS[str(root_or_paths)]
            files = {p.stem: p for p in list_images(resolve_dataset(folder, data_root))}
            missing = [s for s in stems if s not in files]
            if missing:
                raise InputError(f"subset {root_or_paths!r}: {len(missing)} images missing from {folder}, e.g. {missing[0]}")
            return [files[s] for s in stems]
        if not path.is_dir():
            path = resolve_dataset(str(root_or_paths), data_root)
        return list_images(path)
    paths = [Path(p) for p in root_or_paths]
    if not paths:
        raise InputError("no image files given")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"image file not found: {missing[0]}{more}")
    return paths


class ImageFolderDataset(Dataset):
    """Random square patches of the images in a folder, for training.

    Args:
        root_or_paths: a folder, a dataset name under the data root (``"train/bsds400"``, see
            :func:`tunableconv.paths.resolve_dataset`), one image file, or a list of files.
        patch_size: side of the square patches. Images smaller than the patch (in either
            dimension) are padded by :func:`pad_to_size` (mirror padding, edge replication
            when too small even for that), never upscaled.
        augment: random horizontal/vertical flips and 90-degree rotations.
        cache: keep decoded images in memory. Stored exactly and compactly: uint8 for 8-bit
            images, uint16 for 16-bit ones (no precision lost), float32 otherwise. The cache
            fills lazily, per process; call :meth:`preload` before creating DataLoader
            workers to decode everything once and share it with the (forked) workers.
        repeat: the epoch visits every image ``repeat`` times (``len = repeat * images``).
        min_size: skip images whose shorter side is below this (read from the headers).
        data_root: the data root for dataset names (default: see :mod:`tunableconv.paths`).
        max_pixels: refuse larger images (see :func:`tunableconv.io.read_image`).

    Item ``i`` is ``{"clean": (3, patch_size, patch_size) float32}`` cut from image
    ``i % len(self.paths)``.
    """

    def __init__(
        self,
        root_or_paths: str | os.PathLike | Iterable[str | os.PathLike],
        patch_size: int = 64,
        augment: bool = True,
        cache: bool = True,
        repeat: int = 1,
        min_size: int | None = None,
        *,
        data_root: str | os.PathLike | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        if int(patch_size) < 1:
            raise InputError(f"patch_size must be at least 1, got {patch_size}")
        if int(repeat) < 1:
            raise InputError(f"repeat must be at least 1, got {repeat}")
        self.patch_size, self.augment, self.cache, self.repeat = int(patch_size), augment, cache, int(repeat)
        self.max_pixels = max_pixels
        paths = _image_paths(root_or_paths, data_root)
        if min_size:
            paths = [p for p in paths if min(image_size(p)) >= min_size]
            if not paths:
                raise InputError(f"no image has a shorter side of at least {min_size} pixels")
        self.paths: list[Path] = paths
        self._stored: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths) * self.repeat

    def _load(self, index: int) -> torch.Tensor:
        stored = self._stored.get(index)
        if stored is None:
            image = read_image(self.paths[index], max_pixels=self.max_pixels)
            if not self.cache:
                return image
            stored = self._stored[index] = _compact(image)
        return stored

    def image(self, index: int) -> torch.Tensor:
        """The full decoded image number ``index`` (``0 <= index < len(self.paths)``), float32."""
        stored = self._load(index)
        return _expand(stored) if self.cache else stored

    def preload(self) -> ImageFolderDataset:
        """Decode every image into the cache now (no-op without ``cache``); returns self."""
        if self.cache:
            for index in range(len(self.paths)):
                self._load(index)
        return self

    def sample(self, index: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Item ``index`` with its randomness drawn from ``generator`` (global RNG if None)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        stored = self._load(index % len(self.paths))
        size = self.patch_size
        _, h, w = stored.shape
        top, left = _crop_box(h, w, size, generator)
        patch = stored[:, top:top + size, left:left + size]
        patch = pad_to_size(_expand(patch) if self.cache else patch.clone(), size, size)
        if self.augment:
            patch = random_flip_rotate(patch, generator)
        return {"clean": patch.contiguous()}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample(index)


class ImageFolderEval(Dataset):
    """Full images for validation and testing.

    Args:
        root: a folder or a dataset name under the data root (``"cbsd68"``, ``"kodak24"``,
            ``"set5/hr"``...), or a list of image files.
        max_images: use only the first ``max_images`` images (sorted by file name).
        crop: centre-crop to ``crop x crop`` (an int) or ``(height, width)``; sides that are
            already smaller are kept.
        multiple: then centre-crop height and width down to multiples of this (for networks
            that need sizes divisible by their downsampling factor).
        cache: keep the decoded images in memory (compactly, see :class:`ImageFolderDataset`).
        data_root: the data root for dataset names.
        max_pixels: refuse larger images.

    Item ``i`` is ``{"clean": (3, H, W) float32, "name": file name without extension}``.
    """

    def __init__(
        self,
        root: str | os.PathLike | Iterable[str | os.PathLike],
        max_images: int | None = None,
        crop: int | tuple[int, int] | None = None,
        *,
        multiple: int | None = None,
        cache: bool = True,
        data_root: str | os.PathLike | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        paths = _image_paths(root, data_root)
        if max_images is not None:
            if max_images < 1:
                raise InputError(f"max_images must be at least 1, got {max_images}")
            paths = paths[:max_images]
        if isinstance(crop, int):
            crop = (crop, crop)
        if crop is not None and min(crop) < 1:
            raise InputError(f"crop must be positive, got {crop}")
        if multiple is not None and multiple < 1:
            raise InputError(f"multiple must be at least 1, got {multiple}")
        self.paths: list[Path] = paths
        self.crop, self.multiple, self.cache, self.max_pixels = crop, multiple, cache, max_pixels
        self._stored: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        if self.crop is not None:
            image = center_crop(image, *self.crop)
        if self.multiple:
            _, h, w = image.shape
            m = self.multiple
            if h < m or w < m:
                raise InputError(f"an image of {h}x{w} pixels has no part of a multiple of {m} pixels")
            image = center_crop(image, h - h % m, w - w % m)
        return image.contiguous()

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        name = self.paths[index].stem
        if not self.cache:
            return {"clean": self._prepare(read_image(self.paths[index], max_pixels=self.max_pixels)), "name": name}
        stored = self._stored.get(index)
        if stored is None:
            image = read_image(self.paths[index], max_pixels=self.max_pixels)
            stored = self._stored[index] = _compact(self._prepare(image))
        return {"clean": _expand(stored), "name": name}


# ----------------------------------------------------------------------------------------
# bundled photos and synthetic images
# ----------------------------------------------------------------------------------------
def bundled_photo_paths() -> list[Path]:
    """The :data:`BUNDLED_PHOTOS` present on disk inside the installed scikit-image package
    (found without importing it); empty when scikit-image is not installed."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin:
        return []
    folder = Path(spec.origin).parent / "data"
    return [folder / name for name in BUNDLED_PHOTOS if (folder / name).is_file()]


def _paint_discs(label: torch.Tensor, h: int, w: int, cy: torch.Tensor, cx: torch.Tensor,
                 radius: torch.Tensor, first_index: int) -> None:
    """Write into the flat ``label`` map (length h*w) the smallest disc index covering each
    pixel. Discs are grouped by radius so each group is rasterised on a small square stencil."""
    index = torch.arange(first_index, first_index + radius.numel())
    need = radius.ceil().clamp(min=1)
    low = 0
    bound = 1
    while low < float(need.max()):
        chosen = (need > low) & (need <= bound)
        if chosen.any():
            offsets = torch.arange(-bound, bound + 1)
            cy_b, cx_b, r_b = cy[chosen], cx[chosen], radius[chosen]
            py = (cy_b.round().long()[:, None, None] + offsets[None, :, None]).expand(-1, -1, offsets.numel())
            px = (cx_b.round().long()[:, None, None] + offsets[None, None, :]).expand(-1, offsets.numel(), -1)
            inside = ((py - cy_b[:, None, None]) ** 2 + (px - cx_b[:, None, None]) ** 2) <= (r_b ** 2)[:, None, None]
            inside &= (py >= 0) & (py < h) & (px >= 0) & (px < w)
            owner = index[chosen][:, None, None].expand_as(py)
            label.scatter_reduce_(0, (py * w + px)[inside], owner[inside], reduce="amin")
        low, bound = bound, bound * 2


def dead_leaves(
    size: int | tuple[int, int],
    generator: torch.Generator | None = None,
    *,
    alpha: float = 3.0,
    r_min: float = 1.0,
    r_max: float | None = None,
    max_discs: int = 200_000,
) -> torch.Tensor:
    """A synthetic dead-leaves image: occluding discs of random colours.

    Disc centres are uniform over the image, radii follow the power law
    ``p(r) ~ r^-alpha`` on ``[r_min, r_max]`` (alpha = 3 gives the scale-invariant statistics
    of natural images), colours are uniform in RGB; earlier discs lie on top. Discs are drawn
    until every pixel is covered (or ``max_discs`` is reached: uncovered pixels then keep a
    random background colour). The same generator state gives the same image.

    Args:
        size: side of a square image, or ``(height, width)``.
        generator: random numbers (torch's global generator if None).
        alpha, r_min, r_max: the radius distribution, in pixels; ``r_max`` defaults to half
            the longer side.
        max_discs: the most discs drawn.

    Returns:
        ``(3, height, width)`` float32 tensor in [0, 1].
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise InputError(f"dead_leaves size must be positive, got {size}")
    r_max = float(r_max) if r_max is not None else max(h, w) / 2
    r_min = max(0.5, min(float(r_min), r_max))
    background = torch.rand(3, generator=generator)
    uncovered = torch.iinfo(torch.long).max
    label = torch.full((h * w,), uncovered, dtype=torch.long)
    chunk = max(256, min(16384, h * w // 4))
    colours = []
    drawn = 0
    a = 1.0 - alpha
    while drawn < max_discs and bool((label == uncovered).any()):
        n = min(chunk, max_discs - drawn)
        u = torch.rand(n, 3, generator=generator)
        colours.append(torch.rand(n, 3, generator=generator))
        if abs(a) < 1e-8:
            radius = r_min * (r_max / r_min) ** u[:, 2]
        else:
            radius = (r_min ** a + u[:, 2] * (r_max ** a - r_min ** a)) ** (1.0 / a)
        _paint_discs(label, h, w, u[:, 0] * h - 0.5, u[:, 1] * w - 0.5, radius, drawn)
        drawn += n
    palette = torch.cat(colours + [background[None]], 0)
    label[label == uncovered] = palette.shape[0] - 1
    return palette[label].view(h, w, 3).permute(2, 0, 1).contiguous()


def bundled_sample_image(name: str | None = None) -> torch.Tensor:
    """One natural photo shipped with a dependency, as ``(3, H, W)`` float32 in [0, 1].

    ``name`` is one of :data:`BUNDLED_PHOTOS` (with or without extension); default the first
    available (the astronaut). Without scikit-image a seeded 512x512 dead-leaves image is
    returned instead, so demos still run."""
    paths = bundled_photo_paths()
    if name is not None:
        wanted = [p for p in paths if name in (p.name, p.stem)]
        if not wanted:
            if any(name in (n, n.rsplit(".", 1)[0]) for n in BUNDLED_PHOTOS):
                raise InputError(f"bundled photo {name!r} is not available (install scikit-image)")
            raise InputError(f"unknown bundled photo {name!r} (one of {', '.join(BUNDLED_PHOTOS)})")
        paths = wanted
    if paths:
        return read_image(paths[0])
    return dead_leaves(512, torch.Generator().manual_seed(0))


class DefaultTrainingSource(Dataset):
    """Training patches without any download: bundled photos and dead-leaves images.

    Each item is, with probability ``photo_share``, a random crop (with flips/rotations if
    ``augment``) of one of the photos of :func:`bundled_photo_paths`, and otherwise a fresh
    dead-leaves image of ``patch_size`` (:func:`dead_leaves`). Without scikit-image every
    item is dead leaves. Items are random draws: the index only counts the epoch (``length``
    items). Same dict format as :class:`ImageFolderDataset`.
    """

    def __init__(
        self,
        patch_size: int = 64,
        length: int = 1000,
        augment: bool = True,
        photo_share: float = 0.5,
        use_photos: bool = True,
    ) -> None:
        if int(patch_size) < 1 or int(length) < 1:
            raise InputError(f"patch_size and length must be at least 1, got {patch_size}, {length}")
        if not 0.0 <= photo_share <= 1.0:
            raise InputError(f"photo_share must be in [0, 1], got {photo_share}")
        self.patch_size, self.length, self.augment = int(patch_size), int(length), augment
        self.photo_paths = bundled_photo_paths() if use_photos else []
        self.photos = [_compact(read_image(p)) for p in self.photo_paths]
        self.photo_share = photo_share if self.photos else 0.0

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Item ``index`` with its randomness drawn from ``generator`` (global RNG if None)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        if self.photos and float(torch.rand((), generator=generator)) < self.photo_share:
            photo = self.photos[int(torch.randint(len(self.photos), (1,), generator=generator))]
            patch = random_crop(_expand(photo), self.patch_size, generator)
            if self.augment:
                patch = random_flip_rotate(patch, generator)
        else:
            patch = dead_leaves(self.patch_size, generator)
        return {"clean": patch.contiguous()}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.sample(index)


def training_dataset(
    spec: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    data_root: str | os.PathLike | None = None,
    patch_size: int = 64,
    augment: bool = True,
    cache: bool = True,
    repeat: int = 1,
    length: int = 1000,
) -> ImageFolderDataset | DefaultTrainingSource:
    """The training set named by a config value: ``"default"`` gives a
    :class:`DefaultTrainingSource` of ``length`` items, anything else (a folder, a dataset
    name under the data root, a list of files) an :class:`ImageFolderDataset`."""
    if isinstance(spec, str) and spec == "default":
        return DefaultTrainingSource(patch_size, length=length, augment=augment)
    return ImageFolderDataset(spec, patch_size, augment=augment, cache=cache, repeat=repeat, data_root=data_root)


# ----------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------
def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python's and NumPy's generators from the torch
    seed that the DataLoader gave this worker (torch's own is already seeded)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = True,
    *,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A seeded DataLoader.

    The loader's generator is seeded with ``seed``: it fixes the shuffling order and the
    per-worker torch seeds, so two loaders with the same seed (and the same number of
    workers) give the same batches. Workers are persistent when ``num_workers > 0``.

    With ``distributed``, a :class:`DistributedSampler` (seeded with ``seed``) gives each
    process its share; rank and world size come from :mod:`torch.distributed` when it is
    initialised, else from the ``RANK`` / ``WORLD_SIZE`` environment variables (torchrun),
    else 0 and 1. Call ``loader.sampler.set_epoch(epoch)`` every epoch for a new order.

    ``pin_memory`` defaults to whether CUDA is available.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise InputError(f"num_workers must be at least 0, got {num_workers}")
    sampler = None
    if distributed:
        rank, world = _rank_and_world()
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    items = len(sampler) if sampler is not None else len(dataset)
    if drop_last and items < batch_size:
        raise InputError(
            f"only {items} samples for a batch size of {batch_size}: no full batch "
            f"(use repeat, a smaller batch size or drop_last=False)"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )
