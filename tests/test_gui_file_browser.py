"""The file browser's listing (order, sizes, filters, unreadable folders) and Load Image's file
rules (copying a chosen file into the input folder, the node's picture), without a display."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodeflow.gui.file_listing import (ALL_FILES, IMAGES, PARENT, WORKFLOWS, Entry, list_folder, save_name,
                                       size_text, typed_path)
from nodeflow.gui.image_input import (ThumbnailError, bring_into_inputs, candidate_names, input_name,
                                      read_thumbnail, thumbnail_for)
from nodeflow.runtime.paths import Paths


def names(listing) -> list[str]:
    return [entry.name for entry in listing.entries]


def make(folder: Path, *files: str, dirs: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in dirs:
        (folder / name).mkdir()
    for name in files:
        (folder / name).write_bytes(b"x" * 10)
    return folder


# ----- listing ---------------------------------------------------------------------------------
def test_parent_first_then_folders_then_files_each_ascending_ignoring_case(tmp_path):
    folder = make(tmp_path / "f", "b.json", "A.json", "c.png", "_z.json", "Zeta.JSON",
                  dirs=("beta", "Alpha", "gamma"))
    assert names(list_folder(folder)) == [PARENT, "Alpha", "beta", "gamma", "_z.json", "A.json", "b.json",
                                          "c.png", "Zeta.JSON"]
    listing = list_folder(folder)
    assert listing.entries[0].is_parent and listing.entries[0].path == tmp_path
    assert listing.error is None


def test_names_differing_only_in_case_keep_a_fixed_order(tmp_path):
    folder = make(tmp_path / "f", "b.png", "B.png", "a.png")
    assert names(list_folder(folder))[1:] == ["a.png", "B.png", "b.png"]


def test_the_filter_hides_other_files_but_never_folders(tmp_path):
    folder = make(tmp_path / "f", "w.json", "shot.PNG", "notes.txt", "p.jpeg", "q.webp", "r.bmp", "s.jpg", "t.gif",
                  dirs=("sub.txt",))
    assert names(list_folder(folder, WORKFLOWS)) == [PARENT, "sub.txt", "shot.PNG", "w.json"]
    assert names(list_folder(folder, IMAGES)) == [PARENT, "sub.txt", "p.jpeg", "q.webp", "r.bmp", "s.jpg", "shot.PNG"]
    assert "notes.txt" in names(list_folder(folder, ALL_FILES))


def test_hidden_files_are_left_out_unless_asked(tmp_path):
    folder = make(tmp_path / "f", ".secret.json", "open.json", dirs=(".git",))
    assert names(list_folder(folder)) == [PARENT, "open.json"]
    assert names(list_folder(folder, show_hidden=True)) == [PARENT, ".git", ".secret.json", "open.json"]


def test_the_root_has_no_parent_row():
    root = Path(Path.cwd().anchor)
    assert PARENT not in names(list_folder(root))


def test_rows_carry_size_and_date_folders_no_size(tmp_path):
    folder = make(tmp_path / "f", dirs=("sub",))
    (folder / "big.png").write_bytes(b"\0" * 1536)
    stamp = time.mktime((2024, 3, 5, 14, 7, 0, 0, 0, -1))
    os.utime(folder / "big.png", (stamp, stamp))
    rows = {entry.name: entry for entry in list_folder(folder).entries}
    assert rows["big.png"].size == 1536 and rows["big.png"].size_text() == "1.5 KB"
    assert rows["big.png"].date_text() == "2024-03-05 14:07"
    assert rows["sub"].is_dir and rows["sub"].size_text() == ""
    assert rows[PARENT].date_text() == ""


def test_a_broken_link_is_listed_without_size(tmp_path):
    folder = make(tmp_path / "f")
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    [_, row] = list_folder(folder).entries
    assert row.name == "gone.png" and not row.is_dir and row.size is None and row.size_text() == ""


def test_an_unreadable_or_missing_folder_is_reported_with_only_the_way_up(tmp_path):
    missing = list_folder(tmp_path / "missing")
    assert names(missing) == [PARENT] and "cannot read" in missing.error and "missing" in missing.error
    not_a_folder = make(tmp_path / "f", "file.json") / "file.json"
    assert names(list_folder(not_a_folder)) == [PARENT] and list_folder(not_a_folder).error
    locked = make(tmp_path / "locked", "a.json")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        listing = list_folder(locked)
        assert names(listing) == [PARENT] and "Permission denied" in listing.error
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("size, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"),
                                        (1024 ** 2 * 5, "5.0 MB"), (int(1024 ** 3 * 2.25), "2.2 GB"),
                                        (1024 ** 4 * 3, "3.0 TB"), (1024 ** 5, "1024.0 TB")])
def test_sizes_in_1024_based_units(size, text):
    assert size_text(size) == text


def test_typed_paths_and_save_names(tmp_path):
    assert typed_path(tmp_path, "sub/x.json") == tmp_path / "sub" / "x.json"
    assert typed_path(tmp_path, "/etc ") == Path("/etc")
    assert typed_path(tmp_path, "~") == Path(os.path.expanduser("~"))
    assert save_name("flow") == "flow.json" and save_name("flow.JSON") == "flow.JSON"
    assert save_name(" my.flow ") == "my.flow.json"


def test_entry_kinds():
    assert Entry(PARENT, Path("/"), True).is_parent and not Entry("a", Path("/a"), True).is_parent


# ----- Load Image's file -----------------------------------------------------------------------
def png(path: Path, colour=(255, 0, 0), size=(40, 20), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


@pytest.fixture
def paths(tmp_path):
    return Paths(input_dir=tmp_path / "input", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                 assets_dir=tmp_path / "assets")


def test_a_chosen_file_is_copied_into_the_users_input_folder(tmp_path, paths):
    source = png(tmp_path / "elsewhere" / "cat.png")
    assert bring_into_inputs(source, paths) == "cat.png"  # the input folder is made if missing
    assert (paths.input_dir / "cat.png").read_bytes() == source.read_bytes()
    assert source.exists() and "cat.png" in paths.list_inputs()
    assert not [p for p in paths.input_dir.iterdir() if p.name.startswith(".")]  # no partial file left


def test_a_different_file_of_the_same_name_is_never_overwritten(tmp_path, paths):
    kept = png(paths.input_dir / "cat.png", (0, 255, 0)).read_bytes()
    png(paths.input_dir / "cat (2).png", (0, 0, 255))
    source = png(tmp_path / "elsewhere" / "cat.png", (255, 0, 0))
    assert bring_into_inputs(source, paths) == "cat (3).png"
    assert (paths.input_dir / "cat.png").read_bytes() == kept
    assert (paths.input_dir / "cat (3).png").read_bytes() == source.read_bytes()


def test_without_hard_links_the_copy_is_created_exclusively(tmp_path, paths, monkeypatch):
    """A file system without hard links (FAT, some network shares): the copy is made by an
    exclusive create, and a taken name is still never overwritten."""
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted", str(target))

    monkeypatch.setattr("os.link", no_links)
    kept = png(paths.input_dir / "cat.png", (0, 255, 0)).read_bytes()
    source = png(tmp_path / "elsewhere" / "cat.png", (255, 0, 0))
    assert bring_into_inputs(source, paths) == "cat (2).png"
    assert (paths.input_dir / "cat.png").read_bytes() == kept
    assert (paths.input_dir / "cat (2).png").read_bytes() == source.read_bytes()
    assert not [p for p in paths.input_dir.iterdir() if p.name.startswith(".")]


def test_an_identical_file_already_there_is_reused(tmp_path, paths):
    png(paths.input_dir / "cat.png", (0, 255, 0))
    source = png(tmp_path / "elsewhere" / "cat.png", (255, 0, 0))
    first = bring_into_inputs(source, paths)
    assert first == "cat (2).png" and bring_into_inputs(source, paths) == first
    assert sorted(p.name for p in paths.input_dir.iterdir()) == ["cat (2).png", "cat.png"]


def test_a_file_already_in_an_input_folder_keeps_its_name(tmp_path, paths):
    inside = png(paths.input_dir / "sub" / "dog.png")
    example = png(paths.assets_dir / "inputs" / "example.png")
    assert bring_into_inputs(inside, paths) == "sub/dog.png"
    assert bring_into_inputs(example, paths) == "example.png"
    assert sorted(p.name for p in paths.input_dir.rglob("*")) == ["dog.png", "sub"]  # nothing copied


def test_an_example_shadowed_by_a_users_file_is_copied(tmp_path, paths):
    png(paths.input_dir / "same.png", (0, 255, 0))  # LoadImage's "same.png" is this one
    example = png(paths.assets_dir / "inputs" / "same.png", (255, 0, 0))
    assert input_name(example, paths) is None
    assert bring_into_inputs(example, paths) == "same (2).png"


def test_choosing_a_missing_file_or_a_folder_is_an_error(tmp_path, paths):
    with pytest.raises(FileNotFoundError, match="gone.png"):
        bring_into_inputs(tmp_path / "gone.png", paths)
    with pytest.raises(FileNotFoundError):
        bring_into_inputs(tmp_path, paths)


def test_candidate_names():
    names = candidate_names("cat.tar.png")
    assert [next(names) for _ in range(3)] == ["cat.tar.png", "cat.tar (2).png", "cat.tar (3).png"]
    assert next(candidate_names(".hidden.png")) == "hidden.png"


def test_the_thumbnail_fits_the_longer_side_and_keeps_colours(tmp_path):
    pixels = read_thumbnail(png(tmp_path / "wide.png", (255, 0, 0), (400, 100)), 160)
    assert pixels.shape == (40, 160, 4) and pixels.dtype == np.float32
    assert np.allclose(pixels[20, 80], [1, 0, 0, 1])
    small = read_thumbnail(png(tmp_path / "small.png", (0, 0, 255, 128), (30, 60), "RGBA"), 160)
    assert small.shape == (60, 30, 4) and abs(small[0, 0, 3] - 128 / 255) < 1e-6  # never enlarged


def test_the_thumbnail_is_upright(tmp_path):
    image = Image.new("RGB", (60, 20), (0, 255, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotated 90 degrees
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert read_thumbnail(tmp_path / "turned.jpg").shape[:2] == (60, 20)


def test_no_thumbnail_says_why_in_a_few_words(tmp_path, paths, monkeypatch):
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ThumbnailError, match="not a readable image"):
        read_thumbnail(tmp_path / "junk.png")
    with pytest.raises(ThumbnailError, match="file not found"):
        read_thumbnail(tmp_path / "absent.png")
    with pytest.raises(ThumbnailError, match="no image chosen"):
        thumbnail_for("", paths)
    with pytest.raises(ThumbnailError, match="absent.png: not in the input folder"):
        thumbnail_for("absent.png", paths)
    big = png(tmp_path / "big.png", size=(100, 100))
    monkeypatch.setenv("NODEFLOW_MAX_IMAGE_PIXELS", "9999")
    with pytest.raises(ThumbnailError, match="too large"):
        read_thumbnail(big)


def test_a_malformed_pixel_limit_refuses_pictures_not_the_window(tmp_path, monkeypatch):
    big = png(tmp_path / "big.png", size=(100, 100))
    monkeypatch.setenv("NODEFLOW_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ThumbnailError, match="NODEFLOW_MAX_IMAGE_PIXELS must be a whole number"):
        read_thumbnail(big)
    monkeypatch.setenv("NODEFLOW_MAX_IMAGE_PIXELS", "10000")  # 100 x 100: just fits
    assert read_thumbnail(big).shape[:2] == (100, 100)


def test_thumbnail_for_a_name_in_the_input_folder(paths):
    png(paths.input_dir / "in.png", (0, 255, 0), (16, 8))
    assert thumbnail_for("in.png", paths).shape == (8, 16, 4)
