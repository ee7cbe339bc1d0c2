"""Parametric multi-loss and the pixel / style objectives (tunableconv.losses)."""

import math

import pytest
import torch
from torch import nn

from tunableconv import InputError, InvalidParamsError
from tunableconv.losses import (
    AdversarialObjective,
    Chroma,
    CompositeObjective,
    Fidelity,
    MultiLossResult,
    NoisePreservation,
    ParametricMultiLoss,
    PerceptualObjective,
    Sharpening,
    StyleObjective,
    TotalVariation,
    VGG19Features,
    gaussian_blur,
    gaussian_kernel1d,
    gram_matrix,
    make_distance,
    rgb_to_yuv,
    total_variation,
)


class Const(nn.Module):
    """An objective returning fixed per-sample values (times 1 + 0·output to keep a graph)."""

    def __init__(self, values, name=None):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.calls = 0
        if name:
            self.name = name

    def forward(self, output, batch):
        self.calls += 1
        return self.values + 0.0 * output.reshape(output.shape[0], -1).sum(1)


def _batch(B=3, H=8, W=8):
    clean = torch.rand(B, 3, H, W)
    return {"clean": clean, "noisy": (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)}


# ----------------------------------------------------------------------------------------
# ParametricMultiLoss
# ----------------------------------------------------------------------------------------
def test_multiloss_exact_weighting_per_sample_p():
    a, b = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]
    crit = ParametricMultiLoss([Const(a, "a"), Const(b, "b")], weights=[0.5, 2.0])
    p = torch.tensor([[1.0, 0.0], [0.25, 0.75], [0.5, 0.5]])
    out = torch.zeros(3, 3, 4, 4)
    res = crit(out, _batch(), p)
    expected = sum(p[k, 0] * 0.5 * a[k] + p[k, 1] * 2.0 * b[k] for k in range(3)) / 3
    assert isinstance(res, MultiLossResult)
    assert res.total.dim() == 0
    assert res.total.item() == pytest.approx(float(expected), abs=1e-6)
    total, terms = res  # unpacks as (total, terms)
    assert total is res.total
    assert terms == pytest.approx({"a": 2.0, "b": 20.0})
    assert torch.equal(res.per_sample, torch.tensor([a, b]).T)
    assert res.weighted.sum().item() == pytest.approx(float(expected), abs=1e-6)
    assert crit.last is res and crit.last_terms == terms


def test_multiloss_shared_p_equals_repeated_per_sample_p():
    crit = ParametricMultiLoss([Const([1.0, 2.0, 4.0]), Const([3.0, 0.5, 1.0])], weights=[1.0, 3.0])
    out = torch.zeros(3, 1, 2, 2)
    shared = torch.tensor([0.3, 0.7])
    r1 = crit(out, _batch(), shared)
    r2 = crit(out, _batch(), shared.expand(3, 2).clone())
    r3 = crit(out, _batch(), [0.3, 0.7])
    assert r1.total.item() == pytest.approx(r2.total.item(), abs=1e-6)
    assert r1.total.item() == pytest.approx(r3.total.item(), abs=1e-6)
    assert r1.p.shape == (3, 2)


@pytest.mark.parametrize(
    "p",
    [
        torch.rand(3, 3),  # wrong P
        torch.rand(4, 2),  # wrong B
        torch.rand(3),  # shared but wrong P
        torch.rand(1, 3, 2),  # 3-D
        torch.tensor([[0.5, 1.5]] * 3),  # out of range
        torch.tensor([[0.5, float("nan")]] * 3),
    ],
)
def test_multiloss_bad_p_raises(p):
    crit = ParametricMultiLoss([Const([1.0] * 3), Const([1.0] * 3)])
    with pytest.raises(InvalidParamsError):
        crit(torch.zeros(3, 3, 4, 4), _batch(), p)


def test_multiloss_no_knobs_means_static_weights():
    crit = ParametricMultiLoss([Fidelity()], weights=[2.0])
    b = _batch()
    out = torch.zeros_like(b["clean"])
    ref = 2.0 * b["clean"].abs().mean()
    assert crit(out, b).total.item() == pytest.approx(ref.item(), rel=1e-6)
    assert crit(out, b, torch.zeros(3, 0)).total.item() == pytest.approx(ref.item(), rel=1e-6)


def test_multiloss_bad_objective_shape_and_config():
    class Scalar(nn.Module):
        def forward(self, output, batch):
            return output.mean()

    with pytest.raises(ValueError, match="per-sample"):
        ParametricMultiLoss([Scalar()])(torch.zeros(2, 3, 4, 4), _batch(2), torch.ones(2, 1))
    with pytest.raises(InputError):
        ParametricMultiLoss([Const([1.0]), Const([1.0])], weights=[1.0])
    with pytest.raises(InputError):
        ParametricMultiLoss([])


