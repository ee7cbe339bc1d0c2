r"""Style transfer with one knob per style on the simplex: the paper's Sec. 4.2 and Fig. 7.

One feed-forward network holds P styles (default three: Mosaic, Edtaonisl, Kandinsky);
p = (p_1, …, p_P) on the simplex picks any blend of them.

**Input.** A content photo, unchanged (no degradation): random ``data.patch_size`` crops of
``data.train`` and of the folders in ``task.more_content`` (the recipes: COCO photos from
``content/coco100`` plus ``train/bsds400``), flipped and rotated. The network's output y has the
crop's size.

**Objectives** (Johnson et al. 2016), with VGG16 features φ_l (:class:`~tunableconv.losses.vgg.VGG16Features`,
torchvision's ImageNet weights, ImageNet normalisation) and the normalised Gram matrix
``G_l(x) = F_l F_lᵀ / (C_l H_l W_l)`` (F_l the ``(C_l, H_l W_l)`` features of layer l), objective i is

.. math::
    L_i(y) = w_c \,\mathrm{mean}\bigl(φ_{relu2\_2}(y) − φ_{relu2\_2}(c)\bigr)^2
           + λ_i \sum_{l} \bigl\lVert G_l(y) − G_l(s_i) \bigr\rVert_F^2 + w_{tv}\, TV(y)

with c the content crop, s_i style image i (resized so that its shorter side is
``task.style_size``), the style layers l ∈ {relu1_2, relu2_2, relu3_3, relu4_3}, λ_i =
``task.style_weight`` × ``task.style_balance[i]`` and TV the anisotropic L1 total variation
(mean absolute difference of neighbouring pixels, both directions). The terms are those of
:class:`~tunableconv.losses.StyleObjective` (one per style, sharing one VGG16).

**Mixing with p** (``task.mix``):

- ``"losses"`` (the paper's): ``Σ_i p_i L_i(y)``; since Σ p_i = 1 the content and TV terms keep
  their weights and the style term is ``Σ_i p_i λ_i ‖G_l(y) − G_l(s_i)‖²``;
- ``"targets"``: one style loss to the blended Gram target, ``λ(p) ‖G_l(y) − Σ_i p_i G_l(s_i)‖²``
  with ``λ(p) = Σ_i p_i λ_i``.

Both are :class:`~tunableconv.losses.StyleMixLoss` (one VGG pass and one set of Gram matrices
of the output serve every style).

At a vertex p = e_i both are L_i. The Frobenius distance is quadratic in G, so with equal λ_i
(``style_balance`` all 1) the two have the *same gradient* (they differ by a constant); they
differ when the styles are weighted differently (``style_balance``): the mixed losses pull the
Gram matrices towards ``Σ_i p_i λ_i G(s_i) / Σ_i p_i λ_i``, the blended target towards
``Σ_i p_i G(s_i)``.

**p sampling**: ``task.sampler = "mixture"`` with ``vertex_share`` and ``edge_share`` puts that
share of the samples exactly on the vertices (the pure styles) and uniformly on the edges
(two-style blends); the rest is uniform on the simplex (:class:`~tunableconv.losses.VertexEdgeMixture`).

**Knobs**: one per style, named after the style image's file stem (``mosaic``, ``edtaonisl``,
``kandinsky``), on the simplex; the default p is the first style's vertex. No condition (K = 0).
The fixed single-style twin (``task.single_style``) learns one style's objective alone, without
knobs.

**Measures** (:meth:`StyleTask.style_measures`, reported by :meth:`StyleTask.output_measures` in
every evaluation row and by the validation): ``style_<name>`` = ``Σ_l ‖G_l(y) − G_l(s_name)‖_F²``
(unweighted, to every style of ``task.styles``) and ``content`` = the relu2_2 mean squared
distance to the content image, on the output clamped to [0, 1]. Lower is closer. There is no
pixel target: PSNR/SSIM against the content image do not measure a stylisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..knobs import Knob, KnobSpace
from .base import (EvalCase, RunnerFacts, Sample, Task, TaskSection, check_choice, check_int, check_number, check_numbers,
                   check_sampler_fields, check_text)

if TYPE_CHECKING:
    from ..losses import ParametricMultiLoss, StyleObjective
    from ..train.config import Recipe

#: the styles of the paper's Fig. 7, in knob order (images ``<data root>/style/<name>.jpg``)
DEFAULT_STYLES = ("mosaic", "edtaonisl", "kandinsky")

#: Johnson et al.'s VGG16 layers: the Gram (style) layers and the content layer
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"

#: file extensions tried when a style is given by name
STYLE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: the label of the one evaluation case (the content image as it is)
CASE = "content"

#: how many styles a recipe may hold
MAX_STYLES = 8


def find_style(spec: str, data_root: str | None = None) -> Path:
    """The image of style ``spec``: an image file, or a name under ``<data root>/style/``
    (``mosaic`` -> ``style/mosaic.jpg``, ``.jpeg`` or ``.png``). One-line :class:`InputError` otherwise."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    from ..paths import data_root as find_data_root

    folder = find_data_root(data_root) / "style"
    for ext in ("", *STYLE_EXTENSIONS):
        cand = folder / f"{spec}{ext}"
        if cand.is_file():
            return cand
    raise InputError(f"style {spec!r} is neither an image file nor a style in {folder} "
                     f"({', '.join(STYLE_EXTENSIONS)})")


