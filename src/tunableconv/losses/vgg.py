r"""Frozen VGG19 and VGG16 feature extractors in plain torch (no torchvision).

Layer names follow the usual convention, and the i-th name is torchvision's
``vgg19().features[i]``::

    conv1_1 relu1_1 conv1_2 relu1_2 pool1                                  ( 0 …  4)
    conv2_1 relu2_1 conv2_2 relu2_2 pool2                                  ( 5 …  9)
    conv3_1 relu3_1 … conv3_4 relu3_4 pool3                                (10 … 18)
    conv4_1 relu4_1 … conv4_4 relu4_4 pool4                                (19 … 27)
    conv5_1 relu5_1 … conv5_4 relu5_4 pool5                                (28 … 36)

``convX_Y`` is the convolution output *before* its ReLU (e.g. ESRGAN's ``conv5_4``
perceptual loss), ``reluX_Y`` after it. Channels: 64, 128, 256, 512, 512 per block; every
pool halves H and W (2x2 max-pool, floor).

Input: RGB in [0, 1], ``(B, 3, H, W)``. Two weight variants:

- ``"torchvision"`` — the standard ImageNet VGG19 (``vgg19-dcbb9e9d.pth``, keys
  ``features.0.weight`` …): input normalised as ``(x - mean) / std`` with the ImageNet
  mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); zero padding 1 in each conv.
- ``"normalised"`` — the AdaIN/WCT "normalised" VGG19 of ``vgg19_normalised_relu3_1.safetensors``
  (keys ``rgb_to_bgr255.*``, ``conv1_1.*`` … ``conv3_1.*``): a 1x1 conv maps RGB in [0, 1]
  to BGR·255 minus the ImageNet mean; reflection padding 1 before each conv. It only
  covers layers up to ``relu3_1``.
- ``"caffe"`` — the original Oxford/Caffe VGG19 that SRGAN and ESRGAN's perceptual loss used
  (``vgg19_caffe_features_fp16.safetensors``: torchvision's key layout, all 16 convs through
  ``conv5_4``, stored as float16 and cast to float32): input BGR in [0, 255] minus the mean
  (103.939, 116.779, 123.68); zero padding 1 in each conv. Its keys look like torchvision's,
  so a file is only read as Caffe weights when asked for (``weights="caffe"``, or a path
  with ``variant="caffe"``).

All preprocessings are a per-pixel affine map ``x ↦ A x + a`` (``A`` 3x3), kept as the
buffers ``input_weight`` / ``input_bias``.

Asking for a layer the weights do not cover raises :class:`~tunableconv.errors.MissingWeightsError`;
the network never runs a layer with random weights unless ``weights="random"`` was asked for.

**VGG16** (:class:`VGG16Features`; Johnson et al.'s perceptual losses, LPIPS-VGG and DISTS use
it): the same naming, ``VGG16_LAYERS[i]`` is torchvision's ``vgg16().features[i]``::

    conv1_1 relu1_1 conv1_2 relu1_2 pool1                                  ( 0 …  4)
    conv2_1 relu2_1 conv2_2 relu2_2 pool2                                  ( 5 …  9)
    conv3_1 relu3_1 … conv3_3 relu3_3 pool3                                (10 … 16)
    conv4_1 relu4_1 … conv4_3 relu4_3 pool4                                (17 … 23)
    conv5_1 relu5_1 … conv5_3 relu5_3 pool5                                (24 … 30)

with torchvision's ImageNet weights from ``vgg16_features_fp16.safetensors`` (keys
``features.<i>.weight`` / ``.bias``, stored as float16, run in float32), input normalised with
the ImageNet mean and std, zero padding 1. :func:`load_feature_convs` reads such a file for
the metrics too (LPIPS-VGG, DISTS).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, MissingWeightsError

__all__ = [
    "FeatureExtractor",
    "VGG19Features",
    "VGG16Features",
    "VGG16_LAYERS",
    "VGG16_FILE",
    "load_feature_convs",
    "VGG19_LAYERS",
    "VGG19_CONVS",
    "NORMALISED_FILE",
    "TORCHVISION_FILE",
    "CAFFE_FILE",
    "TORCHVISION_URL",
    "find_torchvision_vgg19",
    "load_state_dict_file",
]

_BLOCK_CONVS = (2, 2, 4, 4, 4)
_BLOCK_CHANNELS = (64, 128, 256, 512, 512)


def _build_layer_table() -> tuple[tuple[str, ...], dict[str, tuple[int, int]]]:
    names: list[str] = []
    conv_shapes: dict[str, tuple[int, int]] = {}
    cin = 3
    for b, (n, c) in enumerate(zip(_BLOCK_CONVS, _BLOCK_CHANNELS), start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
            conv_shapes[f"conv{b}_{i}"] = (c, cin)
            cin = c
        names.append(f"pool{b}")
    return tuple(names), conv_shapes


#: The 37 layer names; ``VGG19_LAYERS[i]`` is torchvision's ``features[i]``.
VGG19_LAYERS, _CONV_SHAPES = _build_layer_table()
#: The 16 convolutions in order, with their (out, in) channels.
VGG19_CONVS: tuple[str, ...] = tuple(n for n in VGG19_LAYERS if n.startswith("conv"))
_INDEX = {n: i for i, n in enumerate(VGG19_LAYERS)}

NORMALISED_FILE = "vgg19_normalised_relu3_1.safetensors"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
CAFFE_FILE = "vgg19_caffe_features_fp16.safetensors"
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # what rgb_to_bgr255.bias of the shared file holds
_VARIANTS = ("torchvision", "normalised", "caffe")


def layer_channels(name: str) -> int:
    """Number of channels of layer ``name``."""
    idx = _INDEX[name]
    for n in reversed(VGG19_LAYERS[: idx + 1]):
        if n.startswith("conv"):
            return _CONV_SHAPES[n][0]
    return 3  # pragma: no cover


# ----------------------------------------------------------------------------------------
# weight files
# ----------------------------------------------------------------------------------------
def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` or a torch ``.pth`` state dict (``weights_only=True``) on the CPU."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"VGG19 weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, pickled code …
        raise InputError(f"cannot read VGG19 weights from {path}: {exc}") from exc
    if isinstance(sd, Mapping) and not any(isinstance(v, Tensor) for v in sd.values()):
        for key in ("state_dict", "model"):
            if isinstance(sd.get(key), Mapping):
                sd = sd[key]
                break
    if not isinstance(sd, Mapping):
        raise InputError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    return dict(sd)


def find_torchvision_vgg19(root: str | os.PathLike | None = None) -> Path:
    """Locate the torchvision ImageNet VGG19 weights, or raise :class:`MissingWeightsError`.

    Looked up, in order: ``$TUNABLECONV_VGG19``; ``<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth``
    (``~/.cache/torch/hub`` unless ``$TORCH_HOME`` says otherwise); ``vgg19-dcbb9e9d.pth`` /
    ``vgg19.safetensors`` / ``vgg19.pth`` in the weights root (see :mod:`tunableconv.paths`).
    """
    cands: list[Path] = []
    if os.environ.get("TUNABLECONV_VGG19"):
        cands.append(Path(os.environ["TUNABLECONV_VGG19"]).expanduser())
    cands.append(Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE)
    try:
        from ..paths import weights_root

        wr = weights_root(root)
        cands += [wr / TORCHVISION_FILE, wr / "vgg19.safetensors", wr / "vgg19.pth"]
    except Exception:  # no weights root on this machine
        pass
    for c in cands:
        if c.is_file():
            return c
    raise MissingWeightsError(
        "torchvision VGG19 ImageNet weights not found (looked in: "
        + ", ".join(str(c) for c in cands)
        + f"); download {TORCHVISION_URL} into {Path(torch.hub.get_dir()) / 'checkpoints'}, "
        "set TUNABLECONV_VGG19=<file>, or pass weights=<path>"
    )


def _normalised_path(root: str | os.PathLike | None) -> Path:
    from ..paths import weights_root

    try:
        path = weights_root(root) / NORMALISED_FILE
    except InputError as exc:
        raise MissingWeightsError(f"cannot find {NORMALISED_FILE}: {exc}") from exc
    if not path.is_file():
        raise MissingWeightsError(
            f"normalised VGG19 weights not found at {path}; set TUNABLECONV_WEIGHTS to the folder holding {NORMALISED_FILE}"
        )
    return path


_NORMALISED_KEY = re.compile(r"^(conv\d_\d)\.(weight|bias)$")
_TORCHVISION_KEY = re.compile(r"^(?:module\.)?(?:vgg\.)?(?:features\.)?(\d+)\.(weight|bias)$")


def _parse_state_dict(sd: Mapping[str, Tensor], source: str) -> tuple[str, dict[str, dict[str, Tensor]], tuple[Tensor, Tensor] | None]:
    """Detect the key layout and return ``(variant, {conv: {weight, bias}}, preprocessing)``."""
    convs: dict[str, dict[str, Tensor]] = {}
    if any(_NORMALISED_KEY.match(k) for k in sd):
        variant = "normalised"
        for k, v in sd.items():
            m = _NORMALISED_KEY.match(k)
            if m and m.group(1) in _CONV_SHAPES:
                convs.setdefault(m.group(1), {})[m.group(2)] = v
        if "rgb_to_bgr255.weight" in sd and "rgb_to_bgr255.bias" in sd:
            pre = (sd["rgb_to_bgr255.weight"], sd["rgb_to_bgr255.bias"])
            if tuple(pre[0].shape) != (3, 3, 1, 1) or tuple(pre[1].shape) != (3,):
                raise InputError(f"{source}: rgb_to_bgr255 has shape {tuple(pre[0].shape)}, expected (3, 3, 1, 1)")
        else:
            pre = None
    elif any(_TORCHVISION_KEY.match(k) for k in sd):
        variant, pre = "torchvision", None
        for k, v in sd.items():
            m = _TORCHVISION_KEY.match(k)
            if not m:
                continue  # classifier.* etc.
            idx = int(m.group(1))
            name = VGG19_LAYERS[idx] if idx < len(VGG19_LAYERS) else None
            if name is None or not name.startswith("conv"):
                raise InputError(f"{source}: key {k!r} is not a convolution of torchvision's VGG19 features")
            convs.setdefault(name, {})[m.group(2)] = v
    else:
        some = ", ".join(list(sd)[:4])
        raise InputError(
            f"{source}: not VGG19 weights (expected torchvision keys like 'features.0.weight' or "
            f"normalised keys like 'conv1_1.weight', got {some} …)"
        )
    for name, wb in convs.items():
        cout, cin = _CONV_SHAPES[name]
        if set(wb) != {"weight", "bias"}:
            raise InputError(f"{source}: {name} lacks its {'weight' if 'weight' not in wb else 'bias'}")
        if tuple(wb["weight"].shape) != (cout, cin, 3, 3) or tuple(wb["bias"].shape) != (cout,):
            raise InputError(
                f"{source}: {name} has weight {tuple(wb['weight'].shape)}, expected {(cout, cin, 3, 3)}"
            )
    return variant, convs, pre


def _default_preprocessing(variant: str) -> tuple[Tensor, Tensor]:
    """The 1x1 affine input map of a variant, as ``((3, 3, 1, 1) weight, (3,) bias)``."""
    if variant == "torchvision":
        std = torch.tensor(_IMAGENET_STD)
        mean = torch.tensor(_IMAGENET_MEAN)
        return torch.diag(1.0 / std).view(3, 3, 1, 1), -mean / std
    # "normalised", "caffe": RGB [0, 1] -> BGR * 255 - ImageNet BGR mean (Caffe convention).
    w = torch.zeros(3, 3)
    w[0, 2] = w[1, 1] = w[2, 0] = 255.0
    return w.view(3, 3, 1, 1), -torch.tensor(_CAFFE_MEAN_BGR)


# ----------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------
class FeatureExtractor(nn.Module):
    """Base of the frozen feature extractors (:class:`VGG19Features`, :class:`VGG16Features`):
    always in eval mode, and a cache that lets several objectives share one pass.

    Subclasses implement ``_run(x, names) -> {name: features}``, name their layer table
    :attr:`LAYERS` (and :attr:`NETWORK`) and set ``layers`` (the names asked for) and ``depth``
    (the index in :attr:`LAYERS` of the deepest layer built); :meth:`forward` checks the layers
    and the input, then calls :meth:`_cached_run`.
    """

    #: every layer name of the network, in order
    LAYERS: ClassVar[tuple[str, ...]] = ()
    #: the network's name in error messages
    NETWORK: ClassVar[str] = ""
    layers: tuple[str, ...]
    depth: int

    def __init__(self) -> None:
        super().__init__()
        self._caching = 0
        self._cache: list[tuple[Tensor, int, bool, dict[str, Tensor]]] = []

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """No-op: the extractor is frozen and always in eval mode."""
        return super().train(False)

    @contextlib.contextmanager
    def caching(self) -> Iterator[None]:
        """Within the block, a second call on the very same tensor reuses the first result.

        Several objectives sharing this extractor (e.g. one :class:`StyleObjective` per style)
        then run VGG once on the output and once on the content image. The cache is keyed on
        tensor identity, in-place version and grad mode, and emptied when the block ends.
        """
        self._caching += 1
        try:
            yield
        finally:
            self._caching -= 1
            if self._caching == 0:
                self._cache.clear()

    def _lookup(self, x: Tensor) -> dict[str, Tensor] | None:
        grad = torch.is_grad_enabled()
        for cx, ver, g, feats in self._cache:
            if cx is x and ver == x._version and g == grad:
                return feats
        return None

    def forward(self, x: Tensor, layers: Sequence[str] | str | None = None) -> dict[str, Tensor]:
        """Features of ``x`` ``(B, 3, H, W)`` (RGB in [0, 1]) at ``layers`` (default: those
        given at construction; any layer up to the deepest built one may be asked for)."""
        names = self.layers if layers is None else tuple([layers] if isinstance(layers, str) else layers)
        for n in names:
            if n not in self.LAYERS:
                raise InputError(f"unknown {self.NETWORK} layer {n!r}")
            if self.LAYERS.index(n) > self.depth:
                raise InputError(f"layer {n!r} is deeper than this extractor, built up to {self.LAYERS[self.depth]}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"{self.NETWORK} expects RGB images (B, 3, H, W), got {tuple(x.shape)}")
        return self._cached_run(x, names)

    def _run(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        raise NotImplementedError

    def _cached_run(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        """``_run(x, names)``; inside :meth:`caching`, every layer up to the deepest of ``names``
        is kept, and a later call on the same tensor that needs no deeper layer reuses them."""
        if not self._caching:
            return self._run(x, names)
        feats = self._lookup(x)
        if feats is None or any(n not in feats for n in names):
            stop = max(self.LAYERS.index(n) for n in names)
            feats = self._run(x, self.LAYERS[: stop + 1])
            grad = torch.is_grad_enabled()
            self._cache = [e for e in self._cache if not (e[0] is x and e[2] == grad)]
            self._cache.append((x, x._version, grad, feats))
        return {n: feats[n] for n in names}


class VGG19Features(FeatureExtractor):
    r"""Frozen VGG19 returning a dict of requested intermediate layers.

    Args:
        layers: layer names (see the module docstring), e.g. ``["relu1_1", "relu2_1", "relu3_1"]``.
            The network is built only up to the deepest one.
        weights: where the weights come from:

            - ``"normalised"`` — the shared ``vgg19_normalised_relu3_1.safetensors`` (found via
              :func:`tunableconv.paths.weights_root`, or in ``root``); layers up to ``relu3_1``;
            - ``"caffe"`` — the shared ``vgg19_caffe_features_fp16.safetensors`` (Oxford/Caffe
              weights, ESRGAN's perceptual loss; weights root or ``root``); layers up to ``conv5_4``;
            - ``"torchvision"`` — the ImageNet VGG19 from ``$TUNABLECONV_VGG19``, the torch hub
              cache or the weights root (:func:`find_torchvision_vgg19`);
            - a path to a ``.pth`` / ``.safetensors`` file in either key layout (detected);
            - a state dict (mapping of tensors) in either key layout;
            - ``"random"`` — random initialisation (tests only), in the layout ``variant``.
        variant: ``"torchvision"`` (default), ``"normalised"`` or ``"caffe"``: the layout of
            ``"random"`` weights, or how to read a file (a torchvision-layout file read with
            ``variant="caffe"`` gets the Caffe input convention).
        root: weights root for ``"normalised"`` / ``"torchvision"`` lookups.

    Raises:
        MissingWeightsError: the weight file is absent, or a requested layer needs a
            convolution the weights do not contain.
        InputError: an unknown layer name or an unreadable / foreign weight file.

    Shapes: ``forward(x)`` takes ``(B, 3, H, W)`` RGB in [0, 1] and returns
    ``{name: (B, C_name, H / 2^k, W / 2^k)}`` where k is the number of pools before the layer.
    All parameters have ``requires_grad=False`` and the module stays in eval mode; gradients
    flow to the input.
    """

    LAYERS = VGG19_LAYERS
    NETWORK = "VGG19"

    def __init__(
        self,
        layers: str | Sequence[str],
        weights: str | os.PathLike | Mapping[str, Tensor],
        *,
        variant: str | None = None,
        root: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            raise InputError("VGG19Features needs at least one layer name")
        bad = [n for n in layers if n not in _INDEX]
        if bad:
            raise InputError(f"unknown VGG19 layer(s) {bad}; valid names: {', '.join(VGG19_LAYERS)}")
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        self.depth = max(_INDEX[n] for n in self.layers)  # index of the deepest layer built

        convs: dict[str, dict[str, Tensor]] | None
        pre: tuple[Tensor, Tensor] | None = None
        if isinstance(weights, str) and weights == "random":
            variant = variant or "torchvision"
            if variant not in _VARIANTS:
                raise InputError(f"unknown VGG19 variant {variant!r}; choose one of: {', '.join(_VARIANTS)}")
            convs, source = None, "random initialisation"
        else:
            if isinstance(weights, Mapping):
                sd, source = weights, "the given state dict"
            else:
                if isinstance(weights, str) and weights in ("normalised", "normalized"):
                    path = _normalised_path(root)
                elif isinstance(weights, str) and weights == "caffe":
                    from ..paths import weights_file

                    path = weights_file(CAFFE_FILE, root, "root=... (the folder holding it)")
                    variant = "caffe"
                elif isinstance(weights, str) and weights == "torchvision":
                    path = find_torchvision_vgg19(root)
                else:
                    path = Path(weights)
                sd, source = load_state_dict_file(path), str(path)
            detected, convs, pre = _parse_state_dict(sd, source)
            if variant == "caffe" and detected == "torchvision":
                detected = "caffe"  # same key layout, Caffe input convention
            if variant is not None and variant != detected:
                raise InputError(f"{source} holds {detected} VGG19 weights, not {variant!r} ones")
            variant = detected
        self.variant: str = variant
        self.source: str = source

        needed = [n for n in VGG19_LAYERS[: self.depth + 1] if n.startswith("conv")]
        if convs is not None:
            covered = self._covered_depth(convs)
            for name in self.layers:
                if _INDEX[name] > covered:
                    missing = next(c for c in VGG19_CONVS if c not in convs)
                    deepest = VGG19_LAYERS[covered] if covered >= 0 else "none"
                    raise MissingWeightsError(
                        f"VGG19 layer {name!r} needs {missing}, which the {variant} weights from {source} do not "
                        f"contain (they cover layers up to {deepest}); deeper layers need the torchvision VGG19 "
                        f"ImageNet weights (weights='torchvision' or a path)"
                    )
        self.convs = nn.ModuleDict()
        for name in needed:
            cout, cin = _CONV_SHAPES[name]
            conv = nn.Conv2d(cin, cout, 3, padding=0 if variant == "normalised" else 1)
            if convs is None:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
            else:
                with torch.no_grad():
                    conv.weight.copy_(convs[name]["weight"].float())
                    conv.bias.copy_(convs[name]["bias"].float())
            self.convs[name] = conv
        w, b = pre if pre is not None else _default_preprocessing(variant)
        self.register_buffer("input_weight", w.detach().float().clone())
        self.register_buffer("input_bias", b.detach().float().clone())
        self.requires_grad_(False)
        super().train(False)

    @staticmethod
    def _covered_depth(convs: Mapping[str, object]) -> int:
        """Index of the deepest layer whose every preceding convolution is loaded."""
        depth = -1
        for i, n in enumerate(VGG19_LAYERS):
            if n.startswith("conv") and n not in convs:
                break
            depth = i
        return depth

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, variant={self.variant!r}, source={self.source!r}"

    # --- forward (FeatureExtractor.forward checks the layers and calls _run) ------------------
    def _run(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        want = set(names)
        stop = max(_INDEX[n] for n in names)
        h = F.conv2d(x.to(self.input_weight.dtype), self.input_weight, self.input_bias)
        out: dict[str, Tensor] = {}
        for i, name in enumerate(VGG19_LAYERS[: stop + 1]):
            if name.startswith("conv"):
                if self.variant == "normalised":
                    mode = "reflect" if min(h.shape[-2:]) > 1 else "replicate"
                    h = F.pad(h, (1, 1, 1, 1), mode=mode)
                h = self.convs[name](h)
            elif name.startswith("relu"):
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2, 2)
            if name in want:
                out[name] = h
        return {n: out[n] for n in names}


# ----------------------------------------------------------------------------------------
# VGG16
# ----------------------------------------------------------------------------------------
def _vgg16_table() -> tuple[tuple[str, ...], dict[str, tuple[int, int]]]:
    names: list[str] = []
    shapes: dict[str, tuple[int, int]] = {}
    cin = 3
    for b, (n, c) in enumerate(zip((2, 2, 3, 3, 3), _BLOCK_CHANNELS), start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
            shapes[f"conv{b}_{i}"] = (c, cin)
            cin = c
        names.append(f"pool{b}")
    return tuple(names), shapes


#: The 31 layer names of VGG16; ``VGG16_LAYERS[i]`` is torchvision's ``vgg16().features[i]``.
VGG16_LAYERS, _VGG16_SHAPES = _vgg16_table()
_VGG16_INDEX = {n: i for i, n in enumerate(VGG16_LAYERS)}
#: torchvision's ImageNet VGG16 features, stored as float16 (the weights root)
VGG16_FILE = "vgg16_features_fp16.safetensors"


def load_feature_convs(path: str | os.PathLike, indices: Sequence[int], what: str) -> dict[int, tuple[Tensor, Tensor]]:
    """The convolutions ``features.<i>.weight`` / ``features.<i>.bias`` (torchvision's key layout)
    for i in ``indices`` from the safetensors file ``path``: ``{i: (weight, bias)}``, float32 on
    the CPU.

    Raises :class:`MissingWeightsError` when the file is absent, :class:`InputError` (one line)
    when it is unreadable or lacks a key (``"<path> lacks features.<i>.weight / features.<i>.bias:
    not <what>"``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"weight file not found: {path}")
    try:
        sd = load_file(str(path))
    except Exception as exc:  # truncated, not safetensors …
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    convs: dict[int, tuple[Tensor, Tensor]] = {}
    for i in indices:
        wk, bk = f"features.{i}.weight", f"features.{i}.bias"
        if wk not in sd or bk not in sd:
            raise InputError(f"{path} lacks {wk} / {bk}: not {what}")
        convs[i] = (sd[wk].to(torch.float32), sd[bk].to(torch.float32))
    return convs


class VGG16Features(FeatureExtractor):
    r"""Frozen ImageNet VGG16 returning a dict of requested intermediate layers.

    Args:
        layers: layer names of :data:`VGG16_LAYERS`, e.g. Johnson et al.'s style layers
            ``["relu1_2", "relu2_2", "relu3_3", "relu4_3"]``; built up to the deepest one.
        weights: ``"default"`` — :data:`VGG16_FILE` in the weights root (``root``, else
            ``TUNABLECONV_WEIGHTS`` / ``../shared/weights``, :mod:`tunableconv.paths`); a path to
            such a file; a state dict with torchvision's keys (``features.<i>.weight``); or
            ``"random"`` (Kaiming-normal weights, zero biases: tests only).
        root: the weights folder for ``"default"``.

    Raises:
        MissingWeightsError: the weight file is absent (one line: where it was looked for and
            how to point at it).
        InputError: an unknown layer name, or a file / state dict without the needed
            convolutions or with wrong shapes.

    Shapes: ``forward(x)`` takes ``(B, 3, H, W)`` RGB in [0, 1], normalised inside as
    ``(x − mean) / std`` (ImageNet statistics; kept as the 1×1 affine map ``input_weight`` /
    ``input_bias``), and returns ``{name: (B, C_name, ⌊H / 2^k⌋, ⌊W / 2^k⌋)}`` with k the pools
    before the layer and C 64, 128, 256, 512, 512 per block. Parameters are frozen; gradients
    flow to the input.
    """

    LAYERS = VGG16_LAYERS
    NETWORK = "VGG16"

    def __init__(self, layers: str | Sequence[str], weights: str | os.PathLike | Mapping[str, Tensor] = "default",
                 *, root: str | os.PathLike | None = None) -> None:
        super().__init__()
        layers = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in layers if n not in _VGG16_INDEX]
        if not layers or bad:
            raise InputError(f"unknown VGG16 layer(s) {bad or layers}; valid names: {', '.join(VGG16_LAYERS)}")
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        self.depth = max(_VGG16_INDEX[n] for n in self.layers)
        needed = [i for i, n in enumerate(VGG16_LAYERS[: self.depth + 1]) if n.startswith("conv")]
        what = "torchvision's VGG16 features"
        if isinstance(weights, str) and weights == "random":
            loaded, self.source = None, "random initialisation"
        elif isinstance(weights, Mapping):
            self.source = "the given state dict"
            loaded = {}
            for i in needed:
                wk, bk = f"features.{i}.weight", f"features.{i}.bias"
                if wk not in weights or bk not in weights:
                    raise InputError(f"the given state dict lacks {wk} / {bk}: not {what}")
                loaded[i] = (weights[wk].float(), weights[bk].float())
        else:
            if isinstance(weights, str) and weights == "default":
                from ..paths import weights_file

                path = weights_file(VGG16_FILE, root, "root=... (the folder holding it)")
            else:
                path = Path(weights).expanduser()
                if not path.is_file():
                    raise MissingWeightsError(f"VGG16 weight file not found: {path}")
            self.source = str(path)
            loaded = load_feature_convs(path, needed, what)
        self.convs = nn.ModuleDict()
        for i in needed:
            name = VGG16_LAYERS[i]
            cout, cin = _VGG16_SHAPES[name]
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            if loaded is None:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
            else:
                w, b = loaded[i]
                if tuple(w.shape) != (cout, cin, 3, 3) or tuple(b.shape) != (cout,):
                    raise InputError(f"{self.source}: features.{i}.weight has shape {tuple(w.shape)}, expected "
                                     f"{(cout, cin, 3, 3)}: not {what}")
                with torch.no_grad():
                    conv.weight.copy_(w)
                    conv.bias.copy_(b)
            self.convs[name] = conv
        w, b = _default_preprocessing("torchvision")
        self.register_buffer("input_weight", w.float().clone())
        self.register_buffer("input_bias", b.float().clone())
        self.requires_grad_(False)
        super().train(False)

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, source={self.source!r}"

    def _run(self, x: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        want = set(names)
        stop = max(_VGG16_INDEX[n] for n in names)
        h = F.conv2d(x.to(self.input_weight.dtype), self.input_weight, self.input_bias)
        out: dict[str, Tensor] = {}
        for name in VGG16_LAYERS[: stop + 1]:
            if name.startswith("conv"):
                h = self.convs[name](h)
            elif name.startswith("relu"):
                h = F.relu(h)
            else:
                h = F.max_pool2d(h, 2, 2)
            if name in want:
                out[name] = h
        return {n: out[n] for n in names}
