"""The editor's model without a display: commands, undo/redo, link rules, clipboard, seeds, files."""

import copy
import random

import pytest

from nodeflow.engine.executor import Executor
from nodeflow.gui.document import Document, EditRefused
from nodeflow.gui.seed_control import seed_mode, seeds_after_run, set_seed_mode
from nodeflow.gui.worker import Worker
from nodeflow.engine.registry import Registry
from nodeflow.formats import load_workflow
from tests import stub_nodes


@pytest.fixture
def doc():
    return Document(Registry.from_modules(stub_nodes))


def test_add_connect_and_undo_everything(doc):
    a = doc.add_node("Number", (10, 20))
    b = doc.add_node("Number")
    add = doc.add_node("Add")
    doc.connect(a, 0, add, "a")
    doc.connect(b, 0, add, "b")
    doc.set_value(a, "value", 9)
    doc.move(a, (50, 60))
    assert doc.workflow.nodes[a].inputs["value"] == 9 and doc.position(a) == [50, 60]
    for _ in range(7):
        assert doc.undo() is not None
    assert doc.workflow.nodes == {} and doc.undo() is None
    for _ in range(7):
        doc.redo()
    assert len(doc.workflow.links) == 2 and doc.workflow.nodes[a].inputs["value"] == 9


def test_link_rules(doc):
    a, add, scale, sink = (doc.add_node(t) for t in ("Number", "Add", "Scale", "Sink"))
    doc.connect(a, 0, add, "a")
    with pytest.raises(EditRefused, match="cannot connect FLOAT"):
        doc.connect(scale, 0, add, "b")  # FLOAT output into an INT socket
    doc.connect(add, 0, scale, "x")
    with pytest.raises(EditRefused, match="cycle"):
        doc.connect(add, 0, add, "b")
    other = doc.add_node("Number")
    doc.connect(other, 0, add, "a")  # replaces the existing link into 'a'
    assert [l.src for l in doc.workflow.links if l.dst == add and l.dst_input == "a"] == [other]
    doc.connect(scale, 0, sink, "value")


def test_cycle_through_several_nodes_is_refused(doc):
    a, b = doc.add_node("Add"), doc.add_node("Add")
    doc.connect(a, 0, b, "a")
    with pytest.raises(EditRefused, match="cycle"):
        doc.connect(b, 0, a, "a")


def test_delete_removes_links_and_undo_restores_them(doc):
    a, add = doc.add_node("Number"), doc.add_node("Add")
    doc.connect(a, 0, add, "a")
    doc.remove_nodes([a])
    assert doc.workflow.links == []
    doc.undo()
    assert len(doc.workflow.links) == 1


def test_copy_paste_keeps_internal_links_only(doc):
    a, b, add = doc.add_node("Number", (0, 0)), doc.add_node("Number"), doc.add_node("Add", (100, 0))
    doc.connect(a, 0, add, "a")
    doc.connect(b, 0, add, "b")
    new = doc.paste(doc.copy([a, add]))
    assert len(new) == 2 and set(new).isdisjoint({a, b, add})
    pasted_links = [l for l in doc.workflow.links if l.dst in new]
    assert len(pasted_links) == 1 and pasted_links[0].src in new
    assert doc.position(new[1]) == [140.0, 40.0]
    assert len(doc.duplicate([b])) == 1


def test_titles_modes_and_pins(doc):
    a = doc.add_node("Scale")
    doc.set_title(a, "half")
    doc.set_mode(a, "bypassed")
    assert doc.workflow.nodes[a].title == "half" and doc.workflow.nodes[a].mode == "bypassed"
    assert doc.toggle_pin(a, "factor") and doc.is_pin(a, "factor")
    assert not doc.toggle_pin(a, "factor")


def test_seed_controls(doc):
    registry = Registry.load()
    doc = Document(registry)
    sampler = doc.add_node("KSampler")
    doc.set_value(sampler, "seed", 10)
    set_seed_mode(doc, sampler, "seed", "increment")
    seeds_after_run(doc)
    assert doc.workflow.nodes[sampler].inputs["seed"] == 11
    set_seed_mode(doc, sampler, "seed", "decrement")
    seeds_after_run(doc)
    assert doc.workflow.nodes[sampler].inputs["seed"] == 10
    set_seed_mode(doc, sampler, "seed", "fixed")
    seeds_after_run(doc)
    assert doc.workflow.nodes[sampler].inputs["seed"] == 10
    set_seed_mode(doc, sampler, "seed", "randomize")
    seeds_after_run(doc, random.Random(3))
    assert doc.workflow.nodes[sampler].inputs["seed"] != 10
    doc.set_value(sampler, "seed", 2**64 - 1)
    set_seed_mode(doc, sampler, "seed", "increment")
    seeds_after_run(doc)
    assert doc.workflow.nodes[sampler].inputs["seed"] == 0