def style_name(spec: str) -> str:
    """The knob name of a style: its file stem (``"style/mosaic.jpg"`` -> ``"mosaic"``)."""
    return Path(spec).stem


@dataclass
class StyleTaskSection(TaskSection):
    """The ``task`` section of a style-transfer recipe. Fields and their ranges (:meth:`validate`):

    - ``styles``: the style images in knob order, 2 to :data:`MAX_STYLES` names under
      ``<data root>/style/`` or image paths, with distinct file stems (the knob names);
    - ``single_style``: null, or one of ``styles`` (its stem): the fixed twin that learns that
      style alone, without knobs;
    - ``style_size``: the shorter side the style images are resized to (bicubic), in [16, 4096],
      or 0 to keep them as they are;
    - ``more_content``: further content folders (names under the data root or paths) whose
      images join ``data.train``'s;
    - ``style_weight``: λ_s, > 0; ``style_balance``: null (all 1) or one factor > 0 per style
      (λ_i = λ_s · factor_i);
    - ``content_weight``: w_c, >= 0; ``tv_weight``: w_tv, >= 0;
    - ``vgg_weights``: ``default`` (``vgg16_features_fp16.safetensors`` in the weights root), a
      path to that file, or ``random`` (random VGG16 weights: tests only);
    - ``mix``: ``losses`` (Σ_i p_i L_i, the paper's) or ``targets`` (the blended Gram target);
    - ``sampler``: ``simplex`` or ``mixture``; ``vertex_share``, ``edge_share`` (each in [0, 1],
      sum <= 1); ``p_granularity``: ``sample``, ``batch`` or ``group:N``;
    - ``val_grid``: the validated p, a list of points of the simplex (P entries >= 0 summing to
      1); empty: the vertices and the centre.
    """

    name: str = "style"
    styles: list = field(default_factory=lambda: list(DEFAULT_STYLES))
    single_style: str | None = None
    style_size: int = 256
    more_content: list = field(default_factory=list)
    style_weight: float = 0.2
    style_balance: list | None = None
    content_weight: float = 1.0
    tv_weight: float = 1.0
    vgg_weights: str = "default"
    mix: str = "losses"
    sampler: str = "simplex"
    vertex_share: float = 0.0
    edge_share: float = 0.0
    p_granularity: str = "sample"
    val_grid: list = field(default_factory=list)

    def validate(self, where: str = "task") -> None:
        """Raise a one-line :class:`InputError` naming the first field out of its range (see above)."""
        super().validate(where)
        if not (isinstance(self.styles, list) and 2 <= len(self.styles) <= MAX_STYLES
                and all(isinstance(s, str) and s.strip() for s in self.styles)):
            raise InputError(f"{where}.styles must be a list of 2 to {MAX_STYLES} style names or image paths, "
                             f"got {self.styles!r:.60}")
        names = [style_name(s) for s in self.styles]
        if len(set(names)) != len(names) or not all(names):
            raise InputError(f"{where}.styles must have distinct file stems (they name the knobs), got {names}")
        if self.single_style is not None and self.single_style not in names:
            raise InputError(f"{where}.single_style must be null or one of {', '.join(names)}, "
                             f"got {self.single_style!r:.60}")
        check_int(f"{where}.style_size", self.style_size, 0, 4096)
        if 0 < self.style_size < 16:
            raise InputError(f"{where}.style_size must be 0 (as it is) or in [16, 4096], got {self.style_size}")
        if not (isinstance(self.more_content, list) and all(isinstance(s, str) and s.strip() for s in self.more_content)):
            raise InputError(f"{where}.more_content must be a list of folders, got {self.more_content!r:.60}")
        check_number(f"{where}.style_weight", self.style_weight, 0.0, lo_open=True)
        if self.style_balance is not None:
            check_numbers(f"{where}.style_balance", self.style_balance, 0.0, lo_open=True, length=len(self.styles))
        check_number(f"{where}.content_weight", self.content_weight, 0.0)
        check_number(f"{where}.tv_weight", self.tv_weight, 0.0)
        check_text(f"{where}.vgg_weights", self.vgg_weights)
        check_choice(f"{where}.mix", self.mix, ("losses", "targets"))
        check_sampler_fields(self, where, ("simplex", "mixture"))
        if not isinstance(self.val_grid, list):
            raise InputError(f"{where}.val_grid must be a list of points of the simplex, got {self.val_grid!r:.60}")
        for p in self.val_grid:
            check_numbers(f"{where}.val_grid", p, 0.0, 1.0, length=len(self.styles))
            if abs(sum(p) - 1.0) > 1e-6:
                raise InputError(f"{where}.val_grid: every point must sum to 1 (the simplex), got {p}")