def test_multiloss_skips_objectives_with_zero_column():
    a, b = Const([1.0, 1.0], "a"), Const([5.0, 7.0], "b")
    crit = ParametricMultiLoss([a, b])
    out = torch.zeros(2, 3, 4, 4, requires_grad=True)
    res = crit(out, _batch(2), torch.tensor([[0.0, 1.0], [0.0, 0.5]]))
    assert a.calls == 0 and b.calls == 1
    assert res.total.item() == pytest.approx((5.0 + 3.5) / 2)
    assert set(res.terms) == {"b"} and math.isnan(res.per_sample[0, 0].item())
    # all weights zero: a zero loss that still backpropagates
    res0 = crit(out, _batch(2), torch.zeros(2, 2))
    assert res0.total.item() == 0.0
    res0.total.backward()
    assert out.grad is not None and torch.count_nonzero(out.grad) == 0
    # skip_zero=False evaluates everything
    a2 = Const([1.0, 1.0])
    ParametricMultiLoss([a2, Const([1.0, 1.0])], skip_zero=False)(out, _batch(2), torch.tensor([0.0, 1.0]))
    assert a2.calls == 1


def test_multiloss_names_mapping_and_dedupe():
    crit = ParametricMultiLoss([Fidelity(), Fidelity("l2"), NoisePreservation()])
    assert crit.names == ["fidelity", "fidelity_2", "noise"]
    crit2 = ParametricMultiLoss({"x": Fidelity(), "y": Sharpening()})
    assert crit2.names == ["x", "y"] and crit2.num_params == 2
    t = crit2.targets(_batch())
    assert set(t) == {"x", "y"} and t["x"].shape == (3, 3, 8, 8)


def test_composite_objective_and_parts_in_terms():
    b = _batch(2)
    out = torch.zeros_like(b["clean"])
    comp = CompositeObjective([(Fidelity("l1"), 1.0), (Fidelity("l2"), 4.0)], name="mix")
    v = comp(out, b)
    ref = b["clean"].abs().mean((1, 2, 3)) + 4.0 * b["clean"].square().mean((1, 2, 3))
    torch.testing.assert_close(v, ref)
    crit = ParametricMultiLoss([comp, Fidelity()])
    res = crit(out, b, torch.tensor([0.5, 0.5]))
    assert set(res.terms) == {"mix", "fidelity", "mix.fidelity", "mix.fidelity_2"}
    with pytest.raises(InputError):
        CompositeObjective([Fidelity()])


def test_gradients_flow_from_multiloss_into_output():
    torch.manual_seed(0)
    b = _batch(2, 16, 16)
    vgg = VGG19Features(["relu1_1", "relu2_1", "conv2_2"], "random")
    perc = PerceptualObjective(["relu1_1", "conv2_2"], vgg=vgg)
    adv = AdversarialObjective(base_channels=8, num_downs=2)
    style = StyleObjective(torch.rand(3, 20, 20), ["relu1_1", "relu2_1"], ["relu2_1"], vgg=vgg, chroma_weight=1.0)
    crit = ParametricMultiLoss(
        [Fidelity("charbonnier"), CompositeObjective([(perc, 1.0), (adv, 0.01)], name="gan"), style]
    )
    out = torch.rand(2, 3, 16, 16, requires_grad=True)
    p = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    loss, terms = crit(out, b, p)
    loss.backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    assert {"fidelity", "gan", "style", "gan.perceptual", "gan.adversarial", "style.style", "style.tv"} <= set(terms)
    # the generator step leaves the discriminator's gradients alone, VGG is frozen
    assert all(q.grad is None for q in adv.parameters())
    assert all(not q.requires_grad for q in vgg.parameters())
    assert all(q.requires_grad for q in adv.parameters())
    # the trainer's discriminator step
    assert crit.adversarial_objectives() == [adv]
    assert crit.discriminators() == [adv.discriminator]
    before = [q.detach().clone() for q in adv.parameters()]
    d_opt = torch.optim.Adam(crit.discriminators()[0].parameters(), lr=1e-2)
    d_opt.zero_grad()
    dl = crit.discriminator_loss(crit.discriminators()[0], out.detach(), b)
    assert dl.dim() == 0
    dl.backward()
    d_opt.step()
    assert any(not torch.equal(x, q) for x, q in zip(before, adv.parameters()))
    logs = crit.discriminator_step(out, b, [d_opt])
    assert set(logs) == {"disc0"} and math.isfinite(logs["disc0"])
    with pytest.raises(InputError):
        crit.discriminator_loss(nn.Linear(1, 1), out.detach(), b)


