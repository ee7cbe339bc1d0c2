r"""TSNet and TA+TSNet: CResMD searched into a task-specific (and task-agnostic) pruned network.

From "Searching for Controllable Image Restoration Networks" (Kim et al., ICCV 2021;
``../shared/papers/searching-controllable-restoration-tsnet.txt``). No code was published;
this is written from the paper's text. The text we have lost the symbols of its equations
in extraction (``formally given by, | (5) | where , denotes ...``), so every formula below is
read from the prose around the equation and the choices are said where we made them.

The super network
-----------------
:class:`~tunableconv.models.baselines.cresmd.CResMD` of this package (head conv, N residual
blocks conv–ReLU–conv whose residual is scaled per channel by ``s_i(c)``, body conv whose
long residual is scaled by ``s_g(c)``, optional upsampler, tail conv, input residual), with
``c`` the task vector τ: the task's knobs p (the paper's "relative ground truth", TSNet-m,
Sec. 3.3) or, with ``condition="degradation"``, the true levels (the paper's TSNet, trained
to the ground truth). All convs have C = ``channels`` channels except the head's input and
the tail's output.

Channel selection (CS) modules (Sec. 3.2, "Channel selection module", and Sec. 7.3: "the
input and output channels of all convolution layers in CResMD except the input channels of
the first convolution layer and the PixelShuffle layer and the output channels of the last
convolution layer"). The M = 3N + 4 modules, in network order (the order Eq. (10) uses)::

    0            head.out       which stream channels the head writes
    1 + 3i       block_i.in     which stream channels conv1 of block i reads
    2 + 3i       block_i.mid    conv1's outputs = conv2's inputs (one module: both gate one tensor)
    3 + 3i       block_i.out    which stream channels conv2 of block i writes
    3N + 1       body_tail.in
    3N + 2       body_tail.out
    3N + 3       tail.in        the tail conv's inputs (after the upsampler)

Every module gates C channels. The upsampler's convs (before a PixelShuffle) are not gated.

Gate (Eq. 5). Module i multiplies its channels by a binary gate

.. math:: g(a) = \mathbb 1[a \ge 0]  \quad\text{(forward)},\qquad
          \frac{\partial g}{\partial a} := \sigma(a)\,(1 - \sigma(a)) \quad\text{(backward)}

— the straight-through estimator with the sigmoid's slope (:func:`binary_gate`); σ(a) is the
gate's probability. Its logit is the *task preference* α^t_{i,c} for a task-specific module
and the auxiliary β_{i,c} for a task-agnostic one.

Architecture controller (Eq. 6). ``α^t_i = f_i(τ_t)`` with f_i three fully connected layers
and two ReLUs (Sec. 7.3), one controller per CS module: ``K -> H -> H -> C``
(:class:`Controller`, H = ``controller_hidden``), PyTorch's default initialisation: the search
starts from random gates that differ from task to task. A start from the dense CResMD,
``gate_init`` > 0 (small last-layer weights and that bias), makes every task agree on every
channel at once, so Eq. (8) holds from the first step and TA+TSNet would share the whole
network before the controllers learn anything (and a shared module's task logits get no
gradient from the loss, so it never comes back). ``agnostic_warmup_steps`` is our answer: for
the first that many search steps the statistics gather (Eqs. 7-9) but no decision is taken
and R_TA is off, so the FLOPs regulariser first makes the tasks' preferences differ where
they need to; then the search goes on, deciding (the same optimiser and schedule). The paper
says nothing of it; it is needed only with open gates.

Task-agnostic search (Eqs. 7-10). We read β as "the auxiliary parameters" that "first
gather the preference on each channel from tasks throughout training": an EMA, not a
gradient-trained parameter. Per training step with a batch of N task vectors:

.. math::
    \beta_{i,c} &\leftarrow \gamma\,\beta_{i,c} + (1-\gamma)\,\tfrac1N \textstyle\sum_t \alpha^t_{i,c}
        && \text{(7), } \beta = 0 \text{ at first}\\
    A_i &= \tfrac{1}{N C}\textstyle\sum_t\sum_c \mathbb 1\bigl[g(\alpha^t_{i,c}) = g(\beta_{i,c})\bigr],
        \qquad b_i = \mathbb 1[A_i \ge \rho] && \text{(8)}\\
    \bar b_i &\leftarrow \gamma\,\bar b_i + (1-\gamma)\, b_i && \text{(9), } \bar b = 0 \text{ at first}\\
    d_i &= \textstyle\prod_{j \le i} \mathbb 1[\bar b_j > \theta] && \text{(10)}

(:func:`agreement`, :func:`shared_prefix`). A_i is the share of (task, channel) pairs of the
batch that agree with the consensus g(β); the paper's ρ counts tasks ("TA+TSNet changes [it]
to the size of mini-batch"), ours is that count over N: ``agreement`` = 1.0 means every task
of the batch agrees on every channel of the module. d_i = 1: module i is task-agnostic and
gates with g(β_i) for every task; the product makes the shared modules a prefix, so the
layers they cover are computed once per image. "Task-agnostic architecture removes the
residual scaling module": a block whose output module is shared drops s_i(c) (scale 1), and
the long residual drops s_g(c) once body_tail.out is shared. TSNet is this with d ≡ 0 (the
statistics are still tracked and exported, the decision is never taken).

Regularisers (Eqs. 11-12). The search minimises

.. math:: \mathcal L(W, \theta_f) + \lambda_1 R_{\mathrm{FLOPs}} + \lambda_2 R_{\mathrm{TA}}

- R_FLOPs (Eq. 4, "the amount of resources for currently searched architectures"): the
  FLOPs per effect of producing T = ``effects`` effects, shared layers once, over the dense
  CResMD's FLOPs per effect:
  :math:`R = \bigl[\tfrac1T F_{\text{shared}} + \tfrac1N\sum_t F_{\text{specific}}(t)\bigr] / F_{\text{dense}}`.
  A conv with gated input and output counts :math:`2k^2HW\,n_{in}\,n_{out}` with
  :math:`n = \sum_c g_c` (what ``torch.utils.flop_counter.FlopCounterMode`` counts for a conv
  of those channel counts). With the binary gates of the forward its value is the FLOPs of the
  architecture being trained, and its gradient flows through the straight-through slope; the
  same formula of the probabilities σ(α) is the expected FLOPs under independent Bernoulli
  gates (:meth:`TSNet.regulariser_flops`, ``expected=True``).
- R_TA (Eq. 12), the disagreement of the tasks at the module after the shared prefix:
  :math:`R_{TA} = \sum_i d_{i-1}\,\tfrac{1}{NC}\sum_t\sum_c |g(\alpha^t_{i,c}) - g(\beta_{i,c})|`
  with d_0 = 1 (the input image is shared). Its value is 1 − A_i per module; it pushes the
  disagreeing preferences of the first not-yet-shared module (and keeps the shared ones)
  towards the consensus.

Training (Sec. 7.3). Two stages (:meth:`TSNet.training_stages`): *search* (every parameter:
backbone, scales, controllers; the regularisers on; the statistics updated) for
``search_share`` of the steps, then *fine-tune* (the architecture frozen: the controllers'
weights and the decisions d fixed; backbone and scales trained with the searched per-task
architecture). Hyper-parameters: the text lost the paper's values; ours (config fields) are
γ = ``ema_decay`` 0.99, ρ = ``agreement`` 1.0 (the whole batch, as TA+TSNet), θ =
``share_threshold`` 0.5, λ_1 = ``flops_weight`` 0.1, λ_2 = ``agnostic_weight`` 0 for TSNet
(the paper's "and 0") and 0.1 for TA+TSNet, T = ``effects`` 27, half the steps searching,
``agnostic_warmup_steps`` 0.

The trainer adds :meth:`TSNet.regularisation` to the loss (its generic hook for a model's
own terms) and stores :meth:`TSNet.file_info` (the searched architecture) in the model file.

Inference. ``model(x, c)`` with gradients off and in eval mode runs the *pruned* network
(:meth:`TSNet.forward_pruned`): for each distinct τ the kept channels' weights are sliced out
(``W[kept_out][:, kept_in]``) so pruned channels are not computed; with gradients on it runs
the gated dense network (:meth:`TSNet.forward_dense`), the same function.
:meth:`TSNet.sweep` ``(x, conditions (T, K)) -> (T, B, C, H', W')`` runs the shared layers
once and the task-specific pruned rest per effect. :meth:`TSNet.count_flops` counts the FLOPs
of that (checked against ``FlopCounterMode`` in the tests); :meth:`TSNet.searched_architecture`
exports channels kept per module per effect and the shared modules and layers.

Running it::

    tunableconv compare --task restore3 --methods tsnet,ta-tsnet --budget small --train-only

(``tsnet-condition`` / ``ta-tsnet-condition``: the same conditioned on the true levels, once a
task lists them as rivals.) Cost, measured on this project's 2-core CPU with one thread (load
~3.5, 2026-12-06): a search step at ``restore3-small``'s size (32 channels × 6 blocks, batch 16,
48², per-sample p; forward, regularisers, backward, Adam) takes 0.37 s (TA+TSNet 0.39 s)
against CResMD's 0.29 s on the same batches, so its 5000 steps take ~31 min of model time.
Calibration on ``restore3`` (``results/many-effects``): with random gates λ_1 = 0.1 collapses
(0.2 % of the FLOPs); with ``gate_init`` 2, λ_1 = 0.003 keeps 5-7 % of CResMD's FLOPs for 27
effects at -0.3 to -0.4 dB, and TA+TSNet (``agnostic_warmup_steps`` 750) shares the head and
every block.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InvalidParamsError
from ...nn.params import check_params
from ._backbone import Stage
from .cresmd import CResMD, CResMDConfig

#: the HD size (H, W) the exported architecture's FLOPs are counted at
HD = (720, 1280)


# ----------------------------------------------------------------------------------------
# the gate (Eq. 5), the agreement (Eq. 8), the shared prefix (Eq. 10)
# ----------------------------------------------------------------------------------------
class _BinaryGate(torch.autograd.Function):
    """1[a >= 0] forward; the sigmoid's slope σ(a)(1 − σ(a)) backward (straight-through)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor) -> Tensor:
        ctx.save_for_backward(logits)
        return (logits >= 0).to(logits.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (logits,) = ctx.saved_tensors
        s = torch.sigmoid(logits)
        return grad * s * (1 - s)


def binary_gate(logits: Tensor) -> Tensor:
    """g(a) of Eq. (5), any shape: exactly 0.0 or 1.0 forward, gradient σ'(a) backward."""
    return _BinaryGate.apply(logits)


def agreement(logits: Tensor, consensus: Tensor) -> Tensor:
    """A_i / N of Eq. (8): the share of (task, channel) pairs whose gate agrees with the consensus.

    ``logits`` α ``(N, M, C)`` (N tasks, M modules, C channels), ``consensus`` β ``(M, C)``
    -> ``(M,)`` in [0, 1]: ``mean_{t,c} 1[g(α^t_{i,c}) = g(β_{i,c})]``.
    """
    return ((logits >= 0) == (consensus >= 0)).to(logits.dtype).mean(dim=(0, 2))


def shared_prefix(agree_ema: Tensor, threshold: float) -> Tensor:
    """d of Eq. (10): ``d_i = Π_{j<=i} 1[b̄_j > θ]``, ``(M,)`` float 0/1 — a prefix of ones."""
    return torch.cumprod((agree_ema > threshold).to(agree_ema.dtype), dim=0)


def conv_flops(n_in: Tensor | int, n_out: Tensor | int, kernel: int, height: int, width: int) -> Tensor | int:
    """FLOPs of a stride-1 'same' conv: ``2 k² H W n_in n_out`` (multiply-adds count 2, the
    bias not at all: ``FlopCounterMode``'s convention). ``n`` may be gate sums (tensors)."""
    return 2 * kernel * kernel * height * width * n_in * n_out


# ----------------------------------------------------------------------------------------
# configuration and the controller (Eq. 6)
# ----------------------------------------------------------------------------------------
@dataclass
class TSNetConfig(CResMDConfig):
    """Constructor arguments of :class:`TSNet` (CResMD's plus the search's; module docstring).

    ``task_agnostic``: search shared early layers too (TA+TSNet). ``controller_hidden``: H of
    each controller. ``gate_init``: None (default init: random gates), or the logits' starting
    value (> 0: all channels kept). ``ema_decay`` γ (Eqs. 7, 9); ``agreement`` ρ/N (Eq. 8);
    ``share_threshold`` θ (Eq. 10); ``flops_weight`` λ_1 and ``agnostic_weight`` λ_2 (Eq. 11);
    ``effects`` T, the number of effects one image's sweep makes (Eq. 4); ``search_share``: the
    share of the training steps spent searching (the rest fine-tunes the frozen architecture);
    ``agnostic_warmup_steps``: the first search steps, during which the statistics gather but no
    module is shared and R_TA is off (0: decide from the first step; module docstring).
    """

    task_agnostic: bool = False
    controller_hidden: int = 32
    gate_init: float | None = None
    ema_decay: float = 0.99
    agreement: float = 1.0
    share_threshold: float = 0.5
    flops_weight: float = 0.1
    agnostic_weight: float = 0.0
    effects: int = 27
    search_share: float = 0.5
    agnostic_warmup_steps: int = 0


@dataclass
class TATSNetConfig(TSNetConfig):
    """:class:`TSNetConfig` of TA+TSNet: ``task_agnostic`` on, λ_2 = 0.1."""

    task_agnostic: bool = True
    agnostic_weight: float = 0.1


class Controller(nn.Module):
    """f_i of Eq. (6): ``τ (B, K) -> α (B, C)``, three FC layers with two ReLUs."""

    def __init__(self, inputs: int, hidden: int, channels: int, gate_init: float | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, channels))
        if gate_init is not None:
            with torch.no_grad():  # logits ≈ gate_init at every τ
                self.net[-1].weight.mul_(0.1)
                self.net[-1].bias.fill_(gate_init)

    def forward(self, tau: Tensor) -> Tensor:
        return self.net(tau)


