r"""Losses for parametric multi-loss optimisation.

A tunable network gets interactive parameters p ``(B, P)`` and the *same* p mixes P
objectives: ``loss = mean_b Σ_i p[b,i] · w_i · L_i[b]`` (:class:`ParametricMultiLoss`).

- samplers of p: :class:`UniformCube`, :class:`UniformSimplex`, :class:`VertexEdgeMixture`,
  :func:`make_sampler`;
- objectives (``obj(output, batch) -> (B,)``): :class:`Fidelity`, :class:`NoisePreservation`,
  :class:`Sharpening`, :class:`PerceptualObjective`, :class:`AdversarialObjective` (RaGAN,
  :class:`MultiScaleDiscriminator`), :class:`StyleObjective`, :class:`TotalVariation`,
  :class:`Chroma`, and :class:`CompositeObjective` to sum several into one;
- :class:`VGG19Features`: frozen VGG19 in plain torch (torchvision or "normalised" weights);
  :class:`VGG16Features`: frozen ImageNet VGG16 (Johnson et al.'s style and content layers);
- :class:`StyleMixLoss`: P styles mixed by p (the p-weighted losses, or one loss to the p-blended
  Gram target) from one pass of the output through VGG.

Depends on torch, numpy and safetensors only.
"""

from __future__ import annotations

from .gan import AdversarialObjective, MultiScaleDiscriminator, ragan_discriminator_loss, ragan_generator_loss
from .multiloss import BlendedTargetLoss, CompositeObjective, MultiLossResult, ParametricMultiLoss
from .objectives import (
    Chroma,
    Fidelity,
    NoisePreservation,
    Objective,
    PixelObjective,
    Sharpening,
    TotalVariation,
    gaussian_blur,
    gaussian_kernel1d,
    make_distance,
    per_sample_charbonnier,
    per_sample_l1,
    per_sample_l2,
    rgb_to_yuv,
    total_variation,
)
from .perceptual import PerceptualObjective
from .samplers import ParamSampler, UniformCube, UniformSimplex, VertexEdgeMixture, make_sampler
from .style import StyleMixLoss, StyleObjective, gram_matrix
from .vgg import VGG16_LAYERS, VGG19_LAYERS, VGG16Features, VGG19Features, find_torchvision_vgg19

__all__ = [
    "ParametricMultiLoss",
    "BlendedTargetLoss",
    "MultiLossResult",
    "CompositeObjective",
    "Objective",
    "PixelObjective",
    "Fidelity",
    "NoisePreservation",
    "Sharpening",
    "TotalVariation",
    "Chroma",
    "PerceptualObjective",
    "StyleObjective",
    "StyleMixLoss",
    "AdversarialObjective",
    "MultiScaleDiscriminator",
    "ragan_generator_loss",
    "ragan_discriminator_loss",
    "VGG19Features",
    "VGG19_LAYERS",
    "VGG16Features",
    "VGG16_LAYERS",
    "find_torchvision_vgg19",
    "ParamSampler",
    "UniformCube",
    "UniformSimplex",
    "VertexEdgeMixture",
    "make_sampler",
    "make_distance",
    "per_sample_l1",
    "per_sample_l2",
    "per_sample_charbonnier",
    "gaussian_blur",
    "gaussian_kernel1d",
    "total_variation",
    "rgb_to_yuv",
    "gram_matrix",
]
