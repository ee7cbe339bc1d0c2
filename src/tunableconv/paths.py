"""Where the project finds data that is not shipped inside the package.

The data root (training images, test sets, style images, blur kernels) and the weights root
(VGG19 and NIQE parameters) are looked up in this order:

1. an explicit argument,
2. the environment variables ``TUNABLECONV_DATA`` / ``TUNABLECONV_WEIGHTS``,
3. ``TUNABLECONV_SHARED`` (a folder holding ``data/`` and ``weights/``),
4. a ``shared/`` folder beside the source checkout (``<repo>/../shared``), then ``./shared``
   and ``../shared`` relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError, MissingWeightsError

_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def _shared_candidates() -> list[Path]:
    out = []
    if os.environ.get("TUNABLECONV_SHARED"):
        out.append(Path(os.environ["TUNABLECONV_SHARED"]))
    out += [_CHECKOUT_ROOT.parent / "shared", Path.cwd() / "shared", Path.cwd().parent / "shared"]
    return out


def _resolve(sub: str, env: str, explicit: str | os.PathLike | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(env):
        return Path(os.environ[env])
    for cand in _shared_candidates():
        if (cand / sub).is_dir():
            return cand / sub
    raise InputError(
        f"cannot find the {sub} folder: set {env} (or TUNABLECONV_SHARED) or pass a path explicitly"
    )


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder that holds ``train/``, ``test/``, ``style/``, ``content/``, ``blur_kernels/``."""
    return _resolve("data", "TUNABLECONV_DATA", explicit)


def weights_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder that holds third-party weights (VGG19, LPIPS, NIQE parameters)."""
    return _resolve("weights", "TUNABLECONV_WEIGHTS", explicit)


def weights_file(name: str, explicit: str | os.PathLike | None = None, option: str = "a weights folder") -> Path:
    """The file ``name`` in the weights root (see :func:`weights_root`).

    Raises :class:`MissingWeightsError` (one line: the file, where it was looked for and how to
    point at it) when there is no weights root or the file is not in it. ``option`` names the
    caller's argument for an explicit folder, for the message (e.g. ``"weights_dir=..."``).
    """
    hint = f"set TUNABLECONV_WEIGHTS (or TUNABLECONV_SHARED) or pass {option}"
    try:
        root = weights_root(explicit)
    except InputError:
        raise MissingWeightsError(f"{name} not found: no weights folder on this machine; {hint}") from None
    path = root / name
    if not path.is_file():
        raise MissingWeightsError(f"{name} not found in {root}; {hint}")
    return path


def resolve_dataset(name_or_path: str, root: str | os.PathLike | None = None) -> Path:
    """A dataset given as a folder path, or as a name under the data root (``cbsd68``,
    ``kodak24``, ``set5/hr``, ``train/bsds400``; a bare test-set name is looked up in ``test/``)."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    base = data_root(root)
    for cand in (base / name_or_path, base / "test" / name_or_path, base / "train" / name_or_path):
        if cand.is_dir():
            return cand
    raise InputError(f"dataset {name_or_path!r} is neither a folder nor a name under {base}")
