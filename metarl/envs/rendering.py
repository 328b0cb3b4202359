"""Tiny numpy drawing for the ``rgb_array`` render mode of the analytic envs (no graphics dependency).

Images are ``(height, width, 3)`` uint8 arrays, as Gymnasium's ``render()`` returns them; positions are
``(row, column)`` pixels, row 0 at the top. Shapes partly outside the image are clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GRAY: Color = (170, 170, 170)
LIGHT_GRAY: Color = (225, 225, 225)
BLUE: Color = (31, 119, 180)
ORANGE: Color = (255, 127, 14)
GREEN: Color = (44, 160, 44)
RED: Color = (214, 39, 40)


def blank(height: int, width: int, color: Color = WHITE) -> np.ndarray:
    """A new image filled with ``color``."""
    image = np.empty((int(height), int(width), 3), dtype=np.uint8)
    image[:] = color
    return image


def fill_rect(image: np.ndarray, top: float, left: float, bottom: float, right: float, color: Color) -> None:
    """Paint the pixels with ``top <= row < bottom`` and ``left <= column < right``."""
    height, width = image.shape[:2]
    r0, r1 = max(0, round(top)), min(height, round(bottom))
    c0, c1 = max(0, round(left)), min(width, round(right))
    if r0 < r1 and c0 < c1:
        image[r0:r1, c0:c1] = color


def outline_rect(
    image: np.ndarray, top: float, left: float, bottom: float, right: float, color: Color, width: int = 1
) -> None:
    """Paint the border (``width`` pixels, inside the rectangle) of a rectangle."""
    fill_rect(image, top, left, top + width, right, color)
    fill_rect(image, bottom - width, left, bottom, right, color)
    fill_rect(image, top, left, bottom, left + width, color)
    fill_rect(image, top, right - width, bottom, right, color)


def fill_disc(image: np.ndarray, center: Sequence[float], radius: float, color: Color) -> None:
    """Paint the pixels whose centre lies within ``radius`` of ``center = (row, column)``."""
    height, width = image.shape[:2]
    row, column = float(center[0]), float(center[1])
    r0, r1 = max(0, int(np.floor(row - radius))), min(height, int(np.ceil(row + radius)) + 1)
    c0, c1 = max(0, int(np.floor(column - radius))), min(width, int(np.ceil(column + radius)) + 1)
    if r0 >= r1 or c0 >= c1:
        return
    rows, columns = np.ogrid[r0:r1, c0:c1]
    inside = (rows - row) ** 2 + (columns - column) ** 2 <= radius**2
    image[r0:r1, c0:c1][inside] = color


def draw_polyline(image: np.ndarray, points: np.ndarray, color: Color, radius: float = 1.0) -> None:
    """Paint the segments between consecutive ``points (N, 2)`` (rows, columns) with a pen of ``radius``."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    for start, end in zip(points[:-1], points[1:], strict=True):
        samples = max(2, int(np.ceil(np.abs(end - start).max())) + 1)
        for point in np.linspace(start, end, samples):
            fill_disc(image, point, radius, color)
    if len(points) == 1:
        fill_disc(image, points[0], radius, color)


class PlaneView:
    """Maps plane coordinates ``(x, y)`` in ``[-extent, extent]^2`` onto a square image (y up).

    Args:
        size: side of the image in pixels.
        extent: half-width of the square of the plane that is shown.
    """

    def __init__(self, size: int, extent: float) -> None:
        self.size = int(size)
        self.extent = float(extent)

    def pixels(self, xy: np.ndarray) -> np.ndarray:
        """``(row, column)`` pixel coordinates of points ``(..., 2)``."""
        xy = np.asarray(xy, dtype=np.float64)
        scale = (self.size - 1) / (2 * self.extent)
        column = (xy[..., 0] + self.extent) * scale
        row = (self.extent - xy[..., 1]) * scale
        return np.stack([row, column], axis=-1)

    def length(self, distance: float) -> float:
        """A plane distance in pixels."""
        return float(distance) * (self.size - 1) / (2 * self.extent)
