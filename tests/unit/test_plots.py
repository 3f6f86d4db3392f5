"""The accuracy plot shows its whole title, however long the run and model names are
(matplotlib comes with mlflow, a dependency of the suite)."""
from __future__ import annotations

import pytest

from tasks.comparison.plots import accuracy_figure, accuracy_plot

LONG = ("openmath-sft-smollm2-2026-12-06T23-31-17-checkpoint-final vs "
        "openmath-sft-smollm2-2026-12-05T22-10-04-checkpoint-final: accuracy per benchmark")


@pytest.mark.parametrize("series", [
    {"A": {"gsm8k greedy": (40.0, 35.0, 45.0)}},
    {"A": {"gsm8k greedy": (40.0, 35.0, 45.0)}, "B": {"gsm8k greedy": (38.0, 33.0, 43.0)}},
    {"A": {f"bench{i} greedy": (40.0, 35.0, 45.0) for i in range(6)}},
])
def test_a_long_title_is_drawn_whole_inside_the_figure(series, tmp_path):
    import matplotlib.pyplot as plt

    fig = accuracy_figure(series, LONG)
    try:
        fig.canvas.draw()
        title = fig.axes[0].title
        box = title.get_window_extent(fig.canvas.get_renderer())
        assert "".join(title.get_text().split()) == "".join(LONG.split())  # all of it, only wrapped
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1, (box, fig.bbox)
    finally:
        plt.close(fig)
    assert accuracy_plot(series, tmp_path / "p.png", LONG).stat().st_size > 0
