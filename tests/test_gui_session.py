"""The editor's session without a display: the recovery file's rules, autosave, recent files and
unsaved changes. Every file is under tmp_path (the recent-files list included)."""

import subprocess
import sys
from pathlib import Path

import pytest

from nodeflow.engine.registry import Registry
from nodeflow.formats import load_workflow
from nodeflow.gui.document import Document
from nodeflow.gui.recent import RecentFiles
from nodeflow.gui.recovery import RecoveryFolder
from nodeflow.gui.session import AUTOSAVE_SECONDS, Session
from tests import stub_nodes
from tests.project import ROOT


@pytest.fixture
def registry():
    return Registry.from_modules(stub_nodes)


@pytest.fixture
def announced():
    """The recent-files lists the session announced, in order."""
    return []


@pytest.fixture
def session(registry, tmp_path, announced):
    recent = RecentFiles(tmp_path / "config" / "recent.json")
    return Session(Document(registry), RecoveryFolder(tmp_path / "state" / "recovery"), recent,
                   on_recent_changed=announced.append)


def saved_file(registry, path, node_type="Number"):
    """A workflow file holding one ``node_type`` node; returns its path."""
    document = Document(registry)
    document.add_node(node_type)
    document.save(path)
    return path


def due(session, after=0.0):
    """A time at which the next autosave is due (``after`` seconds later still)."""
    return session.last_autosave + AUTOSAVE_SECONDS + after