def test_save_and_load_keep_positions(doc, tmp_path):
    a = doc.add_node("Number", (12.5, 30))
    sink = doc.add_node("Sink", (200, 30))
    doc.connect(a, 0, sink, "value")
    path = doc.save(tmp_path / "w.json")
    assert not doc.dirty
    again = Document.open(doc.registry, path)
    assert again.position(a) == [12.5, 30.0] and again.workflow == load_workflow(path)
    assert again.path == path


def test_worker_runs_in_background_and_reports(doc):
    a, sink = doc.add_node("Number"), doc.add_node("Sink")
    doc.connect(a, 0, sink, "value")
    worker = Worker(Executor(doc.registry))
    assert worker.start(doc.workflow)
    worker.join(30)
    names = [type(e).__name__ for e in worker.drain()]
    assert names[-1] == "RunFinished" and "NodeStarted" in names


def test_worker_reports_validation_problems_with_their_nodes(doc):
    from nodeflow.gui.worker import RunInvalid

    a, scale, sink = doc.add_node("Number"), doc.add_node("Scale"), doc.add_node("Sink")
    doc.connect(a, 0, scale, "x")
    doc.connect(scale, 0, sink, "value")
    doc.set_value(scale, "factor", 99.0)  # above the maximum
    worker = Worker(Executor(doc.registry))
    worker.start(doc.workflow)
    worker.join(30)
    [event] = [e for e in worker.drain() if isinstance(e, RunInvalid)]
    assert [p.node_id for p in event.problems] == [scale]


@pytest.mark.parametrize("ending, expected", [("cancelled", "RunCancelled"), ("error", "RunFailed"),
                                              ("bug", "RunFailed"), ("busy", None)])
def test_a_task_on_the_worker_ends_as_a_run_does(doc, ending, expected):
    """A task (a sweep) that is stopped, fails or has a bug ends with the event a run would post;
    a second start while it runs is refused."""
    import threading

    from nodeflow.errors import Cancelled, NodeflowError

    release = threading.Event()

    def task(cancel, post):
        release.wait(10)
        raise {"cancelled": Cancelled(), "error": NodeflowError("a clear error"),
               "bug": KeyError("oops"), "busy": Cancelled()}[ending]

    worker = Worker(Executor(doc.registry))
    assert worker.start_task(task)
    if ending == "busy":
        assert not worker.start_task(task) and not worker.start(doc.workflow)
    release.set()
    worker.join(30)
    names = [type(e).__name__ for e in worker.drain()]
    if expected is not None:
        assert names == [expected]


def test_recent_files_newest_first_without_duplicates_or_missing_files(tmp_path):
    from nodeflow.gui.recent import RecentFiles

    files = [tmp_path / f"w{i}.json" for i in range(4)]
    for file in files:
        file.write_text("{}")
    recent = RecentFiles(tmp_path / "config" / "recent.json", limit=3)
    assert recent.paths() == []
    for file in files[:3]:
        recent.add(file)
    recent.add(files[0])
    assert recent.paths() == [files[0], files[2], files[1]]
    recent.add(files[3])
    assert recent.paths() == [files[3], files[0], files[2]]  # the limit drops the oldest
    files[0].unlink()
    assert recent.paths() == [files[3], files[2]]
    (tmp_path / "config" / "recent.json").write_text("not json")
    assert recent.paths() == []  # a damaged list is an empty one, not an error
    recent.clear()
    assert recent.paths() == []


def test_search_ranks_name_prefixes_then_names_then_descriptions(doc):
    from nodeflow.gui.app import search_nodes

    assert [s.id for s in search_nodes(doc.registry, "  ADD ")][0] == "Add"
    assert [s.id for s in search_nodes(doc.registry, "constant")] == ["Number"]  # its description
    found = [s.id for s in search_nodes(doc.registry, "a")]
    assert found[0] == "Add" and "Scale" in found and found.index("Add") < found.index("Scale")
    assert search_nodes(doc.registry, "") == [] and search_nodes(doc.registry, "no such thing") == []


