"""Pictures per knob space: the right kind for each domain, files written, bad grids refused."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from tunableconv.knobs import Knob, KnobSpace  # noqa: E402
from tunableconv.plots import barycentric_xy, plot_heatmaps, plot_knob_space  # noqa: E402


@pytest.mark.parametrize("domain,n", [("simplex", 2), ("cube", 2), ("simplex", 3), ("cube", 3)])
def test_plot_for_each_domain(tmp_path, domain, n):
    space = KnobSpace([Knob(f"k{i}") for i in range(n)], domain)
    grid = space.grid([0, 0.5, 1]).numpy()
    values = {"PSNR": grid.sum(1) + grid[:, 0], "LPIPS": grid[:, -1]}
    path = plot_knob_space(domain, grid, values, tmp_path / "p.png", knob_names=space.names, title="t")
    with Image.open(path) as img:
        assert img.size[0] > 300 and img.size[1] > 200


def test_barycentric_corners_and_bad_grids(tmp_path):
    np.testing.assert_allclose(barycentric_xy(np.eye(3)), [[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]])
    with pytest.raises(ValueError, match="product grid"):
        plot_heatmaps([[0, 0], [1, 1], [0, 1]], {"m": [1, 2, 3]}, tmp_path / "h.png")