def test_session_imports_no_dearpygui():
    code = ("import sys, nodeflow.gui.session\n"
            "assert not [m for m in sys.modules if m.startswith('dearpygui')], 'dearpygui imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_autosave_writes_unsaved_changes_every_few_seconds_once_per_revision(session):
    node = session.document.add_node("Number")
    session.autosave(session.last_autosave + AUTOSAVE_SECONDS / 2)  # not due yet
    assert not session.recovery_file.exists()
    session.autosave(due(session))
    assert load_workflow(session.recovery_file).nodes[node].type == "Number"
    session.recovery_file.unlink()
    session.autosave(due(session))  # due, but nothing new since: not written again
    assert not session.recovery_file.exists()
    session.document.set_value(node, "value", 7)
    session.autosave(due(session))  # a new revision: written
    assert load_workflow(session.recovery_file).nodes[node].inputs["value"] == 7


def test_autosave_leaves_a_clean_document_alone(session, registry, tmp_path):
    session.open(saved_file(registry, tmp_path / "clean.json"))
    session.autosave(due(session, after=100))
    assert not session.recovery_file.exists()


def test_autosave_timer_restarts_when_due_even_with_nothing_to_write(session):
    now = due(session)
    session.autosave(now)
    session.document.add_node("Number")
    session.autosave(now + AUTOSAVE_SECONDS / 2)  # the clock restarted at ``now``
    assert not session.recovery_file.exists()
    session.autosave(now + AUTOSAVE_SECONDS)
    assert session.recovery_file.exists()


def test_closing_keeps_unsaved_work_in_the_recovery_file(session):
    node = session.document.add_node("Number")
    session.end_session()  # closing (or crashing) with unsaved changes
    assert load_workflow(session.recovery_file).nodes[node].type == "Number"


def test_closing_without_the_changes_removes_the_recovery_file(session):
    session.document.add_node("Number")
    session.write_recovery()  # an autosave before
    session.close_without_changes()  # the user chose "Discard" when closing
    session.end_session()
    assert not session.recovery_file.exists()


def an_earlier_editor_left_work(session, registry, tmp_path, node_type="Add"):
    """Another editor on the same recovery folder closes (or crashes) with unsaved work; returns
    (its recovery file, the node id)."""
    earlier = Session(Document(registry), RecoveryFolder(session.recovery.folder),  # as another process
                      RecentFiles(tmp_path / "config" / "other.json"))
    node = earlier.document.add_node(node_type)
    earlier.end_session()
    return earlier.recovery_file, node


def test_a_clean_close_removes_its_recovery_file_and_never_an_unanswered_offer(session, registry, tmp_path):
    orphan, _ = an_earlier_editor_left_work(session, registry, tmp_path)
    session.document.add_node("Number")
    session.write_recovery()
    session.document.dirty = False
    session.recovery_offer_shown(orphan)  # not answered yet
    session.end_session()  # clean: its own file goes
    assert not session.recovery_file.exists() and orphan.exists()
    session.end_session()  # and none to remove: no error
    assert orphan.exists()


def test_restoring_opens_the_earlier_work_as_unsaved_work_without_a_file(session, registry, tmp_path, announced):
    orphan, node = an_earlier_editor_left_work(session, registry, tmp_path)
    assert session.orphan_to_offer() == orphan
    session.recovery_offer_shown(orphan)
    session.open(orphan, remember=False)
    session.recovery_restored()
    assert session.document.workflow.nodes[node].type == "Add"
    assert session.dirty and session.document.path is None and session.needs_file_name
    assert not session.recovery_offered and not orphan.exists()  # moved into this window's file
    assert load_workflow(session.recovery_file).nodes[node].type == "Add"
    assert announced == [] and session.recent_paths() == []  # the recovery file is no recent file
    assert session.window_title() == "* untitled - nodeflow"
    session.end_session()  # still unsaved at the next close: kept again
    assert load_workflow(session.recovery_file).nodes[node].type == "Add"
    assert session.orphan_to_offer() == session.recovery_file  # offered to the next editor


def test_discarding_the_offered_recovery_removes_it(session, registry, tmp_path):
    orphan, _ = an_earlier_editor_left_work(session, registry, tmp_path)
    session.recovery_offer_shown(orphan)
    session.discard_recovery()
    assert not orphan.exists() and not session.recovery_offered
    assert session.orphan_to_offer() is None
    session.end_session()
    assert session.orphan_to_offer() is None


def test_concurrent_editors_keep_their_own_files_and_do_not_offer_each_others(session, registry, tmp_path):
    other = Session(Document(registry), RecoveryFolder(session.recovery.folder), RecentFiles(tmp_path / "o.json"))
    session.document.add_node("Number")
    other.document.add_node("Add")
    session.write_recovery()
    other.write_recovery()
    assert session.recovery_file != other.recovery_file
    assert session.orphan_to_offer() is None and other.orphan_to_offer() is None  # both alive
    other.end_session()  # closes with unsaved work: now an orphan for the others
    assert session.orphan_to_offer() == other.recovery_file


def test_unsaved_work_of_an_editor_killed_with_sigkill_is_offered_next_time(session, tmp_path):
    folder = session.recovery.folder
    code = ("import os, signal, sys, time\n"
            "from nodeflow.gui.recovery import RecoveryFolder\n"
            "path = RecoveryFolder(sys.argv[1]).claim()\n"
            "path.write_text('{\"format\": \"nodeflow-workflow\", \"version\": 1, \"nodes\": {}, \"links\": []}')\n"
            "print(path, flush=True)\n"
            "time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    path = Path(process.stdout.readline().strip())
    assert session.orphan_to_offer() is None  # its editor still runs: not offered
    process.kill()  # SIGKILL: no cleanup at all
    process.wait(timeout=30)
    assert session.orphan_to_offer() == path and path.exists()


def test_the_default_recovery_folder_is_in_the_user_state_folder(monkeypatch, tmp_path):
    from nodeflow.gui.recovery import default_recovery_dir

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_recovery_dir() == tmp_path / "state" / "nodeflow" / "recovery"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_recovery_dir() == tmp_path / "home" / ".local" / "state" / "nodeflow" / "recovery"


def test_a_recovery_file_that_cannot_be_written_is_logged_not_raised(session, tmp_path, caplog):
    (tmp_path / "blocker").write_text("a file where the recovery file's folder should be")
    session.recovery_file = tmp_path / "blocker" / "unsaved.json"
    session.document.add_node("Number")
    session.autosave(due(session))
    session.end_session()
    assert session.recovered_revision is None
    assert "cannot write the recovery file" in caplog.text


def test_saving_marks_clean_and_remembers_the_file(session, tmp_path, announced):
    session.document.add_node("Number")
    assert session.dirty and session.needs_file_name
    assert session.window_title() == "* untitled - nodeflow"
    saved = session.save(tmp_path / "mine.json")
    assert saved == tmp_path / "mine.json" and load_workflow(saved).nodes
    assert not session.dirty and not session.needs_file_name
    assert session.window_title() == "mine.json - nodeflow"
    assert announced == [[saved.resolve()]] and session.recent_paths() == [saved.resolve()]
    session.document.add_node("Number")
    assert session.window_title() == "* mine.json - nodeflow"
    assert session.save() == saved  # to its own file
    assert not session.dirty and session.recent_paths() == [saved.resolve()]  # no duplicate


def test_a_failed_save_raises_and_stays_unsaved(session, tmp_path, announced):
    (tmp_path / "blocker").write_text("a file, not a folder")
    session.document.add_node("Number")
    with pytest.raises(OSError):
        session.save(tmp_path / "blocker" / "mine.json")
    assert session.dirty and announced == [] and session.recent_paths() == []


def test_opening_replaces_the_document_and_remembers_it(session, registry, tmp_path, announced):
    first = saved_file(registry, tmp_path / "first.json", "Number")
    second = saved_file(registry, tmp_path / "second.json", "Add")
    session.open(first)
    session.open(second)
    assert [n.type for n in session.document.workflow.nodes.values()] == ["Add"]
    assert not session.dirty and session.window_title() == "second.json - nodeflow"
    assert session.recent_paths() == [second.resolve(), first.resolve()]  # newest first
    assert announced[-1] == [second.resolve(), first.resolve()]
    session.open(first, remember=False)
    assert session.recent_paths() == [second.resolve(), first.resolve()]


def test_a_file_that_cannot_be_opened_leaves_the_document_and_the_list(session, tmp_path, announced):
    node = session.document.add_node("Number")
    broken = tmp_path / "broken.json"
    broken.write_text("not json")
    with pytest.raises(Exception):
        session.open(broken)
    with pytest.raises(Exception):
        session.open(tmp_path / "missing.json")
    assert node in session.document.workflow.nodes and session.dirty
    assert announced == [] and session.recent_paths() == []


def test_new_gives_an_empty_clean_document_with_the_same_node_types(session, registry):
    session.document.add_node("Number")
    document = session.new()
    assert session.document is document and document.registry is registry
    assert document.workflow.nodes == {} and not session.dirty and session.needs_file_name
    assert session.window_title() == "untitled - nodeflow"


def test_clearing_the_recent_files_announces_an_empty_list(session, tmp_path, announced):
    session.save(tmp_path / "mine.json")
    session.clear_recent()
    assert session.recent_paths() == [] and announced[-1] == []
    assert (tmp_path / "config" / "recent.json").is_file()  # the list lives where the test put it


def test_a_session_without_a_listener_still_keeps_the_list(registry, tmp_path):
    session = Session(Document(registry), RecoveryFolder(tmp_path / "recovery"), RecentFiles(tmp_path / "recent.json"))
    session.save(tmp_path / "mine.json")
    assert session.recent_paths() == [(tmp_path / "mine.json").resolve()]
