"""Datasets: crops, padding, augmentation, caching, loaders, bundled and synthetic sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data.distributed import DistributedSampler

import tunableconv.data.datasets as datasets
from tunableconv.data import (
    DefaultTrainingSource,
    ImageFolderDataset,
    ImageFolderEval,
    bundled_photo_paths,
    bundled_sample_image,
    dead_leaves,
    make_dataloader,
    pad_to_size,
    random_crop,
    random_flip_rotate,
    training_dataset,
)
from tunableconv.errors import InputError
from tunableconv.io import read_image
from tunableconv.paths import resolve_dataset


def write_rgb(path, h, w, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


@pytest.fixture
def folder(tmp_path):
    write_rgb(tmp_path / "a.png", 40, 50, 1)
    write_rgb(tmp_path / "b.jpg", 33, 70, 2)
    write_rgb(tmp_path / "c.tif", 64, 48, 3)
    return tmp_path


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(x, k, (-2, -1))
        out += [r, r.flip(-1)]
    return out


# ----------------------------------------------------------------------------------------
# crops and augmentation
# ----------------------------------------------------------------------------------------
def test_crops_have_patch_shape(folder):
    ds = ImageFolderDataset(folder, patch_size=32)
    assert len(ds) == 3
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"clean"}
        x = item["clean"]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_crop_is_a_part_of_the_image(folder):
    ds = ImageFolderDataset(folder / "a.png", patch_size=16, augment=False)
    image = read_image(folder / "a.png")
    patch = ds[0]["clean"]
    windows = image.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, H-15, W-15, 16, 16)
    matches = (windows == patch[:, None, None]).all(-1).all(-1).all(0)
    assert bool(matches.any())


def test_images_smaller_than_the_patch(tmp_path):
    write_rgb(tmp_path / "tiny.png", 10, 7)
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tmp_path / "one.png")
    write_rgb(tmp_path / "thin.png", 3, 100)
    ds = ImageFolderDataset(tmp_path, patch_size=32)
    for i in range(len(ds)):
        assert ds[i]["clean"].shape == (3, 32, 32)
    one = ImageFolderDataset(tmp_path / "one.png", patch_size=8)[0]["clean"]
    assert one[0].eq(1).all() and one[1:].eq(0).all()  # replicated


def test_pad_to_size_reflects_or_replicates():
    x = torch.arange(12.0).view(1, 3, 4)
    padded = pad_to_size(x, 5, 4)  # one row each side: reflect
    assert padded.shape == (1, 5, 4)
    assert torch.equal(padded[0, 0], x[0, 1]) and torch.equal(padded[0, 4], x[0, 1])
    far = pad_to_size(x, 11, 4)  # too small to reflect: replicate
    assert torch.equal(far[0, 0], x[0, 0]) and torch.equal(far[0, -1], x[0, -1])
    assert pad_to_size(x, 2, 2) is x


def test_flips_and_rotations_keep_content():
    x = torch.rand(3, 8, 8)
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(64):
        y = random_flip_rotate(x, g)
        assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)
        seen.add(next(i for i, d in enumerate(dihedral(x)) if torch.equal(d, y)))
    assert seen == set(range(8))


def test_dataset_patch_is_a_dihedral_copy(tmp_path):
    write_rgb(tmp_path / "s.png", 16, 16)
    image = read_image(tmp_path / "s.png")
    ds = ImageFolderDataset(tmp_path, patch_size=16, repeat=20)
    for i in range(len(ds)):
        patch = ds[i]["clean"]
        assert any(torch.equal(patch, d) for d in dihedral(image))


def test_random_crop_with_generator_is_reproducible():
    x = torch.rand(3, 50, 60)
    a = random_crop(x, 20, torch.Generator().manual_seed(5))
    b = random_crop(x, 20, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (3, 20, 20)


# ----------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------
def test_cache_returns_identical_decoded_images(folder):
    ds = ImageFolderDataset(folder, patch_size=16)
    for i, path in enumerate(ds.paths):
        assert torch.equal(ds.image(i), read_image(path))
        assert ds._stored[i].dtype == torch.uint8  # 8-bit images kept as uint8
        assert torch.equal(ds.image(i), read_image(path))  # second time, from the cache


def test_cache_keeps_16bit_and_composited_images_exact(tmp_path):
    a = np.array([[0, 1, 32768, 65535]] * 3, dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    rgba = Image.new("RGBA", (4, 3), (10, 20, 30, 100))
    rgba.save(tmp_path / "rgba.png")
    ds = ImageFolderDataset(tmp_path, patch_size=4).preload()
    dtypes = {p.name: ds._stored[i].dtype for i, p in enumerate(ds.paths)}
    assert dtypes == {"g16.png": torch.uint16, "rgba.png": torch.float32}
    for i, path in enumerate(ds.paths):
        assert torch.equal(ds.image(i), read_image(path))


def test_cache_on_and_off_give_the_same_patches(folder):
    cached = ImageFolderDataset(folder, patch_size=24)
    uncached = ImageFolderDataset(folder, patch_size=24, cache=False)
    for i in range(3):
        a = cached.sample(i, torch.Generator().manual_seed(i))["clean"]
        b = uncached.sample(i, torch.Generator().manual_seed(i))["clean"]
        assert torch.equal(a, b)
    assert uncached._stored == {}


def test_repeat_min_size_and_errors(folder, tmp_path):
    assert len(ImageFolderDataset(folder, repeat=4)) == 12
    assert [p.name for p in ImageFolderDataset(folder, min_size=40).paths] == ["a.png", "c.tif"]
    with pytest.raises(InputError, match="shorter side"):
        ImageFolderDataset(folder, min_size=1000)
    with pytest.raises(IndexError):
        ImageFolderDataset(folder)[3]
    with pytest.raises(InputError):
        ImageFolderDataset(folder, patch_size=0)
    with pytest.raises(InputError, match="not found"):
        ImageFolderDataset([folder / "a.png", folder / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    files = ImageFolderDataset([folder / "c.tif", folder / "a.png"])
    assert [p.name for p in files.paths] == ["c.tif", "a.png"]


# ----------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------
def batches(loader, n):
    out = []
    for batch in loader:
        out.append(batch["clean"])
        if len(out) == n:
            break
    return out


def test_dataloader_with_two_workers_is_seeded(folder):
    ds = ImageFolderDataset(folder, patch_size=16, repeat=4).preload()
    first = batches(make_dataloader(ds, batch_size=4, num_workers=2, seed=7), 3)
    again = batches(make_dataloader(ds, batch_size=4, num_workers=2, seed=7), 3)
    other = batches(make_dataloader(ds, batch_size=4, num_workers=2, seed=8), 3)
    assert len(first) == 3 and first[0].shape == (4, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_dataloader_in_process_and_checks(folder):
    ds = ImageFolderDataset(folder, patch_size=8)
    loader = make_dataloader(ds, batch_size=2, num_workers=0, shuffle=False)
    assert len(loader) == 1 and next(iter(loader))["clean"].shape == (2, 3, 8, 8)
    with pytest.raises(InputError, match="no full batch"):
        make_dataloader(ds, batch_size=4)
    assert len(make_dataloader(ds, batch_size=4, drop_last=False)) == 1


def test_dataloader_distributed_shares(folder, monkeypatch):
    ds = ImageFolderDataset(folder, patch_size=8, repeat=4)  # 12 items
    monkeypatch.setenv("WORLD_SIZE", "2")
    shares = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        loader = make_dataloader(ds, batch_size=2, distributed=True, seed=3)
        assert isinstance(loader.sampler, DistributedSampler)
        assert loader.sampler.num_replicas == 2 and loader.sampler.rank == rank
        shares.append(set(loader.sampler))
        assert len(loader) == 3
    assert shares[0].isdisjoint(shares[1]) and len(shares[0] | shares[1]) == 12


# ----------------------------------------------------------------------------------------
# validation sets
# ----------------------------------------------------------------------------------------
def test_eval_dataset(folder):
    ev = ImageFolderEval(folder)
    assert len(ev) == 3
    item = ev[0]
    assert item["name"] == "a" and item["clean"].shape == (3, 40, 50)
    assert torch.equal(item["clean"], read_image(folder / "a.png"))
    assert torch.equal(ev[0]["clean"], item["clean"])  # cached copy
    assert len(ImageFolderEval(folder, max_images=2)) == 2
    cropped = ImageFolderEval(folder, crop=36)
    assert [cropped[i]["clean"].shape for i in range(3)] == [(3, 36, 36), (3, 33, 36), (3, 36, 36)]
    full = read_image(folder / "a.png")
    assert torch.equal(cropped[0]["clean"], full[:, 2:38, 7:43])  # centred
    multiple = ImageFolderEval(folder, multiple=16, cache=False)
    assert [multiple[i]["clean"].shape for i in range(3)] == [(3, 32, 48), (3, 32, 64), (3, 64, 48)]


# ----------------------------------------------------------------------------------------
# bundled and synthetic sources
# ----------------------------------------------------------------------------------------
def test_dead_leaves_is_seeded():
    a = dead_leaves(48, torch.Generator().manual_seed(1))
    b = dead_leaves(48, torch.Generator().manual_seed(1))
    c = dead_leaves(48, torch.Generator().manual_seed(2))
    assert a.shape == (3, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert a.flatten(1).unique(dim=1).shape[1] > 20  # many discs
    assert dead_leaves((20, 36)).shape == (3, 20, 36)


def test_dead_leaves_matches_dense_rendering():
    g = torch.Generator().manual_seed(0)
    h, w, n = 21, 30, 200
    cy, cx = torch.rand(n, generator=g) * h - 0.5, torch.rand(n, generator=g) * w - 0.5
    radius = torch.rand(n, generator=g) ** 3 * 25 + 0.5
    empty = torch.iinfo(torch.long).max
    label = torch.full((h * w,), empty)
    datasets._paint_discs(label, h, w, cy, cx, radius, 10)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    covered = (ys - cy[:, None, None]) ** 2 + (xs - cx[:, None, None]) ** 2 <= (radius**2)[:, None, None]
    expected = torch.where(covered.any(0), covered.to(torch.uint8).argmax(0) + 10, torch.tensor(empty))
    assert torch.equal(label, expected.flatten())


def test_default_source_without_any_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNABLECONV_DATA", str(tmp_path / "nowhere"))
    source = DefaultTrainingSource(patch_size=32, length=10)
    assert len(source) == 10
    for i in range(len(source)):
        x = source[i]["clean"]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    a = source.sample(0, torch.Generator().manual_seed(3))["clean"]
    assert torch.equal(a, source.sample(0, torch.Generator().manual_seed(3))["clean"])
    assert isinstance(training_dataset("default", patch_size=16), DefaultTrainingSource)


def test_default_source_falls_back_to_synthetic(monkeypatch):
    monkeypatch.setattr(datasets, "bundled_photo_paths", lambda: [])
    source = DefaultTrainingSource(patch_size=16, length=4)
    assert source.photos == [] and source.photo_share == 0.0
    assert source[0]["clean"].shape == (3, 16, 16)
    assert bundled_sample_image().shape == (3, 512, 512)  # dead leaves stand-in


def test_default_source_uses_bundled_photos():
    if not bundled_photo_paths():
        pytest.skip("scikit-image is not installed: no bundled photos")
    source = DefaultTrainingSource(patch_size=16, length=4, photo_share=1.0)
    assert len(source.photos) >= 1
    assert source[0]["clean"].shape == (3, 16, 16)
    image = bundled_sample_image()
    assert image.dim() == 3 and image.shape[0] == 3 and min(image.shape[1:]) >= 256
    coffee = next(p for p in bundled_photo_paths() if p.stem == "coffee")
    assert torch.equal(bundled_sample_image("coffee"), read_image(coffee))
    with pytest.raises(InputError, match="unknown"):
        bundled_sample_image("lena")


# ----------------------------------------------------------------------------------------
# the shared training data
# ----------------------------------------------------------------------------------------
def test_bsds400_loads():
    try:
        root = resolve_dataset("train/bsds400")
    except InputError as err:
        pytest.skip(f"shared training data not available: {err}")
    ds = ImageFolderDataset(root, patch_size=64)
    assert len(ds) == 399
    assert sorted(ds.image(0).shape[1:]) == [321, 481]
    assert ds[5]["clean"].shape == (3, 64, 64)
    assert len(ImageFolderDataset("train/bsds400", patch_size=64)) == 399


def test_bsd100_holdout_shares_no_picture_with_cbsd68():
    """The validation subset really is disjoint from the CBSD68 test set (compared by content)."""
    try:
        cbsd = ImageFolderEval("cbsd68")
        hold = ImageFolderEval("bsd100-holdout")
    except InputError as err:
        pytest.skip(f"shared test data not available: {err}")
    assert len(hold) == 32 and len(cbsd) == 68

    def thumbs(x):  # grey 40 x 60 thumbnails of the landscape rotations
        g = x.mean(0)
        rots = [torch.rot90(g, k, (0, 1)) for k in range(4)]
        return [torch.nn.functional.interpolate(r[None, None], size=(40, 60), mode="area")[0, 0]
                for r in rots if r.shape[-1] >= r.shape[-2]]

    def thumb(x):
        return thumbs(x)[0]

    def nearest(x, bank):
        return min(float((x - b).abs().mean()) for b in bank)

    bank = [t for i in range(len(cbsd)) for t in thumbs(cbsd[i]["clean"])]
    assert all(nearest(thumb(hold[i]["clean"]), bank) > 0.05 for i in range(len(hold)))
    # the check sees a shared picture, also a rotated one: BSD100 img_001 and img_068 are in CBSD68
    b100 = ImageFolderEval("bsd100")
    for name in ("img_001", "img_068"):
        assert nearest(thumb(b100[[p.stem for p in b100.paths].index(name)]["clean"]), bank) < 0.02
    with pytest.raises(InputError, match="neither a folder"):
        ImageFolderEval("bsd101-holdout")
