r"""Style-transfer objective: one style image = one objective.

For an output ``y`` with content image ``c`` (the network input, ``batch["content"]`` or
``batch["clean"]``) and a fixed style image ``s``, per sample:

``L = w_s Σ_l α_l ‖G_l(y) - G_l(s)‖_F²  +  w_c Σ_l β_l d_c(φ_l(y), φ_l(c))  +  w_tv TV(y)  +  w_uv d_uv(UV(y), UV(c))``

- ``φ_l`` VGG19 features (:class:`~.vgg.VGG19Features`), ``(C, H, W)`` at layer l;
- Gram matrix ``G_l(x) = F F^T / (C·H·W)`` with ``F`` the ``(C, H·W)`` reshaped features;
- ``d_c`` the content distance (per-sample MSE by default);
- ``TV`` the anisotropic total variation (:func:`~.objectives.total_variation`);
- ``UV`` the chrominance channels of YUV (:func:`~.objectives.rgb_to_yuv`);
- ``φ_l`` may also be VGG16 features (:class:`~.vgg.VGG16Features`, Johnson et al.'s
  ``relu1_2, relu2_2, relu3_3, relu4_3`` style and ``relu2_2`` content layers), passed as ``vgg=``.

In the paper each of the P styles is one objective, so a P-style tunable network uses P
:class:`StyleObjective` s (share one extractor between them with ``vgg=``) in a
:class:`~.multiloss.ParametricMultiLoss`: ``Σ_i p_i L_i(y)``. :class:`StyleMixLoss` computes
the same from one set of the output's Gram matrices (``mix="losses"``), or mixes the *targets*
instead (``mix="targets"``): one Gram loss to the p-blend of the styles' Gram matrices,
``‖G_l(y) − Σ_i c_i G_l(s_i)‖_F²`` with ``c = p / Σ_j p_j``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .multiloss import MultiLossResult, ParametricMultiLoss, _check_per_sample
from .objectives import Batch, Objective, get_key, make_distance, rgb_to_yuv, total_variation
from .perceptual import layer_weights, shared_vgg
from .vgg import FeatureExtractor

__all__ = ["gram_matrix", "StyleObjective", "StyleMixLoss", "STYLE_MIXES", "DEFAULT_STYLE_LAYERS", "DEFAULT_CONTENT_LAYERS"]

DEFAULT_STYLE_LAYERS: dict[str, float] = {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0}
DEFAULT_CONTENT_LAYERS: dict[str, float] = {"relu3_1": 1.0}


def gram_matrix(features: Tensor) -> Tensor:
    r"""Normalised Gram matrices: ``(B, C, H, W) -> (B, C, C)``, ``G = F F^T / (C·H·W)``."""
    if features.dim() != 4:
        raise InputError(f"gram_matrix expects (B, C, H, W), got {tuple(features.shape)}")
    B, C, H, W = features.shape
    f = features.reshape(B, C, H * W)
    return torch.bmm(f, f.transpose(1, 2)) / (C * H * W)


class StyleObjective(Objective):
    r"""Gram style loss to a fixed style image, plus content, total-variation and chroma terms.

    Args:
        style_image: ``(3, H, W)`` or ``(1, 3, H, W)`` RGB in [0, 1] (any size; resize it
            beforehand to the scale you want the style's textures to have).
        style_layers: ``{layer: α_l}`` or names (default relu1_1, relu2_1, relu3_1).
        content_layers: ``{layer: β_l}`` or names (default relu3_1); empty for no content term.
        style_weight, content_weight, tv_weight, chroma_weight: ``w_s, w_c, w_tv, w_uv``.
        weights: VGG weight source (see :class:`VGG19Features`), default ``"normalised"``.
        vgg: an existing extractor to share between styles (a :class:`VGG19Features`, or a
            :class:`~.vgg.VGG16Features` for Johnson et al.'s layers ``relu1_2`` … ``relu4_3``).
        content_distance, chroma_distance: ``"l2"`` (default), ``"l1"``, ``"charbonnier"``.
        tv_power: 1 (L1 TV, default) or 2.
        content_key: batch key(s) of the content image, tried in order.

    Scale of the terms (the defaults are set for the ``"normalised"`` VGG, whose activations
    are O(1)): on 128x128 COCO photos with relu1_1–relu3_1 style and relu3_1 content layers,
    the style term of the content image itself is ≈ 25–75 for Mosaic / Edtaonisl / Kandinsky,
    the content term of the style image ≈ 15–25, the TV of a natural image ≈ 0.1 and the
    chroma MSE between unrelated photos ≈ 0.01 (so ``chroma_weight`` ≈ 100–1000 makes colour
    preservation matter). torchvision weights give much smaller activations: re-tune.

    After a call ``last_parts`` holds the detached per-sample unweighted terms
    ``style``, ``content``, ``tv``, ``chroma``.
    """

    name = "style"

    def __init__(
        self,
        style_image: Tensor,
        style_layers: str | Sequence[str] | Mapping[str, float] | None = None,
        content_layers: str | Sequence[str] | Mapping[str, float] | None = None,
        *,
        style_weight: float = 1.0,
        content_weight: float = 1.0,
        tv_weight: float = 1.0,
        chroma_weight: float = 0.0,
        weights: str | os.PathLike | Mapping[str, Tensor] = "normalised",
        vgg: FeatureExtractor | None = None,
        content_distance: str = "l2",
        chroma_distance: str = "l2",
        tv_power: float = 1.0,
        content_key: str | Sequence[str] = ("content", "clean"),
        root: str | os.PathLike | None = None,
        variant: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.style_layers = layer_weights(DEFAULT_STYLE_LAYERS if style_layers is None else style_layers)
        if content_layers is not None and len(content_layers) == 0:
            self.content_layers: dict[str, float] = {}
        else:
            self.content_layers = layer_weights(DEFAULT_CONTENT_LAYERS if content_layers is None else content_layers)
        all_layers = list(dict.fromkeys([*self.style_layers, *self.content_layers]))
        self.vgg = shared_vgg(vgg, all_layers, weights, root, variant)
        self.style_weight, self.content_weight = float(style_weight), float(content_weight)
        self.tv_weight, self.chroma_weight, self.tv_power = float(tv_weight), float(chroma_weight), float(tv_power)
        self.content_distance = make_distance(content_distance)
        self.chroma_distance = make_distance(chroma_distance)
        self.content_distance_name, self.chroma_distance_name = content_distance, chroma_distance
        self.content_key = content_key

        if not isinstance(style_image, Tensor):
            raise InputError(f"style_image must be a tensor, got {type(style_image).__name__}")
        s = style_image.unsqueeze(0) if style_image.dim() == 3 else style_image
        if s.dim() != 4 or s.shape[0] != 1 or s.shape[1] != 3:
            raise InputError(f"style_image must be (3, H, W) or (1, 3, H, W), got {tuple(style_image.shape)}")
        ref = self.vgg.input_weight
        with torch.no_grad():
            feats = self.vgg(s.to(device=ref.device, dtype=ref.dtype), list(self.style_layers))
            for n in self.style_layers:
                self.register_buffer(f"gram_{n}", gram_matrix(feats[n])[0].clone())

    def style_gram(self, layer: str) -> Tensor:
        """The fixed ``(C, C)`` Gram matrix of the style image at ``layer``."""
        return getattr(self, f"gram_{layer}")

    def style_grams(self) -> dict[str, Tensor]:
        """``{layer: (C, C)}``: the style image's Gram matrices at every style layer."""
        return {n: self.style_gram(n) for n in self.style_layers}

    def gram_distance(self, grams: Mapping[str, Tensor], target: Mapping[str, Tensor] | None = None) -> Tensor:
        r"""``Σ_l α_l ‖G_l − T_l‖_F²`` per sample ``(B,)``, float32, from the output's Gram matrices
        ``grams`` ``{layer: (B, C, C)}`` to ``target`` (``{layer: (C, C) or (B, C, C)}``; default:
        this objective's style image)."""
        target = self.style_grams() if target is None else target
        total: Tensor | None = None
        for n, a in self.style_layers.items():
            t = target[n].float()
            diff = grams[n].float() - (t.unsqueeze(0) if t.dim() == 2 else t)
            term = a * diff.square().sum(dim=(1, 2))
            total = term if total is None else total + term
        assert total is not None
        return total

    def measure(self, output: Tensor, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One VGG pass on ``output`` ``(B, 3, H, W)``: its Gram matrices ``{layer: (B, C, C)}`` at
        the style layers, and the unweighted per-sample ``(B,)`` terms that do not depend on the
        style image: ``content``, ``tv``, ``chroma`` (zeros where their weight is 0)."""
        content = get_key(batch, self.content_key, "the style objective").to(dtype=output.dtype)
        B = output.shape[0]
        names = list(dict.fromkeys([*self.style_layers, *self.content_layers]))
        fo = self.vgg(output, names)
        grams = {n: gram_matrix(fo[n]) for n in self.style_layers}
        content_term = output.new_zeros(B, dtype=torch.float32)
        if self.content_layers and self.content_weight:
            with torch.no_grad():
                fc = self.vgg(content, list(self.content_layers))
            for n, b in self.content_layers.items():
                content_term = content_term + b * self.content_distance(fo[n], fc[n]).float()
        tv = total_variation(output, self.tv_power).float() if self.tv_weight else output.new_zeros(B, dtype=torch.float32)
        if self.chroma_weight:
            chroma = self.chroma_distance(rgb_to_yuv(output)[:, 1:], rgb_to_yuv(content)[:, 1:]).float()
        else:
            chroma = output.new_zeros(B, dtype=torch.float32)
        return grams, {"content": content_term, "tv": tv, "chroma": chroma}

    def combine(self, style: Tensor, others: Mapping[str, Tensor], style_weight: Tensor | float | None = None) -> Tensor:
        """``w_s·style + w_c·content + w_tv·tv + w_uv·chroma`` (``style_weight`` replaces ``w_s``:
        a number or a per-sample ``(B,)`` tensor)."""
        ws = self.style_weight if style_weight is None else style_weight
        return (ws * style + self.content_weight * others["content"] + self.tv_weight * others["tv"]
                + self.chroma_weight * others["chroma"])

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        grams, others = self.measure(output, batch)
        style = self.gram_distance(grams)
        self.last_parts = {"style": style.detach(), **{k: v.detach() for k, v in others.items()}}
        return self.combine(style, others)

    def extra_repr(self) -> str:
        return (f"style_layers={self.style_layers}, content_layers={self.content_layers}, "
                f"style_weight={self.style_weight}, content_weight={self.content_weight}, "
                f"tv_weight={self.tv_weight}, chroma_weight={self.chroma_weight}")


#: the settings every objective of a :class:`StyleMixLoss` must share (all but the style image and w_s)
_SHARED_SETTINGS = ("style_layers", "content_layers", "content_weight", "tv_weight", "chroma_weight", "tv_power",
                    "content_key", "content_distance_name", "chroma_distance_name")

#: how a :class:`StyleMixLoss` mixes its styles with p
STYLE_MIXES = ("losses", "targets")


class StyleMixLoss(ParametricMultiLoss):
    r"""P styles mixed by p, from one VGG pass and one set of Gram matrices of the output.

    For P :class:`StyleObjective` s that share one extractor and every setting but the style
    image s_i and the style weight λ_i (``w_s``), write objective i as
    ``L_i(y) = λ_i S_i(y) + R(y)`` with ``S_i(y) = Σ_l α_l ‖G_l(y) − G_l(s_i)‖_F²`` and R the
    content, TV and chroma terms. Per sample b, with the static weights w_i (default 1):

    - ``mix="losses"`` (the paper's): ``L_b = Σ_i p_{b,i} w_i L_i(y_b)``, exactly
      :class:`~.multiloss.ParametricMultiLoss` over the same objectives, but the output's Gram
      matrices are computed once instead of once per style;
    - ``mix="targets"``: one Gram loss to the p-blend of the styles' Gram matrices,

      .. math::
          L_b = λ(p_b) \sum_l α_l \Bigl\lVert G_l(y_b) − \sum_i c_{b,i}\, G_l(s_i) \Bigr\rVert_F^2 + R(y_b),
          \qquad c_{b,i} = \frac{p_{b,i} w_i}{\sum_j p_{b,j} w_j},\quad λ(p_b) = \sum_i c_{b,i} λ_i .

    ``loss = mean_b L_b``. At a vertex p = e_i (w_i = 1) both are objective i's own loss. The
    Frobenius distance is quadratic in G, so with equal λ_i (and p on the simplex) the two have
    the same gradient (``Σ_i c_i ‖G − G_i‖² = ‖G − Σ_i c_i G_i‖² + const``, as
    :class:`~.multiloss.BlendedTargetLoss` notes for L2); they differ when the styles are weighted
    differently: the mixed losses pull G_l(y) towards ``Σ_i c_i λ_i G_l(s_i) / Σ_i c_i λ_i`` (the
    blend leans to the heavier style), the blended target towards ``Σ_i c_i G_l(s_i)`` with the
    strength λ(p).

    The result's ``per_sample`` holds each objective's own (unmixed) loss L_i, and ``parts`` the
    unweighted terms: ``blend.style`` (the Gram distance to the blend, ``targets`` only),
    ``blend.content``, ``blend.tv``, ``blend.chroma``.
    """

    def __init__(self, objectives: Sequence[StyleObjective] | Mapping[str, StyleObjective],
                 weights: Sequence[float] | None = None, *, mix: str = "losses") -> None:
        super().__init__(objectives, weights, skip_zero=False)
        if mix not in STYLE_MIXES:
            raise InputError(f"the style mix must be one of {', '.join(STYLE_MIXES)}, got {mix!r}")
        self.mix = mix
        first = self.objectives[0]
        for name, o in zip(self.names, self.objectives):
            if not isinstance(o, StyleObjective):
                raise InputError(f"a style mix needs style objectives; {name!r} is a {type(o).__name__}")
            if o.vgg is not first.vgg:
                raise InputError(f"a style mix needs one shared VGG extractor; {name!r} has its own")
            for key in _SHARED_SETTINGS:
                if getattr(o, key) != getattr(first, key):
                    raise InputError(f"a style mix needs the same {key} for every style; {name!r} differs "
                                     f"from {self.names[0]!r}")

    def coefficients(self, p: Tensor) -> Tensor:
        """``c = p w / Σ_j p_j w_j`` ``(B, P)`` for p ``(B, P)`` (every row with a positive sum)."""
        coef = p * self.objective_weights.to(p.device)
        norm = coef.sum(dim=1, keepdim=True)
        if bool((norm <= 0).any()):
            raise InputError("a style mix needs p with at least one positive weighted entry per sample")
        return coef / norm

    def _blend(self, coef: Tensor) -> dict[str, Tensor]:
        """``{layer: (B, C, C)}``, ``Σ_i coef_{b,i} G_l(s_i)`` for ``coef`` ``(B, P)``."""
        return {n: torch.einsum("bi,icd->bcd", coef, torch.stack([o.style_gram(n).float() for o in self.objectives]))
                for n in self.objectives[0].style_layers}

    def blended_grams(self, p: Tensor | Sequence[float] | None, batch_size: int = 1) -> dict[str, Tensor]:
        """``{layer: (B, C, C)}``, ``Σ_i c_{b,i} G_l(s_i)``: the Gram target of ``mix="targets"``
        at p (``(P,)`` or ``(B, P)``)."""
        first = self.objectives[0]
        dev = first.style_gram(next(iter(first.style_layers))).device
        return self._blend(self.coefficients(self._params(p, batch_size, dev)))

    def forward(self, output: Tensor, batch: Batch, p: Tensor | Sequence[float] | None = None) -> MultiLossResult:
        if not isinstance(batch, Mapping):
            raise InputError(f"batch must be a dict of tensors, got {type(batch).__name__}")
        B = output.shape[0]
        pp = self._params(p, B, output.device)
        first = self.objectives[0]
        grams, others = first.measure(output, batch)  # one VGG pass on the output, one (to the content layers) on the content
        parts = {f"blend.{k}": t.detach() for k, t in others.items()}
        if self.mix == "losses":
            own = torch.stack([o.combine(o.gram_distance(grams), others) for o in self.objectives], dim=1).float()
            mix = pp * self.objective_weights.to(output.device)
            v = (mix * own).sum(dim=1)
        else:
            mix = self.coefficients(pp)
            lam = torch.tensor([o.style_weight for o in self.objectives], device=output.device)
            style = first.gram_distance(grams, self._blend(mix))
            v = first.combine(style, others, style_weight=mix @ lam)
            parts["blend.style"] = style.detach()
            with torch.no_grad():
                own = torch.stack([o.combine(o.gram_distance(grams), others) for o in self.objectives], dim=1).float()
        v = _check_per_sample(v, B, f"style mix of {self.mix}")
        res = MultiLossResult(total=v.sum() / B, per_sample=own.detach(), p=pp.detach(), names=list(self.names),
                              parts=parts, weighted_per_sample=(mix * own).detach())
        self.last = res
        return res

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mix={self.mix!r}"