# ----------------------------------------------------------------------------------------
# pixel objectives
# ----------------------------------------------------------------------------------------
def test_distances_hand_values():
    x = torch.zeros(2, 1, 2, 2)
    y = torch.tensor([[1.0, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]]).view(2, 1, 2, 2)
    torch.testing.assert_close(make_distance("l1")(x, y), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(make_distance("l2")(x, y), torch.tensor([1.5, 9.0]))
    ch = make_distance("charbonnier", eps=0.5)(x, y)
    e = (math.sqrt(1.25) * 2 + math.sqrt(4.25) + 0.5) / 4
    torch.testing.assert_close(ch, torch.tensor([e, math.sqrt(9.25)]))
    # default eps 1e-3: equal images give exactly eps
    torch.testing.assert_close(Fidelity("charbonnier")(x, {"clean": x}), torch.full((2,), 1e-3))
    with pytest.raises(InputError):
        make_distance("l3")
    with pytest.raises(InputError):
        make_distance("l1")(x, torch.zeros(2, 1, 2, 3))


def test_fidelity_per_sample():
    b = {"clean": torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 4, 4).contiguous()}
    out = torch.full((2, 3, 4, 4), 0.25)
    torch.testing.assert_close(Fidelity("l1")(out, b), torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(Fidelity("l2")(out, b), torch.tensor([0.0625, 0.5625]))
    with pytest.raises(InputError, match="clean"):
        Fidelity()(out, {"noisy": out})


@pytest.mark.parametrize("beta", [0.9, 0.5, 0.0])
def test_noise_preservation_target(beta):
    b = _batch()
    obj = NoisePreservation(beta=beta) if beta != 0.9 else NoisePreservation()
    tgt = obj.target(b)
    torch.testing.assert_close(tgt, b["clean"] + beta * (b["noisy"] - b["clean"]))
    assert torch.all(obj(tgt, b) == 0)
    assert obj(b["clean"], b).shape == (3,)
    # l2 distance and an alternative key
    b2 = {"clean": b["clean"], "degraded": b["noisy"]}
    obj2 = NoisePreservation(beta=beta, distance="l2")
    torch.testing.assert_close(obj2(b["clean"], b2), (beta * (b["noisy"] - b["clean"])).square().mean((1, 2, 3)))
    with pytest.raises(InputError, match="noisy"):
        obj(b["clean"], {"clean": b["clean"]})


def test_gaussian_blur_and_sharpening():
    g = gaussian_kernel1d(1.5)
    assert g.numel() == 2 * math.ceil(4.5) + 1 and g.sum().item() == pytest.approx(1.0)
    const = torch.full((2, 3, 9, 7), 0.4)
    torch.testing.assert_close(gaussian_blur(const, 1.5), const)
    torch.testing.assert_close(gaussian_blur(torch.full((1, 3, 2, 2), 0.3), 2.0), torch.full((1, 3, 2, 2), 0.3))
    sh = Sharpening(gamma=1.5, sigma=1.0)
    torch.testing.assert_close(sh.target({"clean": const}), const)
    assert sh(const, {"clean": const}).max() < 1e-6
    # a step edge: unsharp masking overshoots on both sides (unclamped), identity for gamma 0
    step = torch.zeros(1, 1, 1, 16)
    step[..., 8:] = 1.0
    step = (0.25 + 0.5 * step).expand(1, 3, 16, 16).contiguous()
    t = Sharpening(gamma=1.0, sigma=1.0, clamp=False).target({"clean": step})
    assert t.max() > 0.75 + 1e-3 and t.min() < 0.25 - 1e-3
    torch.testing.assert_close(Sharpening(gamma=0.0).target({"clean": step}), step)
    expected = step + 1.0 * (step - gaussian_blur(step, 1.0))
    torch.testing.assert_close(t, expected)
    assert Sharpening(gamma=5.0).target({"clean": step}).max() <= 1.0


# ----------------------------------------------------------------------------------------
# style pieces
# ----------------------------------------------------------------------------------------
def test_gram_matrix_known_tensor():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram_matrix(f), expected.unsqueeze(0))
    assert gram_matrix(torch.rand(3, 5, 4, 4)).shape == (3, 5, 5)


def test_total_variation_known_tensor():
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    # vertical diffs 2, 3 (mean 2.5); horizontal diffs 1, 2 (mean 1.5)
    torch.testing.assert_close(total_variation(x), torch.tensor([4.0]))
    torch.testing.assert_close(total_variation(x, power=2), torch.tensor([(4 + 9) / 2 + (1 + 4) / 2]))
    torch.testing.assert_close(TotalVariation()(torch.full((2, 3, 5, 5), 0.7), {}), torch.zeros(2))
    torch.testing.assert_close(total_variation(torch.rand(2, 3, 1, 1)), torch.zeros(2))