def test_search_puts_the_exact_name_first_then_shorter_names():
    """A new user typing a node's name and Enter gets that node, not a longer variant of it."""
    from nodeflow.engine.registry import Registry
    from nodeflow.gui.search import search_nodes

    registry = Registry.load()
    first = lambda text: search_nodes(registry, text)[0].id  # noqa: E731
    assert first("CLIP Text Encode") == "CLIPTextEncode"  # not "... (SDXL Refiner)" or "(SDXL)"
    assert first("cliptextencode") == "CLIPTextEncode"
    assert first("KSampler") == "KSampler"
    assert first("ksampler adv") == "KSamplerAdvanced"
    assert first("Save Image") == "SaveImage"
    assert first("vae decode") == "VAEDecode"


def test_set_title_normalises_and_skips_no_op_renames(doc):
    a = doc.add_node("Scale")
    doc.set_title(a, "  half ")
    assert doc.workflow.nodes[a].title == "half"
    doc.set_title(a, "half")  # unchanged: no undo entry
    assert doc.undo() == "rename" and doc.workflow.nodes[a].title is None
    doc.redo()
    doc.set_title(a, doc.registry.get("Scale").display)  # the type's own name is no title
    assert doc.workflow.nodes[a].title is None
    doc.set_title(a, "x")
    doc.set_title(a, "")
    assert doc.workflow.nodes[a].title is None and doc.undo() == "rename"
    assert doc.workflow.nodes[a].title == "x"


def test_moving_several_nodes_is_one_undo_step(doc):
    a, b, c = doc.add_node("Number", (0, 0)), doc.add_node("Number", (10, 0)), doc.add_node("Add", (20, 0))
    doc.move_nodes({a: (100, 50), b: (110, 50), c: (20.04, 0)})  # c did not move
    assert doc.position(a) == [100, 50] and doc.position(b) == [110, 50]
    assert doc.undo() == "move 2 nodes"
    assert doc.position(a) == [0, 0] and doc.position(b) == [10, 0]
    assert doc.undo() == "add Add"  # the move was one entry
    doc.move_nodes({a: (0, 0)})
    assert doc.can_redo  # nothing moved: no edit, the redo history stays


def test_seed_mode_is_an_undoable_edit():
    doc = Document(Registry.load())
    sampler = doc.add_node("KSampler")
    doc.dirty = False
    set_seed_mode(doc, sampler, "seed", "fixed")
    assert doc.dirty and seed_mode(doc.workflow, sampler, "seed") == "fixed"
    revision = doc.revision
    set_seed_mode(doc, sampler, "seed", "fixed")  # unchanged: no edit
    assert doc.revision == revision
    assert doc.undo() == "set seed control of seed"
    assert seed_mode(doc.workflow, sampler, "seed") == "randomize"
    doc.redo()
    assert seed_mode(doc.workflow, sampler, "seed") == "fixed"
    with pytest.raises(ValueError):
        set_seed_mode(doc, sampler, "seed", "sometimes")


def test_recovery_file_keeps_unsaved_work_unless_discarded(doc, tmp_path):
    from nodeflow.gui.app import EditorApp
    from nodeflow.gui.recent import RecentFiles
    from nodeflow.gui.recovery import RecoveryFolder

    app = EditorApp(doc, Executor(doc.registry), None, RecoveryFolder(tmp_path / "recovery"),
                    RecentFiles(tmp_path / "recent.json"))
    recovery = app.session.recovery_file  # this window's own
    node = doc.add_node("Number")
    app.autosave(1e9)  # due: written
    assert load_workflow(recovery).nodes[node].type == "Number"
    recovery.unlink()
    app.autosave(2e9)  # due, but nothing new since: not written again
    assert not recovery.exists()
    app.end_session()  # closing (or crashing) with unsaved changes keeps them
    assert recovery.exists()
    app.keep_recovery = False  # the user chose "Discard" when closing
    app.end_session()
    assert not recovery.exists()
    app.write_recovery()
    app.keep_recovery = True
    doc.dirty = False
    app.end_session()  # clean: no recovery file
    assert not recovery.exists()