@dataclass
class _Plan:
    """One task's pruned network: kept channels per CS module (None: all) and folded scales
    per block (``res_scale · s_i(c)``, ``(C,)``, or the float ``res_scale`` of a shared block)."""

    keep: list[Tensor | None]
    block_scales: list[Tensor | float]
    global_scale: Tensor | float


# ----------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------
class TSNet(CResMD):
    """CResMD with channel selection modules driven by an architecture controller.

    ``model(x, c)``: x ``(B, C_in, H, W)``, c ``(K,)`` or ``(B, K)`` -> ``(B, C_out, H·s, W·s)``.
    """

    architecture = "tsnet"
    config_class = TSNetConfig
    #: buffers files from before the TA+TSNet warm-up lack (filled in by ``_load_from_state_dict``)
    optional_state = frozenset({"sharing", "search_updates"})

    def __init__(self, config: TSNetConfig | None = None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        cfg = self.config
        checks = [("controller_hidden", cfg.controller_hidden >= 1), ("ema_decay", 0 <= cfg.ema_decay < 1),
                  ("agreement", 0 < cfg.agreement <= 1), ("share_threshold", 0 <= cfg.share_threshold < 1),
                  ("flops_weight", cfg.flops_weight >= 0), ("agnostic_weight", cfg.agnostic_weight >= 0),
                  ("effects", cfg.effects >= 1), ("search_share", 0 < cfg.search_share <= 1),
                  ("agnostic_warmup_steps", int(cfg.agnostic_warmup_steps) == cfg.agnostic_warmup_steps >= 0),
                  ("gate_init", cfg.gate_init is None or abs(cfg.gate_init) < float("inf"))]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name} is out of range, got {getattr(cfg, name)!r}")
        n, c = cfg.num_blocks, cfg.channels
        self.module_names = (["head.out"] + [f"block{i}.{w}" for i in range(n) for w in ("in", "mid", "out")]
                             + ["body_tail.in", "body_tail.out", "tail.in"])
        m = len(self.module_names)
        self.controllers = nn.ModuleList(Controller(cfg.num_params, cfg.controller_hidden, c, cfg.gate_init)
                                         for _ in range(m))
        # float buffers (model files hold floating tensors only); 0/1 flags are read as > 0.5
        self.register_buffer("preference", torch.zeros(m, c))  # β (Eq. 7)
        self.register_buffer("agree_ema", torch.zeros(m))      # b̄ (Eq. 9)
        self.register_buffer("shared", torch.zeros(m))         # d (Eq. 10)
        self.register_buffer("frozen", torch.zeros(()))        # 1 after the search: the architecture is fixed
        # 1 while the decisions d are taken (and R_TA is on): from the start, or after the warm-up;
        # the statistics updates so far (search steps in training mode) say when the warm-up ends
        self.register_buffer("sharing", torch.tensor(0.0 if cfg.agnostic_warmup_steps > 0 else 1.0))
        self.register_buffer("search_updates", torch.zeros(()))
        self._last: tuple[Tensor, Tensor, tuple[int, int]] | None = None
        # the steps of the network, each with the module whose sharing makes it shared
        self._step_module = [0] + [3 + 3 * (k // 2) - (1 - k % 2) for k in range(2 * n)] + [3 * n + 2, 3 * n + 3]

    # --- indices ---------------------------------------------------------------------------
    @staticmethod
    def block_modules(i: int) -> tuple[int, int, int]:
        """The (in, mid, out) module indices of block i."""
        return 1 + 3 * i, 2 + 3 * i, 3 + 3 * i

    @property
    def num_modules(self) -> int:
        return len(self.module_names)

    def shared_modules(self) -> list[bool]:
        """d of Eq. (10) as booleans (always all False for TSNet)."""
        return [bool(v > 0.5) for v in self.shared]

    def shared_steps(self) -> int:
        """How many leading steps (head, conv1_0, conv2_0, ..., body_tail, tail) are shared."""
        d = self.shared_modules()
        return next((k for k, mod in enumerate(self._step_module) if not d[mod]), len(self._step_module))

    @property
    def is_frozen(self) -> bool:
        return bool(self.frozen > 0.5)

    @property
    def is_sharing(self) -> bool:
        """Whether the search takes the decisions d now (False during ``agnostic_warmup_steps``)."""
        return bool(self.sharing > 0.5)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # files written before the warm-up existed decided from the first step
        state_dict.setdefault(prefix + "sharing", self.sharing.new_ones(()))
        state_dict.setdefault(prefix + "search_updates", self.search_updates.new_zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- gates -----------------------------------------------------------------------------
    def task_logits(self, tau: Tensor, modules: list[int] | None = None) -> Tensor:
        """α ``(B, M', C)`` of the task vectors ``tau (B, K)``, for ``modules`` (default all M)."""
        modules = range(self.num_modules) if modules is None else modules
        return torch.stack([self.controllers[i](tau) for i in modules], dim=1)

    def gates(self, logits: Tensor) -> Tensor:
        """The gates ``(B, M, C)`` of a batch's task logits α ``(B, M, C)``: g(α) (straight-through)
        for task-specific modules, g(β) (the consensus, no gradient) for shared ones."""
        d = (self.shared > 0.5).to(logits.dtype)[None, :, None]
        return d * (self.preference >= 0).to(logits.dtype) + (1 - d) * binary_gate(logits)

    # --- the dense gated forward (training) --------------------------------------------------
    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x ``(B, C_in, H, W)``, c ``(K,)`` or ``(B, K)``: the gated network. With gradients off in
        eval mode the pruned path (:meth:`forward_pruned`), else the dense one (:meth:`forward_dense`)."""
        c = self.check(c, x)
        if not self.training and not torch.is_grad_enabled():
            return self.forward_pruned(x, c)
        return self.forward_dense(x, c)

    def forward_dense(self, x: Tensor, c: Tensor) -> Tensor:
        """Every channel computed, then multiplied by its gate ``(B, C, 1, 1)``. In training mode
        (search stage) it updates the statistics of Eqs. (7)-(10) and keeps the gates for
        :meth:`regularisation`."""
        c = self.check(c, x)
        tau = c.expand(x.shape[0], -1) if c.dim() == 1 else c
        logits = self.task_logits(tau)
        if self.training and not self.is_frozen:
            self._update_statistics(logits.detach())
        g = self.gates(logits)
        d = self.shared_modules()
        net, n = self.main, self.config.num_blocks

        def mask(i: int) -> Tensor:
            return g[:, i, :, None, None]

        f0 = net.head(x) * mask(0)
        z = f0
        for i, (block, scale) in enumerate(zip(net.body, self.scales)):
            a, b, o = self.block_modules(i)
            h = block.act(block.conv1(z * mask(a)) * mask(b))
            s = 1.0 if d[o] else scale(tau)[..., None, None]
            z = z + block.res_scale * s * (block.conv2(h) * mask(o))
        res = net.body_tail(z * mask(3 * n + 1)) * mask(3 * n + 2)
        f = f0 + (res if d[3 * n + 2] else self.global_scale(tau)[..., None, None] * res)
        out = net.tail(net.upsampler(f) * mask(3 * n + 3))
        if self.training:
            self._last = (logits, g, (x.shape[-2], x.shape[-1]))
        return self._input_residual(x, out)

    def _input_residual(self, x: Tensor, out: Tensor) -> Tensor:
        if not self.config.input_residual:
            return out
        s = self.config.upscale
        skip = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        return out + skip if skip.shape[1] == out.shape[1] else out

    @torch.no_grad()
    def _update_statistics(self, logits: Tensor) -> None:
        """Eqs. (7)-(10) on a batch's task logits ``(N, M, C)``."""
        gamma = self.config.ema_decay
        self.search_updates.add_(1.0)
        if not self.is_sharing and float(self.search_updates) > self.config.agnostic_warmup_steps:
            self.sharing.fill_(1.0)  # the warm-up is over: decide from this step on
        self.preference.mul_(gamma).add_((1 - gamma) * logits.mean(dim=0))
        b = (agreement(logits, self.preference) >= self.config.agreement).to(logits.dtype)
        self.agree_ema.mul_(gamma).add_((1 - gamma) * b)
        if self.config.task_agnostic and self.is_sharing:
            self.shared.copy_(shared_prefix(self.agree_ema, self.config.share_threshold))

    # --- the regularisers (Eqs. 4, 11, 12) ---------------------------------------------------
    def _layers(self) -> list[tuple[str, nn.Conv2d, int | None, int | None, int, int]]:
        """Every conv: (name, conv, input module or None, output module or None, step, resolution factor)."""
        net, n = self.main, self.config.num_blocks
        layers: list[tuple[str, nn.Conv2d, int | None, int | None, int, int]] = [("head", net.head, None, 0, 0, 1)]
        for i, block in enumerate(net.body):
            a, b, o = self.block_modules(i)
            layers += [(f"block{i}.conv1", block.conv1, a, b, 1 + 2 * i, 1), (f"block{i}.conv2", block.conv2, b, o, 2 + 2 * i, 1)]
        layers.append(("body_tail", net.body_tail, 3 * n + 1, 3 * n + 2, 2 * n + 1, 1))
        res = 1
        for j, layer in enumerate(net.upsampler):
            if isinstance(layer, nn.Conv2d):
                layers.append((f"upsampler.{j}", layer, None, None, 2 * n + 2, res))
            else:
                res *= layer.upscale_factor
        layers.append(("tail", net.tail, 3 * n + 3, None, 2 * n + 2, res))
        return layers

    def layer_flops(self, counts: Tensor, size: tuple[int, int]) -> Tensor:
        """Conv FLOPs per layer ``(..., L)`` from kept-channel counts per module ``(..., M)``
        (gate sums: differentiable) at input size ``size``: :func:`conv_flops` of each layer."""
        h, w = size
        out = []
        for _, conv, mi, mo, _, r in self._layers():
            n_in = conv.in_channels if mi is None else counts[..., mi]
            n_out = conv.out_channels if mo is None else counts[..., mo]
            out.append(conv_flops(n_in, n_out, conv.kernel_size[0], h * r, w * r) * torch.ones_like(counts[..., 0]))
        return torch.stack(out, dim=-1)

    def layer_shared(self) -> list[bool]:
        """Whether each conv of :meth:`_layers` is computed once per image (its step is shared)."""
        s = self.shared_steps()
        return [step < s for *_, step, _ in self._layers()]

    def dense_conv_flops(self, size: tuple[int, int]) -> int:
        """The super network's conv FLOPs per effect per image at ``size``."""
        full = torch.full((self.num_modules,), float(self.config.channels), dtype=torch.float64)
        return int(self.layer_flops(full, size).sum())

    def regulariser_flops(self, gates: Tensor, size: tuple[int, int], expected: bool = False,
                          logits: Tensor | None = None) -> Tensor:
        """R_FLOPs of Eq. (4): ``[F_shared / T + mean_t F_specific(t)] / F_dense`` from the batch's
        gates ``(N, M, C)`` (or, ``expected=True``, the probabilities σ(α) of ``logits`` for the
        task-specific modules: the expected FLOPs). 1 for the dense network (every gate open,
        nothing shared)."""
        if expected:
            assert logits is not None, "expected FLOPs need the logits"
            d = (self.shared > 0.5).to(gates.dtype)[None, :, None]
            gates = d * gates + (1 - d) * torch.sigmoid(logits)
        per_layer = self.layer_flops(gates.sum(dim=-1), size)  # (N, L)
        shared = torch.tensor(self.layer_shared(), device=gates.device)
        weight = torch.where(shared, 1.0 / self.config.effects, 1.0).to(per_layer.dtype)
        return (per_layer * weight).sum(dim=-1).mean() / self.dense_conv_flops(size)

    def regulariser_agnostic(self, logits: Tensor) -> Tensor:
        """R_TA of Eq. (12): ``Σ_i d_{i−1} mean_{t,c} |g(α^t_{i,c}) − g(β_{i,c})|`` with d_0 = 1."""
        d = (self.shared > 0.5).to(logits.dtype)
        previous = torch.cat([d.new_ones(1), d[:-1]])
        target = (self.preference >= 0).to(logits.dtype)
        disagreement = (binary_gate(logits) - target).abs().mean(dim=(0, 2))  # (M,)
        return (previous * disagreement).sum()

    def regularisation(self) -> tuple[Tensor, dict[str, float]]:
        """``λ_1 R_FLOPs + λ_2 R_TA`` of the last training forward (0 after the search, or
        without one), and the values to log. Called by the trainer after the loss."""
        if self._last is None:
            return torch.zeros(()), {}
        logits, g, size = self._last
        self._last = None
        r_flops = self.regulariser_flops(g, size)
        terms = {"flops": float(r_flops.detach()), "shared_modules": float(sum(self.shared_modules())),
                 "kept": float(g.detach().mean())}
        if self.is_frozen:
            return r_flops.new_zeros(()), terms
        total = self.config.flops_weight * r_flops
        if self.config.agnostic_weight > 0 and self.is_sharing:
            r_ta = self.regulariser_agnostic(logits)
            terms["agnostic"] = float(r_ta.detach())
            total = total + self.config.agnostic_weight * r_ta
        return total, terms

    # --- the pruned network (inference) --------------------------------------------------------
    def plans(self, conditions: Tensor) -> list[_Plan]:
        """The pruned network of each task vector ``(T, K)``: one :class:`_Plan` each. Controllers
        and scales run only where the module or block is task-specific."""
        d = self.shared_modules()
        tau = conditions
        specific = [i for i in range(self.num_modules) if not d[i]]
        logits = self.task_logits(tau, specific) if specific else None
        consensus = self.preference >= 0
        n, T = self.config.num_blocks, tau.shape[0]
        block_scales = []
        for i, (block, scale) in enumerate(zip(self.main.body, self.scales)):
            block_scales.append(block.res_scale if d[self.block_modules(i)[2]] else block.res_scale * scale(tau))
        global_scale = 1.0 if d[3 * n + 2] else self.global_scale(tau)
        plans = []
        for t in range(T):
            keep: list[Tensor | None] = []
            for i in range(self.num_modules):
                on = consensus[i] if d[i] else logits[t, specific.index(i)] >= 0
                keep.append(None if bool(on.all()) else on.nonzero().squeeze(1))
            plans.append(_Plan(keep, [s if isinstance(s, float) else s[t] for s in block_scales],
                               global_scale if isinstance(global_scale, float) else global_scale[t]))
        return plans

    def _run(self, state: dict[str, Any], plan: _Plan, start: int, stop: int) -> dict[str, Any]:
        """Steps ``[start, stop)`` of the pruned network on ``state`` (``x``; then ``f0``, ``z``,
        ``h`` (compact: conv1's kept outputs), ``f``, ``y``); returns the new state (out of place)."""
        net, n, keep = self.main, self.config.num_blocks, plan.keep
        state = dict(state)
        for k in range(start, stop):
            if k == 0:
                x = state["x"]
                y = _conv(x, net.head, None, keep[0])
                state["f0"] = state["z"] = y if keep[0] is None else _add(
                    x.new_zeros(x.shape[0], self.config.channels, *x.shape[-2:]), y, keep[0])
            elif k <= 2 * n:
                i = (k - 1) // 2
                block, (a, b, o) = net.body[i], self.block_modules(i)
                if k % 2 == 1:  # conv1 + ReLU: h holds conv1's kept outputs only
                    h = _conv(_select(state["z"], keep[a]), block.conv1, keep[a], keep[b])
                    state["h"] = None if h is None else block.act(h)
                else:  # conv2, its residual scaled and added to the kept stream channels
                    r = _conv(state["h"], block.conv2, keep[b], keep[o], plan.block_scales[i], shape=state["z"])
                    state["z"] = _add(state["z"], r, keep[o])
            elif k == 2 * n + 1:
                r = _conv(_select(state["z"], keep[3 * n + 1]), net.body_tail, keep[3 * n + 1], keep[3 * n + 2],
                          plan.global_scale, shape=state["z"])
                state["f"] = _add(state["f0"], r, keep[3 * n + 2])
            else:
                u = net.upsampler(state["f"])
                y = _conv(_select(u, keep[3 * n + 3]), net.tail, keep[3 * n + 3], None, shape=u)
                state["y"] = self._input_residual(state["x"], y)
        return state

    def forward_pruned(self, x: Tensor, c: Tensor) -> Tensor:
        """The pruned network: per distinct task vector, only the kept channels computed
        (weights sliced); equals :meth:`forward_dense` at the same c (to rounding)."""
        c = self.check(c, x)
        last = len(self._step_module)
        if c.dim() == 1:
            return self._run({"x": x}, self.plans(c[None])[0], 0, last)["y"]
        values, inverse = torch.unique(c, dim=0, return_inverse=True)
        plans = self.plans(values)
        outs, order = [], []
        for j, plan in enumerate(plans):
            idx = (inverse == j).nonzero().squeeze(1)
            outs.append(self._run({"x": x.index_select(0, idx)}, plan, 0, last)["y"])
            order.append(idx)
        return torch.cat(outs)[torch.argsort(torch.cat(order))]

    def sweep(self, x: Tensor, conditions: Tensor) -> Tensor:
        """Outputs ``(T, B, C_out, H', W')`` of the images x ``(B, C, H, W)`` for T task vectors
        ``conditions (T, K)``: the shared (task-agnostic) steps once, the pruned rest per task."""
        conditions = check_params(conditions, self.num_params, device=x.device, dtype=x.dtype)
        if conditions.dim() != 2:
            raise InvalidParamsError(f"sweep takes T task vectors of shape (T, K), got {tuple(conditions.shape)}")
        plans = self.plans(conditions)
        s, last = self.shared_steps(), len(self._step_module)
        state = self._run({"x": x}, plans[0], 0, s)  # the shared steps use the consensus only
        return torch.stack([self._run(state, plan, s, last)["y"] for plan in plans])

    # --- cost and the searched architecture -------------------------------------------------------
    def count_flops(self, conditions: Tensor, size: tuple[int, int], batch: int = 1) -> dict[str, Any]:
        """FLOPs of :meth:`sweep` for ``conditions (T, K)`` on ``batch`` images of ``size`` (H, W):
        ``shared`` (once), ``specific`` (per task: its convs and its controllers and scales),
        ``total``, ``dense_per_effect`` (CResMD: every conv and scale), ``ratio`` = total over
        T dense passes. What ``FlopCounterMode`` counts for these calls (convs, linears)."""
        conditions = check_params(conditions, self.num_params)
        plans = self.plans(conditions)
        cfg, m = self.config, self.num_modules
        d = self.shared_modules()
        shared = torch.tensor(self.layer_shared())
        linear = 2 * cfg.num_params * cfg.channels  # one CResMD scale layer
        ctrl = 2 * (cfg.num_params * cfg.controller_hidden + cfg.controller_hidden ** 2 + cfg.controller_hidden * cfg.channels)
        aux = ctrl * sum(not v for v in d) + linear * (sum(not d[self.block_modules(i)[2]] for i in range(cfg.num_blocks))
                                                      + (not d[3 * cfg.num_blocks + 2]))
        specific, shared_flops = [], 0
        for plan in plans:
            counts = torch.tensor([cfg.channels if k is None else k.numel() for k in plan.keep], dtype=torch.float64)
            per_layer = self.layer_flops(counts, size) * batch
            shared_flops = int(per_layer[shared].sum())
            specific.append(int(per_layer[~shared].sum()) + aux)
        dense = self.dense_conv_flops(size) * batch + linear * (cfg.num_blocks + 1)
        total = shared_flops + sum(specific)
        return {"shared": shared_flops, "specific": specific, "total": total, "dense_per_effect": dense,
                "ratio": total / (dense * len(plans)), "modules": m}

    def default_effects(self) -> Tensor:
        """The effects the exported architecture is shown at: {0, ½, 1}^K on the cube (knob 0
        fastest: restore3's 27-effect grid for K = 3), the step-½ lattice on the simplex."""
        k, vals = self.num_params, (0.0, 0.5, 1.0)
        if self.domain == "cube":
            return torch.tensor([tuple(reversed(v)) for v in itertools.product(vals, repeat=k)], dtype=torch.float32)
        pts = [v for v in itertools.product(vals, repeat=k) if abs(sum(v) - 1) < 1e-9]
        return torch.tensor(pts, dtype=torch.float32)

    @torch.no_grad()
    def searched_architecture(self, conditions: Tensor | None = None, size: tuple[int, int] = HD) -> dict[str, Any]:
        """The architecture as JSON: the modules, which are shared (and the convs computed once),
        the channels kept per module for each effect (shared modules: the same for all), the
        statistics of the search, and the FLOPs of the sweep at ``size`` vs T dense passes."""
        conditions = self.default_effects() if conditions is None else torch.as_tensor(conditions, dtype=torch.float32)
        plans = self.plans(conditions)
        d = self.shared_modules()
        kept = [[self.config.channels if k is None else int(k.numel()) for k in p.keep] for p in plans]
        flops = self.count_flops(conditions, size)
        return {
            "variant": "TA+TSNet" if self.config.task_agnostic else "TSNet",
            "frozen": self.is_frozen, "channels": self.config.channels, "modules": list(self.module_names),
            "shared_modules": [nm for nm, s in zip(self.module_names, d) if s],
            "shared_layers": [name for (name, *_), s in zip(self._layers(), self.layer_shared()) if s],
            "agreement_ema": [round(float(v), 4) for v in self.agree_ema],
            "effects": [{"condition": [round(float(v), 4) for v in c], "kept": k, "gflops": round(f / 1e9, 3)}
                        for c, k, f in zip(conditions, kept, flops["specific"])],
            "flops_at": list(size), "gflops_shared": round(flops["shared"] / 1e9, 3),
            "gflops_total": round(flops["total"] / 1e9, 3),
            "gflops_dense_per_effect": round(flops["dense_per_effect"] / 1e9, 3), "flops_ratio": round(flops["ratio"], 4),
        }

    def file_info(self) -> dict[str, Any]:
        """What the trainer adds to the model file's ``info``: the searched architecture."""
        return {"searched_architecture": self.searched_architecture()}

    # --- training ------------------------------------------------------------------------------
    @torch.no_grad()
    def freeze_architecture(self, model: nn.Module | None = None) -> None:
        """End the search: the decisions d (snapped to 0/1) and the statistics stop changing."""
        self.shared.copy_((self.shared > 0.5).to(self.shared.dtype))
        self.frozen.fill_(1.0)

    def training_stages(self, total_steps: int) -> list[Stage]:
        """``search`` (every parameter, the regularisers on) for ``search_share`` of the steps,
        then ``fine-tune`` (the architecture frozen; everything but the controllers trained). p is
        drawn per sample, or fixed at ``reference_p`` when conditioned on the degradation."""
        total_steps = int(total_steps)
        if total_steps < 1:
            raise ValueError(f"{self.architecture} needs at least 1 training step, got {total_steps}")
        search = max(1, min(total_steps, round(total_steps * self.config.search_share)))
        if self.config.task_agnostic and self.config.agnostic_warmup_steps >= search:
            raise ValueError(f"agnostic_warmup_steps ({self.config.agnostic_warmup_steps}) must be shorter than the "
                             f"search ({search} of the {total_steps} steps): nothing would ever be shared")
        p = tuple(float(v) for v in self.config.reference_p) if self.config.condition == "degradation" else None

        def everything(model: nn.Module) -> list[nn.Parameter]:
            return list(model.parameters())

        def backbone(model: nn.Module) -> list[nn.Parameter]:
            ctrl = {id(q) for q in model.controllers.parameters()}
            return [q for q in model.parameters() if id(q) not in ctrl]

        def freeze(model: nn.Module) -> None:
            model.freeze_architecture()

        return [Stage("search", search, p, everything), Stage("fine-tune", total_steps - search, p, backbone, freeze)]

    def load_supernet(self, state: dict[str, Tensor]) -> None:
        """Start from a trained CResMD's state dict (``main``, ``scales``, ``global_scale``)."""
        own = self.state_dict()
        missing = [k for k in state if k not in own]
        if missing:
            raise ValueError(f"not a CResMD of this size: unexpected {missing[:3]}")
        self.load_state_dict({**own, **state})


class TATSNet(TSNet):
    """TA+TSNet: :class:`TSNet` with ``task_agnostic`` on (shared early layers searched too)."""

    architecture = "ta-tsnet"
    config_class = TATSNetConfig


# ----------------------------------------------------------------------------------------
# the pruned network's pieces
# ----------------------------------------------------------------------------------------
def _select(x: Tensor, keep: Tensor | None) -> Tensor:
    """The kept channels of x (all when ``keep`` is None)."""
    return x if keep is None else x.index_select(1, keep)


def _conv(x: Tensor | None, conv: nn.Conv2d, keep_in: Tensor | None, keep_out: Tensor | None,
          scale: Tensor | float = 1.0, shape: Tensor | None = None) -> Tensor | None:
    """``conv`` restricted to kept inputs (x holds exactly those) and kept outputs, times ``scale``
    (``(C,)`` per output channel, folded into the weights). None when no output is kept; the
    (scaled) bias when no input is (``shape``: a tensor of the output's batch and size)."""
    w, b = conv.weight, conv.bias
    if keep_out is not None:
        if keep_out.numel() == 0:
            return None
        w, b = w.index_select(0, keep_out), b.index_select(0, keep_out)
        if isinstance(scale, Tensor):
            scale = scale.index_select(0, keep_out)
    if keep_in is not None:
        w = w.index_select(1, keep_in)
    if isinstance(scale, Tensor):
        w, b = w * scale[:, None, None, None], b * scale
    elif scale != 1.0:
        w, b = w * scale, b * scale
    if w.shape[1] == 0 or x is None:  # nothing reaches the conv: its (scaled) bias
        ref = shape if shape is not None else x
        return b.reshape(1, -1, 1, 1).expand(ref.shape[0], -1, ref.shape[-2], ref.shape[-1]).contiguous()
    return F.conv2d(x, w, b, padding=conv.padding)


def _add(z: Tensor, r: Tensor | None, keep: Tensor | None) -> Tensor:
    """z plus r on the channels ``keep`` (all when None; nothing when r is None), out of place."""
    if r is None:
        return z
    return z + r if keep is None else z.index_add(1, keep, r)
