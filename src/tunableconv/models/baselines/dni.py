"""DNI: Deep Network Interpolation (Wang et al., "Deep Network Interpolation for Continuous
Imagery Effect Transition", CVPR 2019).

Two networks with identical topology (our plain ResNet): A is trained for objective 1, B is
fine-tuned from A for objective 2. At inference their parameters are interpolated layer by
layer and the interpolated network is run once::

    θ(α) = (1 − α)·θ_A + α·θ_B,        α = p[..., 1] ∈ [0, 1]

computed with ``torch.lerp``, which returns θ_A exactly at α = 0 and θ_B exactly at α = 1.

Training (:meth:`DNI.training_stages`, total split 50/50):

1. ``"A"``: train ``net_a`` at p = (1, 0);
2. ``"B"``: ``on_start`` copies A into B, then train ``net_b`` at p = (0, 1), A frozen.

Per-sample p ``(B, 2)``: the weights depend on α, so the batch is split by distinct α and
the interpolated network runs once per distinct value (one run when all rows are equal, as
in both training stages).

:func:`interpolate_networks` is DNI for any number of trained networks of any architecture
(θ = Σ w_i θ_i): the style transfer evaluation blends three single-style networks with the
weights of a point on the simplex.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from ._backbone import Baseline, BaselineConfig, Stage, parameters_of, per_alpha, plain_resnet, two_stages


@dataclass
class DNIConfig(BaselineConfig):
    """Constructor arguments of :class:`DNI` (the backbone fields only)."""


def _copy_a_into_b(model: DNI) -> None:
    model.net_b.load_state_dict(model.net_a.state_dict())


class DNI(Baseline):
    """Two plain ResNets ``net_a`` / ``net_b``; ``model(x, p)`` runs the α-interpolated one."""

    architecture = "dni"
    config_class = DNIConfig
    main_networks = ("net_a", "net_b")

    def __init__(self, config: DNIConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        self.net_a = plain_resnet(self.config)
        self.net_b = plain_resnet(self.config)
        _copy_a_into_b(self)  # an untrained DNI is then the same network at every alpha

    def interpolated_parameters(self, alpha: Tensor) -> dict[str, Tensor]:
        """θ(α) = (1 − α)·θ_A + α·θ_B for every parameter name of the ResNet (α a scalar tensor)."""
        theta_b = dict(self.net_b.named_parameters())
        return {name: torch.lerp(w, theta_b[name], alpha) for name, w in self.net_a.named_parameters()}

    def forward(self, x: Tensor, p: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H·s, W·s)``."""
        alpha = self.alpha(p, x)
        return per_alpha(x, alpha, lambda xs, a: functional_call(self.net_a, self.interpolated_parameters(a), (xs,)))

    def training_stages(self, total_steps: int) -> list[Stage]:
        """Train A at p = (1, 0); copy A into B; fine-tune B at p = (0, 1). 50/50 split."""
        return two_stages(total_steps, parameters_of("net_a"), parameters_of("net_b"), _copy_a_into_b,
                          names=("A", "B"), endpoints=self.endpoints(), skip_first=self.config.pretrained_main)


def interpolate_networks(networks: "list[torch.nn.Module]", weights: "Tensor | list[float]",
                         into: "torch.nn.Module | None" = None) -> "torch.nn.Module":
    r"""DNI over any number of networks of one architecture: the network whose parameters and
    floating-point buffers are the weighted sums of theirs,

    .. math:: θ(w) = \sum_i w_i\, θ_i,

    e.g. three single-style networks blended by the weights w of a point on the simplex (the
    style transfer rival of a tunable network). The networks should share an ancestry (one
    initialisation, or fine-tuned from one another): weights of unrelated networks do not
    interpolate meaningfully. Integer buffers are taken from the first network.

    Args:
        networks: N >= 1 modules with identical state-dict keys and shapes.
        weights: N numbers (any real values; on the simplex they sum to 1).
        into: a module of the same architecture to load the result into (reused across calls);
            None: a deep copy of the first network.

    Returns:
        ``into`` (or the copy), in the first network's training mode.

    Raises:
        ValueError: no networks, a weight count that does not match, or state dicts that differ
            in keys or shapes.
    """
    import copy

    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if not networks or w.numel() != len(networks):
        raise ValueError(f"{len(networks)} networks but {w.numel()} weights")
    states = [n.state_dict() for n in networks]
    keys = list(states[0])
    for i, st in enumerate(states[1:], 1):
        if list(st) != keys or any(st[k].shape != states[0][k].shape for k in keys):
            raise ValueError(f"network {i} does not have network 0's parameters (keys or shapes differ)")
    blended = {}
    for k in keys:
        first = states[0][k]
        if first.is_floating_point():
            acc = sum(float(wi) * st[k].double() for wi, st in zip(w, states))
            blended[k] = acc.to(first.dtype)
        else:
            blended[k] = first.clone()
    out = into if into is not None else copy.deepcopy(networks[0])
    out.load_state_dict(blended)
    return out.train(networks[0].training)
