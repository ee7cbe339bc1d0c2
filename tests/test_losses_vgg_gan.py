"""VGG19 feature extractor (weight loading, layer naming), perceptual and adversarial objectives."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tunableconv import InputError, MissingWeightsError
from tunableconv.losses import (
    VGG19_LAYERS,
    AdversarialObjective,
    MultiScaleDiscriminator,
    PerceptualObjective,
    VGG19Features,
    ragan_discriminator_loss,
    ragan_generator_loss,
)
from tunableconv.losses.vgg import VGG19_CONVS, find_torchvision_vgg19

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _normalised_file():
    from tunableconv.paths import weights_root

    try:
        path = weights_root() / "vgg19_normalised_relu3_1.safetensors"
    except InputError:
        pytest.skip("no shared weights folder on this machine")
    if not path.is_file():
        pytest.skip("shared normalised VGG19 file absent")
    return path


def _torchvision_state_dict(upto: int = 16):
    """A random state dict in torchvision's ``vgg19().state_dict()`` layout (first ``upto`` convs)."""
    sd = {}
    cin = 3
    for n in VGG19_CONVS[:upto]:
        i = VGG19_LAYERS.index(n)
        cout = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}[n[4]]
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(cout) * 0.01
        cin = cout
    sd["classifier.0.weight"] = torch.randn(4, 7)  # ignored
    sd["classifier.0.bias"] = torch.randn(4)
    return sd


def _reference_features(sd, x, upto_index):
    """Plain torchvision-style VGG: ImageNet normalisation, zero padding, in-place-free."""
    h = (x - _MEAN) / _STD
    out = {}
    for i, name in enumerate(VGG19_LAYERS[: upto_index + 1]):
        if name.startswith("conv"):
            h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
        elif name.startswith("relu"):
            h = F.relu(h)
        else:
            h = F.max_pool2d(h, 2)
        out[name] = h
    return out


def test_layer_table_matches_torchvision_indices():
    assert len(VGG19_LAYERS) == 37 and len(VGG19_CONVS) == 16
    idx = {n: i for i, n in enumerate(VGG19_LAYERS)}
    assert (idx["conv1_1"], idx["relu1_1"], idx["pool1"], idx["conv2_1"]) == (0, 1, 4, 5)
    assert (idx["relu3_1"], idx["conv4_1"], idx["relu4_1"]) == (11, 19, 20)
    assert (idx["conv5_4"], idx["relu5_4"], idx["pool5"]) == (34, 35, 36)


def test_normalised_file_loads_and_gives_features():
    path = _normalised_file()
    vgg = VGG19Features(["relu1_1", "relu2_1", "relu3_1", "pool2"], "normalised")
    assert vgg.variant == "normalised" and str(path) == vgg.source
    x = torch.rand(2, 3, 20, 24)
    f = vgg(x)
    assert f["relu1_1"].shape == (2, 64, 20, 24)
    assert f["relu2_1"].shape == (2, 128, 10, 12)
    assert f["pool2"].shape == (2, 128, 5, 6)
    assert f["relu3_1"].shape == (2, 256, 5, 6)
    assert all(torch.isfinite(t).all() and (t >= 0).all() for t in f.values())
    assert f["relu3_1"].abs().sum() > 0
    # the file's preprocessing is RGB [0, 1] -> BGR*255 - mean
    y = F.conv2d(torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1), vgg.input_weight, vgg.input_bias).flatten()
    torch.testing.assert_close(y, torch.tensor([0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68]), atol=1e-3, rtol=0)
    # only what is needed is built; frozen; eval whatever happens
    assert list(vgg.convs) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    assert all(not q.requires_grad for q in vgg.parameters())
    vgg.train()
    assert not vgg.training
    # the same file given as a path
    f2 = VGG19Features("relu2_1", path)(x)
    torch.testing.assert_close(f2["relu2_1"], f["relu2_1"])


