"""Where new nodes go (nodeflow/gui/placement.py), without a display."""

from nodeflow.gui.placement import GAP, free_spot, overlaps


def test_a_free_spot_is_kept():
    assert free_spot((0, 0), (100, 50), [(300, 0, 400, 50)]) == (0, 0)


def test_a_taken_spot_moves_below_every_box_in_the_way():
    boxes = [(0, 0, 100, 100), (50, 100 + GAP, 150, 200)]  # the second is under the first
    x, y = free_spot((10, 10), (100, 50), boxes)
    assert (x, y) == (10, 200 + GAP)
    assert not any(overlaps((x, y, x + 100, y + 50), box, GAP) for box in boxes)


def test_stacked_placements_never_overlap():
    boxes = []
    for _ in range(5):  # the same spot asked five times, as the search box did
        x, y = free_spot((0, 0), (120, 80), boxes)
        boxes.append((x, y, x + 120, y + 80))
    assert [box[1] for box in boxes] == [0, 100, 200, 300, 400]
