"""The canvas's view transform (zoom and offset): pure arithmetic, no display."""

import pytest

from nodeflow.gui.view import FIT_MARGIN, LEVELS, View, bounds, fit, scaled, step


@pytest.mark.parametrize("zoom", LEVELS)
@pytest.mark.parametrize("offset", [(0.0, 0.0), (37.5, -120.25)])
def test_workflow_to_grid_and_back(zoom, offset):
    view = View(zoom, offset)
    for point in [(0, 0), (40, 240), (6000, -35), (1460.5, 200.3)]:
        grid = view.to_grid(point)
        assert all(isinstance(v, int) for v in grid)  # the node editor keeps whole pixels
        back = view.to_model(grid)
        assert abs(back[0] - point[0]) <= 0.5 / zoom + 1e-9 and abs(back[1] - point[1]) <= 0.5 / zoom + 1e-9
        assert view.to_grid(back) == grid  # read back and drawn again: the same pixel, no drift


def test_at_zoom_one_without_offset_grid_and_workflow_positions_are_the_same():
    view = View()
    assert view.to_grid((40, 240)) == (40, 240) and view.to_model((40, 240)) == (40, 240)


@pytest.mark.parametrize("zoom", [0.25, 0.5, 1.25, 1.5])
def test_zooming_around_a_point_keeps_it_in_place(zoom):
    view = View(0.75, (100.0, -30.0))
    anchor = (412.0, 263.0)  # the mouse, in grid pixels
    under_mouse = view.to_model(anchor)
    zoomed = view.zoomed(zoom, anchor)
    assert zoomed.zoom == zoom
    assert zoomed.to_model(anchor) == pytest.approx(under_mouse)
    # another point moves away from (or towards) the anchor by the zoom's ratio
    far = (under_mouse[0] + 100, under_mouse[1] - 40)
    before, after = view.to_grid(far), zoomed.to_grid(far)
    assert after[0] - anchor[0] == pytest.approx((before[0] - anchor[0]) * zoom / 0.75, abs=1)
    assert after[1] - anchor[1] == pytest.approx((before[1] - anchor[1]) * zoom / 0.75, abs=1)


def test_level_steps_clamp_at_the_ends():
    assert step(1.0, 1) == 1.25 and step(1.0, -1) == 0.9
    assert step(LEVELS[-1], 1) == LEVELS[-1] and step(LEVELS[0], -1) == LEVELS[0]
    assert step(LEVELS[0], -5) == LEVELS[0] and step(LEVELS[-1], 9) == LEVELS[-1]
    assert step(0.8, 1) == 0.9 and step(0.8, -1) == 0.75  # between levels
    assert step(0.33, 2) == 0.67


def test_fit_picks_the_largest_level_that_fits_and_centres_the_box():
    canvas = (0.0, 0.0, 1000.0, 600.0)
    box = (0.0, 0.0, 2000.0, 300.0)  # needs 2000 * z <= 1000 - 2 * margin: z <= 0.476
    view = fit(box, canvas)
    assert view.zoom == 0.33
    left, top = view.to_grid(box[:2])
    right, bottom = view.to_grid(box[2:])
    assert abs((left + right) / 2 - 500) <= 1 and abs((top + bottom) / 2 - 300) <= 1
    assert left >= FIT_MARGIN and right <= 1000 - FIT_MARGIN


def test_fit_is_bounded_by_the_canvas_height_too_and_handles_a_canvas_away_from_the_origin():
    canvas = (-300.0, 50.0, 1100.0, 650.0)  # the editor panned: the visible grid starts elsewhere
    box = (6000.0, 100.0, 6400.0, 1100.0)  # tall: 1000 * z <= 600 - 48
    view = fit(box, canvas)
    assert view.zoom == 0.5
    (left, top), (right, bottom) = view.to_grid(box[:2]), view.to_grid(box[2:])
    assert (left + right) / 2 == pytest.approx(400, abs=1) and (top + bottom) / 2 == pytest.approx(350, abs=1)
    assert top >= 50 + FIT_MARGIN - 1 and bottom <= 650 - FIT_MARGIN + 1


def test_fit_does_not_magnify_beyond_the_limit():
    small = (100.0, 100.0, 200.0, 150.0)
    assert fit(small, (0.0, 0.0, 1000.0, 600.0)).zoom == 1.0
    assert fit(small, (0.0, 0.0, 1000.0, 600.0), most=0.75).zoom == 0.75


def test_fit_takes_the_smallest_level_when_nothing_fits():
    assert fit((0.0, 0.0, 100000.0, 10.0), (0.0, 0.0, 1000.0, 600.0)).zoom == LEVELS[0]


def test_bounds_and_scaled_sizes():
    assert bounds([(0, 5, 10, 20), (-3, 8, 4, 40)]) == (-3, 5, 10, 40)
    assert scaled(180, 0.5) == 90 and scaled(1, 0.25) == 1 and scaled(160, 0.33) == 53


def test_one_font_and_one_theme_per_level_from_the_shipped_font(tmp_path, caplog):
    """Fonts come from assets/fonts/ (no system fonts); without the file the canvas keeps
    dearpygui's font and says so. dearpygui needs a context here, not a display."""
    import dearpygui.dearpygui as dpg

    from nodeflow.gui.theme import Themes, font_file

    assert font_file().is_file() and font_file().with_name("DejaVuSans-LICENSE.txt").is_file()
    dpg.create_context()
    try:
        themes = Themes()
        assert sorted(themes.fonts) == sorted(themes.zoom) == sorted(LEVELS)
        assert Themes._fonts(tmp_path / "missing.ttf") == {}
        assert "will not scale" in caplog.text
    finally:
        dpg.destroy_context()