def test_normalised_file_refuses_deeper_layers():
    _normalised_file()
    with pytest.raises(MissingWeightsError, match="relu4_1.*conv3_2.*up to relu3_1"):
        VGG19Features(["relu1_1", "relu4_1"], "normalised")
    with pytest.raises(MissingWeightsError):
        PerceptualObjective(["conv5_4"], weights="normalised")


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "dict"])
def test_torchvision_layout_loading_matches_reference(tmp_path, fmt):
    torch.manual_seed(3)
    sd = _torchvision_state_dict(upto=4)  # conv1_1 … conv2_2
    if fmt == "pth":
        path = tmp_path / "vgg19.pth"
        torch.save(sd, path)
        src = path
    elif fmt == "safetensors":
        path = tmp_path / "vgg19.safetensors"
        save_file(sd, str(path))
        src = str(path)
    else:
        src = sd
    layers = ["conv1_2", "relu1_2", "pool1", "relu2_1", "conv2_2", "pool2"]
    vgg = VGG19Features(layers, src)
    assert vgg.variant == "torchvision"
    x = torch.rand(2, 3, 12, 10)
    got = vgg(x)
    ref = _reference_features(sd, x, VGG19_LAYERS.index("pool2"))
    assert list(got) == layers
    for n in layers:
        torch.testing.assert_close(got[n], ref[n], atol=1e-5, rtol=1e-5)
    # a layer past the file's last conv
    with pytest.raises(MissingWeightsError, match="conv3_1"):
        VGG19Features(["relu3_1"], src)