def test_progress_text_names_the_node_and_its_step():
    from nodeflow.gui.worker import RunProgress

    progress = RunProgress(lambda node_id, node_type: {"3": "hires pass"}.get(node_id, node_type))
    assert progress.step(1, 4) == (0.25, "step 1/4")  # a step before any node: just the step
    assert progress.node_started("5", "KSampler", 3, 7) == (2 / 7, "KSampler (3/7)")
    assert progress.step(12, 20) == (0.6, "KSampler (3/7) step 12/20")
    assert progress.node_started("3", "KSampler", 4, 7)[1] == "hires pass (4/7)"
    assert progress.step(0, 0) == (0.0, "hires pass (4/7) step 0/0")


def _wired(doc):
    """Number -> Add.a, Number -> Add.b, Add -> Scale.x; returns the node ids."""
    a, b = doc.add_node("Number", (0, 0)), doc.add_node("Number", (0, 100))
    add, scale = doc.add_node("Add", (200, 0)), doc.add_node("Scale", (400, 0))
    doc.connect(a, 0, add, "a")
    doc.connect(b, 0, add, "b")
    doc.connect(add, 0, scale, "x")
    return a, b, add, scale


EDITS = {  # name: (edit on the _wired graph, its undo label, a check that it happened)
    "disconnect": (lambda d, a, b, add, scale: d.disconnect(d.workflow.input_link(add, "b")), "disconnect",
                   lambda d, a, b, add, scale: d.workflow.input_link(add, "b") is None),
    "set_title": (lambda d, a, b, add, scale: d.set_title(add, "sum"), "rename",
                  lambda d, a, b, add, scale: d.workflow.nodes[add].title == "sum"),
    "set_mode": (lambda d, a, b, add, scale: d.set_mode(scale, "bypassed"), "bypassed",
                 lambda d, a, b, add, scale: d.workflow.nodes[scale].mode == "bypassed"),
    "toggle_pin": (lambda d, a, b, add, scale: d.toggle_pin(scale, "factor"), "toggle pin",
                   lambda d, a, b, add, scale: d.is_pin(scale, "factor")),
    "paste": (lambda d, a, b, add, scale: d.paste(d.copy([a, add])), "paste",
              lambda d, a, b, add, scale: len(d.workflow.nodes) == 6 and len(d.workflow.links) == 4),
    "duplicate": (lambda d, a, b, add, scale: d.duplicate([add, scale]), "duplicate",
                  lambda d, a, b, add, scale: len(d.workflow.nodes) == 6 and len(d.workflow.links) == 4),
    "delete": (lambda d, a, b, add, scale: d.remove_nodes([add]), "delete 1 node(s)",
               lambda d, a, b, add, scale: add not in d.workflow.nodes and d.workflow.links == []),
    "replace_link": (lambda d, a, b, add, scale: d.connect(b, 0, add, "a"), "connect",
                     lambda d, a, b, add, scale: d.workflow.input_link(add, "a").src == b),
    "seed_mode": (lambda d, a, b, add, scale: d.set_node_setting("seed_control", a, "value", "fixed"),
                  "set seed control of value",
                  lambda d, a, b, add, scale: d.workflow.ui["seed_control"][a]["value"] == "fixed"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_every_edit_undoes_and_redoes_exactly(doc, name):
    """One undo restores the workflow exactly as it was (UI section included); redo re-applies it."""
    edit, label, happened = EDITS[name]
    nodes = _wired(doc)
    before = copy.deepcopy(doc.workflow)
    edit(doc, *nodes)
    after = copy.deepcopy(doc.workflow)
    assert happened(doc, *nodes) and after != before
    doc.dirty = False
    assert doc.undo() == label and doc.workflow == before and doc.dirty
    assert doc.redo() == label and doc.workflow == after and happened(doc, *nodes)


def test_unpinning_an_input_drops_its_link_and_undo_brings_it_back(doc):
    a, b, add, scale = _wired(doc)
    other = doc.add_node("Scale")
    assert doc.toggle_pin(scale, "factor")  # the widget becomes a pin...
    doc.connect(other, 0, scale, "factor")  # ...that a FLOAT output can feed
    assert not doc.toggle_pin(scale, "factor") and doc.workflow.input_link(scale, "factor") is None
    assert doc.undo() == "toggle pin"
    assert doc.workflow.input_link(scale, "factor").src == other and doc.is_pin(scale, "factor")


def test_a_new_node_holds_its_defaults_or_the_values_given(doc):
    plain = doc.add_node("Number")
    given = doc.add_node("Number", (0, 0), {"value": 7})
    assert doc.workflow.nodes[plain].inputs == {"value": 1} and doc.workflow.nodes[given].inputs == {"value": 7}
