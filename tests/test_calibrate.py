"""Calibrated slider: monotone remapping with fixed endpoints that evens out the response."""

import numpy as np
import pytest
import torch
from torch import nn

from tunableconv.calibrate import fit_calibration, measure_response
from tunableconv.metrics import evenness
from tunableconv.models.files import ModelInfo
from tunableconv.restore import Restorer


class CubicResponse(nn.Module):
    """o_s = s^3 · x: d(s) = s^3, a strongly uneven slider."""

    def forward(self, x, p):
        return x * p[0] ** 3


def _restorer(calibration=None):
    info = ModelInfo("fake", {}, 2, [{"name": "a", "description": ""}, {"name": "b", "description": ""}],
                     {"strength": "p = (s, 1 - s)", **({"calibration": calibration} if calibration else {})})
    return Restorer(CubicResponse(), info)


def test_fit_is_monotone_with_fixed_endpoints():
    grid = np.linspace(0, 1, 11)
    for response in (grid**2, np.sqrt(grid), grid + 0.05 * np.sin(20 * grid), np.r_[0, 0.5, 0.4, 0.9, *np.ones(7)]):
        cal = fit_calibration(grid, response)
        assert cal["slider"][0] == 0 and cal["slider"][-1] == 1
        assert cal["raw"][0] == 0 and cal["raw"][-1] == 1
        assert np.all(np.diff(cal["raw"]) >= 0) and np.all(np.diff(cal["slider"]) > 0)


def test_fit_inverts_a_known_response():
    grid = np.linspace(0, 1, 101)
    cal = fit_calibration(grid, grid**2, points=11)
    np.testing.assert_allclose(cal["raw"], np.sqrt(cal["slider"]), atol=0.02)


def test_max_points_bounds_the_work():
    images = [torch.rand(3, 8, 8)]
    raw = _restorer()
    path = lambda s: raw.params(slider=s, calibrated=False)  # noqa: E731
    calls = []
    counted = lambda s: calls.append(s) or path(s)  # noqa: E731
    response = measure_response(raw, images, counted, np.linspace(0, 1, 5).tolist(), max_points=7, max_step=0.0)
    assert len(response["s"]) == 7 and len(calls) == 2 + 7  # the two ends once, then 7 values in all
    with pytest.raises(ValueError, match="max_points"):
        measure_response(raw, images, path, np.linspace(0, 1, 11).tolist(), max_points=4)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        fit_calibration([0, 0.5, 1], [0, float("nan"), 1])
    with pytest.raises(ValueError, match="grid"):
        fit_calibration([0.1, 0.5, 1], [0, 0.5, 1])


def test_calibration_makes_the_slider_even():
    images = [torch.rand(3, 16, 16) for _ in range(2)]
    grid = np.linspace(0, 1, 11).tolist()  # refined adaptively where the response jumps
    raw = _restorer()
    path = lambda s: raw.params(slider=s, calibrated=False)  # noqa: E731 - the slider's raw path
    response = measure_response(raw, images, path, grid)  # clean inputs: outputs stay in [0, 1]
    np.testing.assert_allclose(response["d"], np.array(response["s"]) ** 3, atol=1e-4)
    assert all(np.isclose(response["s"], g).any() for g in grid)
    cal = fit_calibration(response["s"], response["d"], points=41)
    calibrated = _restorer(cal)
    values = np.linspace(0, 1, 5)
    x = images[0]
    before = evenness([raw(x, raw.params(slider=float(s))) for s in values], values)["mean_error"]
    after = evenness([calibrated(x, calibrated.params(slider=float(s))) for s in values], values)["mean_error"]
    assert before > 0.25
    assert after < 0.02
    # raw p stays available: calibrated=False ignores the map
    torch.testing.assert_close(calibrated.params(slider=0.5, calibrated=False), torch.tensor([0.5, 0.5]))
    assert calibrated.params(slider=0.0)[0] == 0 and calibrated.params(slider=1.0)[0] == 1