def test_torchvision_full_layout_via_env_and_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(4)
    sd = _torchvision_state_dict()
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(sd, hub / "vgg19-dcbb9e9d.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("TUNABLECONV_VGG19", raising=False)
    assert find_torchvision_vgg19() == hub / "vgg19-dcbb9e9d.pth"
    vgg = VGG19Features(["relu1_1", "conv5_4"], "torchvision")
    x = torch.rand(1, 3, 16, 16)
    f = vgg(x)
    assert f["conv5_4"].shape == (1, 512, 1, 1) and torch.isfinite(f["conv5_4"]).all()
    ref = _reference_features(sd, x, VGG19_LAYERS.index("conv5_4"))
    torch.testing.assert_close(f["conv5_4"], ref["conv5_4"], atol=1e-4, rtol=1e-4)


def test_missing_weights_raise(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "nothing"))
    monkeypatch.setenv("TUNABLECONV_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.delenv("TUNABLECONV_VGG19", raising=False)
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth") as err:
        VGG19Features(["relu1_1"], "torchvision")
    assert "\n" not in str(err.value)
    with pytest.raises(MissingWeightsError):
        PerceptualObjective()  # paper default: conv5_4 of the torchvision weights
    with pytest.raises(MissingWeightsError):
        VGG19Features(["relu1_1"], "normalised")
    with pytest.raises(MissingWeightsError):
        VGG19Features(["relu1_1"], tmp_path / "absent.pth")
    assert issubclass(MissingWeightsError, FileNotFoundError)


def test_bad_layer_or_foreign_file(tmp_path):
    with pytest.raises(InputError, match="unknown VGG19 layer"):
        VGG19Features(["relu6_1"], "random")
    foreign = tmp_path / "x.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(InputError, match="not VGG19 weights"):
        VGG19Features(["relu1_1"], foreign)
    bad = _torchvision_state_dict(upto=2)
    bad["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    with pytest.raises(InputError, match="conv1_2"):
        VGG19Features(["relu1_2"], bad)
    vgg = VGG19Features(["relu1_2"], "random")
    with pytest.raises(InputError, match="deeper"):
        vgg(torch.rand(1, 3, 8, 8), ["relu2_1"])
    with pytest.raises(InputError):
        vgg(torch.rand(1, 1, 8, 8))


def test_random_variants_and_cache():
    v = VGG19Features(["relu2_1"], "random", variant="normalised")
    assert v.variant == "normalised" and v(torch.rand(1, 3, 9, 9))["relu2_1"].shape == (1, 128, 4, 4)
    x = torch.rand(2, 3, 8, 8)
    assert v(x)["relu2_1"] is not v(x)["relu2_1"]
    with v.caching():
        a = v(x)["relu2_1"]
        b = v(x, ["relu2_1", "relu1_1"])
        assert b["relu2_1"] is a and b["relu1_1"].shape == (2, 64, 8, 8)
        assert v(x.clone())["relu2_1"] is not a
        x2 = x.clone()
        first = v(x2)["relu2_1"]
        x2.mul_(0.5)  # in-place change: not served from the cache
        assert v(x2)["relu2_1"] is not first
    assert not v._cache


def test_perceptual_objective_values():
    torch.manual_seed(5)
    vgg = VGG19Features(["relu1_1", "relu2_2"], "random")
    b = {"clean": torch.rand(2, 3, 12, 12)}
    obj = PerceptualObjective({"relu1_1": 1.0, "relu2_2": 0.5}, vgg=vgg)
    torch.testing.assert_close(obj(b["clean"], b), torch.zeros(2))
    out = torch.rand(2, 3, 12, 12)
    v = obj(out, b)
    f, g = vgg(out), vgg(b["clean"])
    ref = (f["relu1_1"] - g["relu1_1"]).abs().mean((1, 2, 3)) + 0.5 * (f["relu2_2"] - g["relu2_2"]).abs().mean((1, 2, 3))
    torch.testing.assert_close(v, ref)
    v2 = PerceptualObjective(["relu2_2"], vgg=vgg, distance="l2")(out, b)
    torch.testing.assert_close(v2, (f["relu2_2"] - g["relu2_2"]).square().mean((1, 2, 3)))
    with pytest.raises(InputError, match="built up to"):
        PerceptualObjective(["relu3_1"], vgg=vgg)


# ----------------------------------------------------------------------------------------
# adversarial
# ----------------------------------------------------------------------------------------
def test_discriminator_any_input_size_and_backprop():
    d = MultiScaleDiscriminator(base_channels=8, num_downs=2)
    for hw in [(32, 32), (17, 23), (3, 5), (1, 1)]:
        x = torch.rand(2, 3, *hw)
        assert d(x).shape == (2,)
    adv = AdversarialObjective(d)
    assert list(adv.parameters()) == list(d.parameters())
    fake, real = torch.rand(3, 3, 24, 24), torch.rand(3, 3, 24, 24)
    loss = adv.discriminator_loss(fake, {"clean": real})
    loss.backward()
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in d.parameters())
    assert sum(q.grad.abs().sum() for q in d.parameters()) > 0
    # a different size, real given as a tensor
    adv.discriminator_loss(torch.rand(2, 3, 40, 28), torch.rand(2, 3, 40, 28)).backward()
    sn = MultiScaleDiscriminator(base_channels=4, num_downs=1, scales=(1, 3), spectral_norm=True)
    assert sn(torch.rand(2, 3, 10, 10)).shape == (2,)


def test_generator_loss_grads_and_values():
    adv = AdversarialObjective(base_channels=8, num_downs=2)
    out = torch.rand(2, 3, 16, 16, requires_grad=True)
    g = adv(out, {"clean": torch.rand(2, 3, 16, 16)})
    assert g.shape == (2,)
    g.sum().backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(q.grad is None for q in adv.parameters())
    assert all(q.requires_grad for q in adv.parameters())
    # equal logits: both RaGAN losses are log 2
    z = torch.zeros(4)
    torch.testing.assert_close(ragan_generator_loss(z, z), torch.full((4,), torch.log(torch.tensor(2.0)).item()))
    assert ragan_discriminator_loss(z, z).item() == pytest.approx(0.693147, abs=1e-5)
    # a confident discriminator: D loss small, G loss large
    real, fake = torch.full((4,), 5.0), torch.full((4,), -5.0)
    assert ragan_discriminator_loss(real, fake) < 1e-3 and (ragan_generator_loss(real, fake) > 4).all()


def test_discriminator_step_trains():
    torch.manual_seed(6)
    adv = AdversarialObjective(base_channels=8, num_downs=1, scales=(1, 2))
    opt = torch.optim.Adam(adv.parameters(), lr=2e-3)
    real = torch.rand(4, 3, 12, 12) * 0.2 + 0.8  # bright
    fake = torch.rand(4, 3, 12, 12) * 0.2  # dark
    first = adv.discriminator_step(fake, {"clean": real}, opt).item()
    for _ in range(15):
        last = adv.discriminator_step(fake, {"clean": real}, opt).item()
    assert last < first
