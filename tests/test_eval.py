""":mod:`tunableconv.tasks.denoise_protocol`, the frozen denoising protocol of the ablation and the
previous ``compare`` (their cached evaluations use this format): tiny random models, three small images. The command line
``tunableconv eval`` runs the task-agnostic :mod:`tunableconv.evaluation` (tests/test_evaluation.py)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tunableconv.tasks.denoise_protocol import add_noise, evaluate, noise_seed, results_markdown, write_report
from tunableconv.models import ResNet, ResNetConfig, load_model, save_model
from tunableconv.tasks import NOISE_KNOBS

SIGMAS = [15.0, 50.0]
GRID = [0.0, 0.5, 1.0]


def _smooth_image(rng: np.random.Generator, h: int = 40, w: int = 48) -> np.ndarray:
    small = rng.random((5, 6, 3))
    big = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    return big


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    images = root / "tiny"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(_smooth_image(rng)).save(images / f"img{i}.png")
    torch.manual_seed(0)
    tunable = save_model(ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2)), root / "tunable.safetensors",
                         knobs=NOISE_KNOBS, info={"task": "denoise", "strength": "p = (s, 1 - s)", "beta": 0.9})
    plain = save_model(ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=0)), root / "plain.safetensors",
                       info={"task": "denoise", "beta": 0.9})
    return {"root": root, "images": images, "tunable": tunable, "plain": plain}


@pytest.fixture(scope="module")
def cli_run(setup):
    out = setup["root"] / "out"
    res = evaluate(str(setup["tunable"]), str(setup["images"]), "15,50", "0,0.5,1", reference=str(setup["plain"]),
                   progress=False, command=f"tunableconv eval --model {setup['tunable']}")
    write_report(res, out)
    return out, json.loads((out / "results.json").read_text())


def test_outputs_and_structure(cli_run, setup):
    out, res = cli_run
    assert (out / "results.md").is_file() and (out / "psnr_vs_p.png").stat().st_size > 1000
    assert res["format"] == "tunableconv-eval/1"
    assert res["command"].startswith("tunableconv eval --model ")
    assert res["model"]["info"]["beta"] == 0.9 and res["model"]["num_params"] == 2 and res["model"]["tunable"]
    assert res["model"]["file"] == str(setup["tunable"]) and len(res["model"]["sha256"]) == 64
    assert res["reference"]["num_params"] == 0 and not res["reference"]["tunable"]
    assert res["environment"]["torch"] == torch.__version__ and res["environment"]["num_threads"] >= 1
    assert res["wall_seconds"] > 0
    assert res["settings"]["sigmas"] == SIGMAS and res["settings"]["grid"] == GRID
    assert list(res["datasets"]) == ["tiny"]
    ds = res["datasets"]["tiny"]
    assert ds["num_images"] == 3 and ds["images"] == ["img0", "img1", "img2"]
    assert list(ds["sigma"]) == ["15", "50"]
    for v in ds["sigma"].values():
        m, r = v["model"], v["reference"]
        assert m["s"] == GRID and m["p"] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
        for key in ("psnr_gt", "psnr_target", "ssim_gt"):
            assert len(m[key]) == 3 and all(math.isfinite(x) for x in m[key])
            assert len(m["per_image"][key]) == 3 and len(m["per_image"][key][0]) == 3
            assert r["s"] == [None] and len(r[key]) == 1
        # the gap at full strength: tunable at s = 1 minus the reference
        assert v["gap"]["s"] == 1.0
        assert v["gap"]["psnr_gt"] == pytest.approx(m["psnr_gt"][-1] - r["psnr_gt"][0])
        # evenness of a (random) tunable model: a finite number, about in [0, 1]
        assert 0.0 <= m["evenness"] <= 1.5 and len(m["evenness_d"]) == 3
        assert m["evenness_d"][0] == 0.0 and m["evenness_d"][-1] == pytest.approx(1.0)
        assert r["evenness"] is None
    assert res["gap_summary"]["s"] == 1.0 and math.isfinite(res["gap_summary"]["mean_psnr_gt"])
    md = (out / "results.md").read_text()
    assert "| tiny | 15 |" in md and "s=0.5" in md and " / " in md
    assert "SSIM" in md and "Evenness" in md and "Reference gap (tunable at s = 1 minus plain" in md
    assert "| s=0 | s=0.5 | s=1 | ref: plain |" in md


def test_psnr_matches_skimage(cli_run, setup):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    _, res = cli_run
    index, sigma, j, s = 1, 50.0, 1, 0.5
    clean_u8 = np.array(Image.open(setup["images"] / "img1.png").convert("RGB"))
    clean = torch.from_numpy(clean_u8).permute(2, 0, 1).float() / 255.0
    noisy = add_noise(clean, sigma, seed=0, dataset="tiny", index=index)
    # the noise itself, independently: seeded generator, N(0, 1) * sigma / 255
    g = torch.Generator().manual_seed(noise_seed(0, "tiny", index, sigma))
    assert torch.equal(noisy, clean + sigma / 255.0 * torch.randn(clean.shape, generator=g))
    model, _ = load_model(setup["tunable"])
    with torch.no_grad():
        out = model(noisy[None], torch.tensor([s, 1 - s]))[0]
    out = np.round(np.clip(out.permute(1, 2, 0).numpy().astype(np.float64), 0, 1) * 255) / 255
    gt = clean_u8.astype(np.float64) / 255
    target = gt + 0.9 * (noisy.permute(1, 2, 0).numpy().astype(np.float64) - gt)
    m = res["datasets"]["tiny"]["sigma"]["50"]["model"]["per_image"]
    assert m["psnr_gt"][index][j] == pytest.approx(peak_signal_noise_ratio(gt, out, data_range=1.0), abs=1e-3)
    assert m["psnr_target"][index][j] == pytest.approx(peak_signal_noise_ratio(target, out, data_range=1.0), abs=1e-3)
    ref_ssim = structural_similarity(gt, out, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert m["ssim_gt"][index][j] == pytest.approx(ref_ssim, abs=1e-4)
    # the dataset mean is the mean of the per-image values
    mean = res["datasets"]["tiny"]["sigma"]["50"]["model"]["psnr_gt"][j]
    assert mean == pytest.approx(np.mean([row[j] for row in m["psnr_gt"]]))


def test_noise_is_seeded_and_shared(cli_run, setup):
    _, res = cli_run
    clean = torch.rand(3, 8, 8)
    a, b = add_noise(clean, 25, 0, "tiny", 2), add_noise(clean, 25, 0, "tiny", 2)
    assert torch.equal(a, b)
    for other in (add_noise(clean, 25, 1, "tiny", 2), add_noise(clean, 25, 0, "tinx", 2),
                  add_noise(clean, 25, 0, "tiny", 1), add_noise(clean, 15, 0, "tiny", 2)):
        assert not torch.equal(a, other)
    # another run, the plain model alone (library call, no reference, no grid): it sees the
    # same noisy images as when it was the reference of the first run -> identical metrics
    res2 = evaluate(str(setup["plain"]), [str(setup["images"])], SIGMAS, GRID, progress=False)
    for sig in ("15", "50"):
        plain2 = res2["datasets"]["tiny"]["sigma"][sig]["model"]
        assert plain2["s"] == [None] and plain2["evenness"] is None
        assert plain2["per_image"] == res["datasets"]["tiny"]["sigma"][sig]["reference"]["per_image"]
    assert res2["settings"]["grid"] is None and res2["reference"] is None
    assert "fixed" in results_markdown(res2)
    # a model compared with itself: gap exactly 0 (same noise for both)
    res3 = evaluate(str(setup["tunable"]), str(setup["images"]), [25], [0, 1], reference=str(setup["tunable"]),
                    max_images=1, crop=32, progress=False)
    gap = res3["datasets"]["tiny"]["sigma"]["25"]["gap"]
    assert gap["psnr_gt"] == 0.0 and gap["ssim_gt"] == 0.0
    assert res3["datasets"]["tiny"]["sigma"]["25"]["reference"]["s"] == [1.0]  # tunable reference: s = 1 only


def test_calibration_used_unless_raw(setup):
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2))
    path = save_model(model, setup["root"] / "calibrated.safetensors", knobs=NOISE_KNOBS,
                      info={"task": "denoise", "strength": "p = (s, 1 - s)", "beta": 0.5,
                            "calibration": {"slider": [0, 0.5, 1], "raw": [0, 0.8, 1]}})
    kw = dict(datasets=str(setup["images"]), sigmas="25", grid="0,0.5,1", max_images=1, crop=24, progress=False)
    cal, raw = evaluate(str(path), **kw), evaluate(str(path), raw=True, **kw)
    assert cal["settings"]["calibrated"] and not raw["settings"]["calibrated"] and raw["settings"]["raw"]
    assert cal["settings"]["beta"] == 0.5
    assert cal["datasets"]["tiny"]["sigma"]["25"]["model"]["p"][1] == [0.8, 0.2]
    assert raw["datasets"]["tiny"]["sigma"]["25"]["model"]["p"][1] == [0.5, 0.5]


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"datasets": "no-such-dataset"}, "no-such-dataset"),
        ({"sigmas": "15,abc"}, "sigma must be comma-separated numbers"),
        ({"sigmas": "-5"}, "sigma must be >= 0"),
        ({"grid": "0,0.5,1.5"}, "[0, 1]"),
        ({"grid": "-0.1,1"}, "[0, 1]"),
        ({"model": "no-such-model"}, "unknown model"),
        ({"max_images": 0}, "at least 1"),
    ],
)
def test_bad_inputs_give_one_line_errors(kwargs, msg, setup):
    from tunableconv.errors import InputError

    base = {"model": str(setup["tunable"]), "datasets": str(setup["images"]), "sigmas": "15", "grid": "0,1"}
    base.update(kwargs)
    with pytest.raises(InputError) as err:
        evaluate(base.pop("model"), base.pop("datasets"), base.pop("sigmas"), base.pop("grid"), progress=False,
                 data_root=str(setup["root"]), **base)
    assert msg in str(err.value) and "\n" not in str(err.value)


def test_no_ssim_gives_the_same_psnr_and_no_ssim(cli_run, setup):
    _, full = cli_run
    res = evaluate(str(setup["tunable"]), str(setup["images"]), "15,50", "0,0.5,1", compute_ssim=False, progress=False)
    assert res["settings"]["ssim"] is False and full["settings"]["ssim"] is True
    for sig in ("15", "50"):
        a, b = res["datasets"]["tiny"]["sigma"][sig]["model"], full["datasets"]["tiny"]["sigma"][sig]["model"]
        assert a["psnr_gt"] == b["psnr_gt"] and a["evenness"] == b["evenness"]
        assert all(math.isnan(v) for v in a["ssim_gt"])