class StyleTask(Task):
    """Style transfer: one knob per style on the simplex (see the module docstring)."""

    name = "style"
    section_class = StyleTaskSection
    rivals = ("tunable",)
    budgets = {"small": "style3-small", "paper": "style3-paper"}
    metrics = ()
    condition_names = ()

    def __init__(self, recipe: "Recipe") -> None:
        super().__init__(recipe)  # validates the section
        t = self.cfg
        self.style_names: list[str] = [style_name(s) for s in t.styles]
        self.single_style: str | None = t.single_style
        self.sampling = self.make_sampling(t.sampler, t.vertex_share, t.edge_share, t.p_granularity)
        self._images: dict[str, Tensor] | None = None
        self._measurer: nn.ModuleList | None = None

    # --- styles ----------------------------------------------------------------------------
    def style_images(self) -> dict[str, Tensor]:
        """``{name: (3, h, w)}``: every style image of ``task.styles``, RGB in [0, 1], resized
        (MATLAB-style antialiased bicubic, clamped) so that its shorter side is ``task.style_size``."""
        if self._images is None:
            from ..data.degradations import imresize
            from ..io import read_image

            images = {}
            for spec, name in zip(self.cfg.styles, self.style_names):
                img = read_image(find_style(spec, self.recipe.data.root))
                size, (h, w) = self.cfg.style_size, img.shape[-2:]
                if size and min(h, w) != size:
                    shape = (size, max(1, round(w * size / h))) if h <= w else (max(1, round(h * size / w)), size)
                    img = imresize(img[None], size=shape)[0].clamp(0, 1)
                images[name] = img
            self._images = images
        return self._images

    def style_objectives(self, names: Sequence[str], *, style_weights: Sequence[float], content_weight: float,
                         tv_weight: float, weights: str | None = None) -> list["StyleObjective"]:
        """One :class:`~tunableconv.losses.StyleObjective` per style of ``names``, sharing one
        VGG16 (``weights``: default ``task.vgg_weights``) with the layers of the module docstring."""
        from ..losses import StyleObjective
        from ..losses.vgg import VGG16Features

        weights = self.cfg.vgg_weights if weights is None else weights
        vgg = VGG16Features(list(STYLE_LAYERS), weights)
        images = self.style_images()
        return [StyleObjective(images[n], {layer: 1.0 for layer in STYLE_LAYERS}, {CONTENT_LAYER: 1.0}, vgg=vgg,
                               style_weight=w, content_weight=content_weight, tv_weight=tv_weight,
                               content_distance="l2", content_key="clean", name=n)
                for n, w in zip(names, style_weights)]

    # --- objectives ------------------------------------------------------------------------
    @property
    def objective_names(self) -> list[str]:
        """The style names in knob order (the one style of the fixed twin)."""
        return [self.single_style] if self.single_style else list(self.style_names)

    def style_weights(self) -> list[float]:
        """λ_i = ``style_weight`` × ``style_balance[i]`` for the objectives, in order."""
        t = self.cfg
        balance = dict(zip(self.style_names, t.style_balance or [1.0] * len(self.style_names)))
        return [float(t.style_weight) * float(balance[n]) for n in self.objective_names]

    def build_loss(self) -> "ParametricMultiLoss":
        """:class:`~tunableconv.losses.StyleMixLoss` over the style objectives with ``task.mix``
        (the fixed twin: a ``ParametricMultiLoss`` of its one objective)."""
        from ..losses import ParametricMultiLoss, StyleMixLoss

        t = self.cfg
        objectives = self.style_objectives(self.objective_names, style_weights=self.style_weights(),
                                           content_weight=t.content_weight, tv_weight=t.tv_weight)
        if self.single_style:
            return ParametricMultiLoss(objectives)
        return StyleMixLoss(objectives, mix=t.mix)

    # --- samples ---------------------------------------------------------------------------
    def _sample(self, clean: Tensor) -> Sample:
        n = clean.shape[0] if clean.dim() == 4 else None
        return Sample(clean, clean, {}, torch.zeros(n, 0) if n is not None else torch.zeros(0))

    def degrade(self, clean: Tensor, g: torch.Generator) -> Sample:
        """The content crop itself (no random draw)."""
        return self._sample(clean)

    def degrade_case(self, clean: Tensor, case: EvalCase, g: torch.Generator) -> Sample:
        if case.levels:
            raise InputError(f"style transfer has no degradation levels, got {case.levels}")
        return self._sample(clean)

    def evaluation_cases(self, levels: Sequence[Any] | None = None) -> list[EvalCase]:
        """One case, ``content``: the photo as it is (levels are refused)."""
        if levels:
            raise InputError(f"style transfer has no degradation levels to choose, got {list(levels)}")
        return [EvalCase(CASE, {})]

    def validation_cases(self) -> list[EvalCase]:
        return self.evaluation_cases()

    def train_images(self, recipe: "Recipe | None" = None):
        """Random crops of ``data.train`` and of every folder of ``task.more_content``."""
        from ..data import ImageFolderDataset

        d = (recipe or self.recipe).data
        if not self.cfg.more_content:
            return super().train_images(recipe)
        if d.train == "default":
            raise InputError("task.more_content needs data.train to be a folder, not the bundled 'default' source")
        paths = [p for spec in [d.train, *self.cfg.more_content]
                 for p in ImageFolderDataset(spec, d.patch_size, data_root=d.root).paths]
        ds = ImageFolderDataset(paths, d.patch_size, cache=d.cache, data_root=d.root)
        ds.preload()
        return ds

    # --- knobs -------------------------------------------------------------------------------
    def p_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        if self.single_style:
            return KnobSpace([], "simplex", [], [], facts.scale, facts.tiling_exact, facts.receptive_field, facts.color)
        knobs = [Knob(n, f"weight of the {n} style{'' if s == n else f' ({s})'}: 1 alone gives the pure style, 0 "
                         f"none of it; the weights of the styles sum to 1") for n, s in zip(self.style_names, self.cfg.styles)]
        default = [1.0] + [0.0] * (len(knobs) - 1)
        return KnobSpace(knobs, "simplex", default, [], facts.scale, facts.tiling_exact, facts.receptive_field,
                         facts.color)

    def knob_space(self, model: nn.Module | None = None) -> KnobSpace:
        """The model file's knob space: :meth:`p_knob_space` with each knob's icon, a 64-pixel
        thumbnail of its style image (the web app's triangle and ``sweep --grid`` show them)."""
        from dataclasses import replace

        from ..io import icon_data_uri

        space = super().knob_space(model)
        if not space.knobs:
            return space
        images = self.style_images()
        return replace(space, knobs=[replace(k, icon=icon_data_uri(images[k.name])) for k in space.knobs])

    def validation_grid(self) -> list[tuple[str, Tensor]]:
        """``task.val_grid`` (default: the vertices, tagged by style name, and the centre)."""
        P = len(self.style_names)
        if self.cfg.val_grid:
            points = [[float(v) for v in p] for p in self.cfg.val_grid]
        else:
            points = [[float(i == j) for j in range(P)] for i in range(P)] + [[1.0 / P] * P]
        out = []
        for p in points:
            if max(p) == 1.0:
                tag = self.style_names[p.index(1.0)]
            elif max(p) - min(p) < 1e-9:
                tag = "centre"
            else:
                tag = "p=" + ",".join(f"{v:.3g}" for v in p)
            out.append((tag, torch.tensor(p)))
        return out

    def blended_target(self, sample: Sample, p: Tensor) -> Tensor | None:
        """None: the objectives have no pixel targets (a blend of styles is not a blend of images)."""
        return None

    def reference_p(self) -> list[float] | None:
        """``[]`` for the fixed twin (it has no knob); None otherwise (no p gives a ground truth)."""
        return [] if self.single_style else None

    def model_info(self) -> dict[str, Any]:
        t = self.cfg
        return {"styles": dict(zip(self.style_names, t.styles)),
                "single_style": self.single_style, "style_size": t.style_size, "mix": t.mix,
                "style_layers": list(STYLE_LAYERS), "content_layer": CONTENT_LAYER, "style_weights": self.style_weights(),
                "content_weight": t.content_weight, "tv_weight": t.tv_weight, "vgg": "VGG16 (torchvision ImageNet)"}

    # --- measures ----------------------------------------------------------------------------
    def _measures_on(self, device: torch.device) -> nn.ModuleList:
        """Unweighted objectives for every style (λ = 1, w_c = 1, no TV), on ``device``."""
        if self._measurer is None:
            self._measurer = nn.ModuleList(self.style_objectives(self.style_names, style_weights=[1.0] * len(self.style_names),
                                                                 content_weight=1.0, tv_weight=0.0))
        return self._measurer.to(device)

    @torch.no_grad()
    def style_statistics(self, output: Tensor, content: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """:meth:`style_measures` and the Gram matrices they come from: ``(measures, grams)``
        with ``grams[layer]`` ``(B, C_l, C_l)`` the normalised Gram matrix of the output at each
        style layer (the space in which the evaluation measures how far a blend has moved from
        one style to another)."""
        objectives = self._measures_on(output.device)
        y = output.clamp(0, 1)
        grams, others = objectives[0].measure(y, {"clean": content.to(y)})
        out = {f"style_{o.name}": o.gram_distance(grams) for o in objectives}
        out["content"] = others["content"]
        return out, grams

    @torch.no_grad()
    def response_features(self, output: Tensor) -> Tensor:
        """The Gram matrices of the output at the style layers, flattened and stacked: a blend is
        judged by how far its style has moved, not its pixels (``tunableconv calibrate``)."""
        y = output if output.dim() == 4 else output[None]
        _, grams = self.style_statistics(y, y)
        return torch.cat([g.flatten(1) for g in grams.values()], dim=1)

    def style_measures(self, output: Tensor, content: Tensor) -> dict[str, Tensor]:
        """``{"style_<name>": (B,), …, "content": (B,)}`` for outputs ``(B, 3, H, W)`` (clamped to
        [0, 1] here) of content images ``(B, 3, H, W)``: the Gram distance to every style of
        ``task.styles`` and the relu2_2 content distance (see the module docstring)."""
        return self.style_statistics(output, content)[0]

    def output_measures(self, output: Tensor, sample: Sample) -> dict[str, float]:
        """:meth:`style_measures` of one output ``(3, H, W)``, as floats."""
        return {k: float(v[0]) for k, v in self.style_measures(output[None], sample.clean[None]).items()}

    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor], device: torch.device) -> dict[str, Any]:
        """Mean :meth:`style_measures` on the validation images at each setting of
        :meth:`validation_grid` (tag ``fixed`` for the single-style twin); keys
        ``style_<name>@<tag>`` and ``content@<tag>``."""
        grid: list[tuple[str, Tensor | None]] = [("fixed", None)] if self.num_params == 0 else \
            list(self.validation_grid())
        sums: dict[str, float] = {}
        for clean in images:
            x = clean.unsqueeze(0).to(device)
            for tag, p in grid:
                y = model(x) if p is None else model(x, p.to(device))
                for key, v in self.style_measures(y, x).items():
                    sums[f"{key}@{tag}"] = sums.get(f"{key}@{tag}", 0.0) + float(v[0])
        return {k: round(v / max(1, len(images)), 4) for k, v in sums.items()}
