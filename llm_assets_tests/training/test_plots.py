import struct
from pathlib import Path

from llm_assets.training.plots import plot_loss_curve


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_loss_curve_is_an_800_by_450_png(tmp_path: Path):
    path = plot_loss_curve([(1, 5.0), (2, 4.0), (3, 3.5)], [(2, 4.2), (3, 3.9)], tmp_path / "sub" / "loss.png")
    assert path == tmp_path / "sub" / "loss.png"
    assert png_size(path) == (800, 450)


def test_empty_histories_still_draw(tmp_path: Path):
    assert png_size(plot_loss_curve([], [], tmp_path / "empty.png")) == (800, 450)