def test_chroma_zero_when_colours_match():
    c = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(Chroma()(c, {"clean": c}), torch.zeros(2))
    # a luminance-only change (grey offset) keeps U, V
    assert Chroma()(c + 0.1, {"content": c}).max() < 1e-8
    assert Chroma()(c.flip(1), {"clean": c}).min() > 1e-4
    grey = torch.rand(1, 1, 4, 4).expand(1, 3, 4, 4)
    yuv = rgb_to_yuv(grey)
    torch.testing.assert_close(yuv[:, 0], grey[:, 0])
    assert yuv[:, 1:].abs().max() < 1e-4


def test_style_objective_parts_and_zero_style_distance():
    torch.manual_seed(1)
    vgg = VGG19Features(["relu1_1", "relu2_1"], "random")
    style_img = torch.rand(3, 16, 16)
    obj = StyleObjective(style_img, ["relu1_1", "relu2_1"], ["relu2_1"], vgg=vgg, tv_weight=0.5, chroma_weight=2.0)
    # the style image itself (same size) has zero style distance
    s = style_img.unsqueeze(0).repeat(2, 1, 1, 1)
    v = obj(s, {"clean": torch.rand(2, 3, 16, 16)})
    assert v.shape == (2,)
    assert obj.last_parts["style"].abs().max() < 1e-6
    assert set(obj.last_parts) == {"style", "content", "tv", "chroma"}
    p = obj.last_parts
    torch.testing.assert_close(v, p["style"] + p["content"] + 0.5 * p["tv"] + 2.0 * p["chroma"])
    torch.testing.assert_close(p["tv"], total_variation(s))
    # the Gram buffer is a (C, C) buffer that follows .to()
    assert obj.style_gram("relu2_1").shape == (128, 128)
    assert "gram_relu1_1" in dict(obj.named_buffers())
    with pytest.raises(InputError):
        StyleObjective(torch.rand(16, 16), vgg=vgg)
    with pytest.raises(InputError, match="built up to"):
        StyleObjective(style_img, ["relu3_1"], vgg=vgg)


# --- blended targets ---------------------------------------------------------------------
def _denoise_batch(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(B, 3, 12, 12, generator=g)
    noisy = clean + 0.1 * torch.randn(B, 3, 12, 12, generator=g)
    return {"clean": clean, "noisy": noisy, "input": noisy}


def test_blended_targets_l2_has_the_gradient_of_the_mixed_losses():
    from tunableconv.losses import BlendedTargetLoss, NoisePreservation

    batch = _denoise_batch()
    p = torch.rand(4, 1)
    p = torch.cat([p, 1 - p], dim=1)
    grads = []
    for cls in (ParametricMultiLoss, BlendedTargetLoss):
        out = batch["noisy"].clone().requires_grad_(True)
        cls([Fidelity("l2"), NoisePreservation(beta=0.9, distance="l2")])(out, batch, p).total.backward()
        grads.append(out.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-9)


def test_blended_targets_l1_is_zero_at_the_blend_while_the_mixture_is_not():
    from tunableconv.losses import BlendedTargetLoss, NoisePreservation

    batch = _denoise_batch()
    objs = [Fidelity("l1"), NoisePreservation(beta=0.9, distance="l1")]
    p = torch.tensor([0.3, 0.7])
    blend = 0.3 * batch["clean"] + 0.7 * (batch["clean"] + 0.9 * (batch["noisy"] - batch["clean"]))
    res = BlendedTargetLoss(objs)(blend, batch, p)
    assert float(res.total) < 1e-7
    assert res.per_sample.shape == (4, 2) and bool((res.per_sample > 0).all())  # each objective's own loss, logged
    assert float(ParametricMultiLoss(objs)(blend, batch, p).total) > 1e-3
    # the mixture of L1 losses is minimised at the weighted median: the heavier target
    noise_target = batch["clean"] + 0.9 * (batch["noisy"] - batch["clean"])
    assert float(ParametricMultiLoss(objs)(noise_target, batch, p).total) < float(ParametricMultiLoss(objs)(blend, batch, p).total)


def test_blended_targets_reject_mixed_distances_and_non_pixel_objectives():
    from tunableconv.losses import BlendedTargetLoss, NoisePreservation, TotalVariation

    with pytest.raises(InputError, match="one distance"):
        BlendedTargetLoss([Fidelity("l1"), NoisePreservation(distance="l2")])
    with pytest.raises(InputError, match="pixel objectives"):
        BlendedTargetLoss([Fidelity("l1"), TotalVariation()])
    with pytest.raises(InputError, match="positive"):
        BlendedTargetLoss([Fidelity("l1"), NoisePreservation()])(torch.zeros(1, 3, 4, 4), _denoise_batch(1), torch.zeros(1, 2))
