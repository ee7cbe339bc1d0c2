"""Property-based bad inputs (issue 16): mutated model-file metadata and recipe fields.

- **Model files.** Every metadata field of a small model file (format 2) and of the shipped
  ``denoise`` file's metadata (format 1) written onto a copy — each top-level field, and each
  entry nested in its JSON (arguments, knob space, knobs, sliders, calibrations, info) — is
  replaced by a value of any JSON type (or by text that is not JSON). ``tunableconv restore``
  with that file either works (exit 0, a readable output image) or refuses: exit 2, one
  line on stderr naming the file, no traceback, no output file. It never raises.
- **Recipes.** Each recipe field gets an out-of-range value or one of another JSON type;
  ``tunableconv train --recipe FILE --print`` (validation only, no training) refuses it
  with exit 2 and one line naming the field whenever the value's type does not fit the
  field, and otherwise either accepts or refuses in one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from tunableconv.cli import main  # noqa: E402
from tunableconv.io import read_image  # noqa: E402
from tunableconv.train import get_recipe  # noqa: E402
from tunableconv.zoo import resolve  # noqa: E402

from test_bad_inputs import _tiny  # noqa: E402

JSON_FIELDS = ("arguments", "knob_space", "knobs", "info", "parameters")

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
#: a value of every JSON type (nested lists and objects included)
json_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=8)

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _paths(value, prefix=()):
    """Every path into a JSON value (object keys, list indices), the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


def _replace(value, path, new):
    if not path:
        return new
    value = json.loads(json.dumps(value))
    node = value
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return value


def _targets(meta: dict[str, str]) -> list[tuple[str, tuple]]:
    """(metadata field, path in its JSON) for every field and nested entry."""
    out = []
    for key, text in sorted(meta.items()):
        if key in JSON_FIELDS:
            out += [(key, p) for p in _paths(json.loads(text))]
        else:
            out.append((key, ()))
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("prop")
    from tunableconv.io import write_image
    import torch

    image = write_image(torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0)), root / "in.png")
    small = _tiny(root / "small.safetensors")
    shipped = root / "denoise.safetensors"
    shutil.copyfile(resolve("denoise"), shipped)
    out = {"image": image, "files": {}}
    for name, path in (("small", small), ("denoise", shipped)):
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata())
        out["files"][name] = (load_file(str(path)), meta, _targets(meta))
    return out


def _one_line_refusal(rc: int, err: str, *needles: str) -> str:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _check_mutated_model(sources, name, tmp_path, capsys, data):
    tensors, meta, targets = sources["files"][name]
    key, path = data.draw(st.sampled_from(targets), label="field")
    meta = dict(meta)
    if key in JSON_FIELDS:
        new = data.draw(json_values, label="value")
        meta[key] = json.dumps(_replace(json.loads(meta[key]), path, new))
    else:  # format, architecture, num_params: any text, or a JSON value as text
        meta[key] = data.draw(st.one_of(st.text(max_size=20), json_values.map(json.dumps)), label="value")
    model = tmp_path / f"mutated-{name}.safetensors"
    save_file(tensors, str(model), metadata=meta)
    out = tmp_path / "out.png"
    out.unlink(missing_ok=True)
    rc = main(["restore", str(sources["image"]), str(out), "--model", str(model)])
    err = capsys.readouterr().err
    if rc == 0:  # the mutation was harmless: a good output
        assert read_image(out).shape[0] == 3
    else:
        _one_line_refusal(rc, err, str(model))
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@SETTINGS
@given(data=st.data())
def test_mutated_metadata_of_a_small_model_file(sources, tmp_path, capsys, data):
    _check_mutated_model(sources, "small", tmp_path, capsys, data)


@SETTINGS
@given(data=st.data())
def test_mutated_metadata_of_the_shipped_model_on_a_copy(sources, tmp_path, capsys, data):
    _check_mutated_model(sources, "denoise", tmp_path, capsys, data)


# ----------------------------------------------------------------------------------------
# recipes
# ----------------------------------------------------------------------------------------
def _recipe_fields() -> list[tuple[str, object]]:
    """(dotted field, its value in the denoise-small recipe) for every scalar or list field."""
    fields = []
    for section, values in get_recipe("denoise-small").to_dict().items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if isinstance(value, dict):  # model.args, train.disc: their fields
                fields += [(f"{section}.{name}.{k}", v) for k, v in value.items()]
            else:
                fields.append((f"{section}.{name}", value))
    return fields


RECIPE_FIELDS = _recipe_fields()
_out_of_range = st.one_of(st.integers(min_value=-10**12, max_value=-1), st.integers(min_value=10**9, max_value=10**15),
                          st.sampled_from([math.nan, math.inf, -math.inf, -1.5, 1e12]))
_other_type = st.one_of(st.text(min_size=1, max_size=8).filter(lambda t: t.strip() and not _numeric(t)),
                        st.lists(st.text(max_size=4), min_size=1, max_size=3),
                        st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), min_size=1, max_size=2))


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip().lower() in ("true", "false", "yes", "no", "on", "off", "null", "~")
    return True


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object", type(None): "null"}[type(value)]


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_out_of_range_recipe_fields_are_refused_in_one_line(tmp_path, capsys, data):
    field, default = data.draw(st.sampled_from(RECIPE_FIELDS), label="field")
    value = data.draw(st.one_of(_out_of_range, _other_type), label="value")
    recipe = get_recipe("denoise-small").to_dict()
    node = recipe
    *parents, leaf = field.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    rc = main(["train", "--recipe", str(path), "--print"])
    out, err = capsys.readouterr()
    must_refuse = _kind(default) in ("number", "bool", "list") and _kind(value) != _kind(default) or (
        _kind(default) == "number" and isinstance(value, float) and not math.isfinite(value))
    if rc == 0:
        assert not must_refuse, f"{field} = {value!r} was accepted"
        assert yaml.safe_load(out)  # the resolved recipe was printed
    else:
        line = _one_line_refusal(rc, err)
        top = field.split(".")[0]
        assert field in line or field.rsplit(".", 1)[0] in line or top in line, line
    assert not any(tmp_path.glob("**/*.safetensors"))  # nothing trained


def test_the_recipe_fields_cover_every_section():
    from tunableconv.train.config import DataSection, ModelSection, TrainSection

    names = {f for f, _ in RECIPE_FIELDS}
    for prefix, cls in (("model", ModelSection), ("data", DataSection), ("train", TrainSection)):
        for f in dataclasses.fields(cls):
            assert any(n == f"{prefix}.{f.name}" or n.startswith(f"{prefix}.{f.name}.") for n in names), f.name
