r"""Perceptual (VGG feature) objective.

``L[b] = Σ_l λ_l · d(φ_l(output_b), φ_l(clean_b))`` where ``φ_l`` are VGG19 features at layer
``l`` (:class:`~.vgg.VGG19Features`), ``λ_l`` per-layer weights and ``d`` a per-sample
distance averaged over ``C_l·H_l·W_l`` (L1 by default).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .objectives import Batch, Objective, get_key, make_distance
from .vgg import FeatureExtractor, VGG19Features

__all__ = ["PerceptualObjective", "layer_weights"]


def layer_weights(layers: str | Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """Normalise a layer spec to ``{name: weight}`` (a name or a list means weight 1 each)."""
    if isinstance(layers, str):
        return {layers: 1.0}
    if isinstance(layers, Mapping):
        out = {str(k): float(v) for k, v in layers.items()}
    else:
        out = {str(k): 1.0 for k in layers}
    if not out:
        raise InputError("at least one VGG layer is needed")
    return out


def shared_vgg(
    vgg: FeatureExtractor | None,
    layers: Sequence[str],
    weights: str | os.PathLike | Mapping[str, Tensor],
    root: str | os.PathLike | None = None,
    variant: str | None = None,
) -> FeatureExtractor:
    """``vgg`` if given (a :class:`VGG19Features`, or any other frozen extractor such as
    :class:`~.vgg.VGG16Features`; checking it reaches ``layers``), else a new VGG19 extractor."""
    if vgg is None:
        return VGG19Features(list(layers), weights, root=root, variant=variant)
    table = vgg.LAYERS
    too_deep = [n for n in layers if n not in table or table.index(n) > vgg.depth]
    if too_deep:
        raise InputError(
            f"the given {type(vgg).__name__} extractor is built up to {table[vgg.depth]} and cannot give {too_deep}"
        )
    return vgg


class PerceptualObjective(Objective):
    r"""VGG19 feature distance to the clean image, per sample ``(B,)``.

    ``L[b] = Σ_l λ_l · d(φ_l(output_b), φ_l(clean_b))``.

    Args:
        layers: ``{layer: λ_l}`` or a list of layer names (λ = 1). Default (None) ``{"conv5_4": 1.0}``
            (features before the last ReLU, as in ESRGAN).
        weights: VGG weight source (see :class:`VGG19Features`); default ``"torchvision"``.
            On machines without them use e.g. ``layers=["relu1_1", "relu2_1", "relu3_1"],
            weights="normalised"``.
        distance: ``"l1"`` (default), ``"l2"`` or ``"charbonnier"``.
        vgg: an existing extractor to share (saves memory and, inside a multi-loss, compute).
        key: batch key(s) of the reference image, tried in order.
    """

    name = "perceptual"

    def __init__(
        self,
        layers: str | Sequence[str] | Mapping[str, float] | None = None,
        weights: str | os.PathLike | Mapping[str, Tensor] = "torchvision",
        distance: str = "l1",
        eps: float = 1e-3,
        vgg: VGG19Features | None = None,
        key: str | Sequence[str] = "clean",
        root: str | os.PathLike | None = None,
        variant: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.layer_weights = layer_weights({"conv5_4": 1.0} if layers is None else layers)
        self.vgg = shared_vgg(vgg, list(self.layer_weights), weights, root, variant)
        self.distance_name = distance
        self.distance = make_distance(distance, eps)
        self.key = key

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        ref = get_key(batch, self.key, "the perceptual objective")
        names = list(self.layer_weights)
        fo = self.vgg(output, names)
        with torch.no_grad():
            fr = self.vgg(ref, names)
        total = output.new_zeros(output.shape[0], dtype=torch.float32)
        for n, lam in self.layer_weights.items():
            total = total + lam * self.distance(fo[n], fr[n]).float()
        return total

    def extra_repr(self) -> str:
        return f"layers={self.layer_weights}, distance={self.distance_name!r}"
