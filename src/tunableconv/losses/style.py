r"""Style-transfer objective: one style image = one objective.

For an output ``y`` with content image ``c`` (the network input, ``batch["content"]`` or
``batch["clean"]``) and a fixed style image ``s``, per sample:

``L = w_s Σ_l α_l ‖G_l(y) - G_l(s)‖_F²  +  w_c Σ_l β_l d_c(φ_l(y), φ_l(c))  +  w_tv TV(y)  +  w_uv d_uv(UV(y), UV(c))``

- ``φ_l`` VGG19 features (:class:`~.vgg.VGG19Features`), ``(C, H, W)`` at layer l;
- Gram matrix ``G_l(x) = F F^T / (C·H·W)`` with ``F`` the ``(C, H·W)`` reshaped features;
- ``d_c`` the content distance (per-sample MSE by default);
- ``TV`` the anisotropic total variation (:func:`~.objectives.total_variation`);
- ``UV`` the chrominance channels of YUV (:func:`~.objectives.rgb_to_yuv`).

In the paper each of the P styles is one objective, so a P-style tunable network uses P
:class:`StyleObjective` s (share one extractor between them with ``vgg=``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .objectives import Batch, Objective, get_key, make_distance, rgb_to_yuv, total_variation
from .perceptual import layer_weights, shared_vgg
from .vgg import VGG19Features

__all__ = ["gram_matrix", "StyleObjective", "DEFAULT_STYLE_LAYERS", "DEFAULT_CONTENT_LAYERS"]

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
        vgg: an existing extractor to share between styles.
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
        vgg: VGG19Features | None = None,
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

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        content = get_key(batch, self.content_key, "the style objective").to(dtype=output.dtype)
        B = output.shape[0]
        names = list(dict.fromkeys([*self.style_layers, *self.content_layers]))
        fo = self.vgg(output, names)
        style = output.new_zeros(B, dtype=torch.float32)
        for n, a in self.style_layers.items():
            diff = gram_matrix(fo[n]).float() - self.style_gram(n).float().unsqueeze(0)
            style = style + a * diff.square().sum(dim=(1, 2))
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
        self.last_parts = {"style": style.detach(), "content": content_term.detach(), "tv": tv.detach(),
                           "chroma": chroma.detach()}
        return (self.style_weight * style + self.content_weight * content_term + self.tv_weight * tv
                + self.chroma_weight * chroma)

    def extra_repr(self) -> str:
        return (f"style_layers={self.style_layers}, content_layers={self.content_layers}, "
                f"style_weight={self.style_weight}, content_weight={self.content_weight}, "
                f"tv_weight={self.tv_weight}, chroma_weight={self.chroma_weight}")
