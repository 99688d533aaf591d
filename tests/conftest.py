import os

import pytest


def pytest_configure(config):
    """One torch thread for the suite: the test models are tiny, so threads only add
    synchronisation, and on a shared 2-core machine two OpenMP threads per process made
    forwards tens of times slower (measured: a tiny U-Net forward 4 s vs 0.14 s)."""
    import torch

    torch.set_num_threads(1)
    _keep_the_users_home_out_of_reach()


def _keep_the_users_home_out_of_reach():
    """The editor keeps recent files in $XDG_CONFIG_HOME and recovery files in $XDG_STATE_HOME,
    the settings file is looked for in ~/.config: point HOME and both variables (for this process
    and every process a test starts) at a folder of the test run, so no test writes to (or reads)
    the user's real settings or state, even one that forgets to pass its folders."""
    import os
    import tempfile

    root = tempfile.mkdtemp(prefix="nodeflow-tests-home-")
    os.environ["HOME"] = os.path.join(root, "home")
    os.environ["XDG_CONFIG_HOME"] = os.path.join(root, "config")
    os.environ["XDG_STATE_HOME"] = os.path.join(root, "state")


@pytest.fixture
def stub_registry():
    """A registry with only the stub pack, call counters reset."""
    from nodeflow.engine.registry import Registry
    from tests import stub_nodes

    stub_nodes.CALLS.clear()
    return Registry.from_modules(stub_nodes)


@pytest.fixture(scope="session")
def display():
    """An Xvfb display (1400 x 900) for the window tests, shared by their modules; DISPLAY points at it.
    The first free number from 90 on (no lock file; one a starting server loses to another is
    skipped), so test runs side by side never share a display."""
    import shutil

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    server, number = _start_xvfb()
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield f":{number}"
    server.terminate()
    server.wait()
    if previous is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = previous


def _lock_holder(lock) -> int | None:
    """The process id an X server wrote into its lock file (None while there is none)."""
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _start_xvfb():
    """(the Xvfb process, its display number), once its socket accepts clients."""
    import subprocess
    import time
    from pathlib import Path

    for number in range(90, 190):
        if Path(f"/tmp/.X{number}-lock").exists():
            continue
        server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1400x900x24"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        lock = Path(f"/tmp/.X{number}-lock")
        while server.poll() is None and time.monotonic() < deadline:
            if Path(f"/tmp/.X11-unix/X{number}").exists() and _lock_holder(lock) == server.pid:
                time.sleep(0.2)  # the socket is made before the server listens on it
                if server.poll() is None:
                    return server, number
            time.sleep(0.05)
        server.kill()  # another server took the number first, or it never started
        server.wait()
    pytest.fail("no Xvfb display could be started on :90-:189")
