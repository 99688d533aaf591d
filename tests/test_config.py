"""The settings file: where it is found, what it may say, and that command-line options and
environment variables win over it."""

import pytest

from nodeflow.cli import main
from nodeflow.runtime.config import GIB, ConfigError, load_config
from nodeflow.runtime.paths import Paths


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ("NODEFLOW_CONFIG", "NODEFLOW_MODELS_DIR", "NODEFLOW_OUTPUT_DIR", "NODEFLOW_INPUT_DIR",
                 "NODEFLOW_CUSTOM_NODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def test_no_file_means_defaults():
    config = load_config()
    assert config.source is None
    assert Paths.from_environment(config=config).models_dirs[0].name == "models"


def test_file_in_the_user_config_folder_is_found_and_paths_are_relative_to_it(tmp_path):
    folder = tmp_path / "xdg" / "nodeflow"
    folder.mkdir(parents=True)
    write(folder / "config.toml", 'models = ["comfy/models", "/abs/a1111/models"]\noutput = "pictures"\n'
                                  '[cache]\ncpu = 2\ncuda = 0.5\n')
    config = load_config()
    assert config.source == folder / "config.toml"
    assert config.models == (folder / "comfy/models", folder / "/abs/a1111/models")
    assert config.cache_bytes == {"cpu": 2 * GIB, "cuda": GIB // 2}
    paths = Paths.from_environment(config=config)
    assert paths.models_dirs[1].as_posix() == "/abs/a1111/models" and paths.output_dir == folder / "pictures"


def test_command_line_and_environment_win_over_the_file(tmp_path, monkeypatch):
    write(tmp_path / "nodeflow.toml", 'models = "from-file"\noutput = "file-out"\ninput = "file-in"\n')
    config = load_config()
    monkeypatch.setenv("NODEFLOW_OUTPUT_DIR", "env-out")
    paths = Paths.from_environment(models_dirs=["cli-models"], config=config)
    assert paths.models_dirs == (tmp_path.joinpath("cli-models").relative_to(tmp_path),)
    assert str(paths.output_dir) == "env-out" and paths.input_dir == tmp_path / "file-in"


@pytest.mark.parametrize("text, message", [
    ('modles = ["x"]\n', "unknown setting 'modles'"),
    ("output = 3\n", "output must be a folder path"),
    ("[cache]\ngpu = 4\n", "'gpu' is not a device"),
    ("[cache]\ncpu = -1\n", "cpu must be a number of GiB"),
    ("models = [\n", "not valid TOML"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_cli_reports_a_bad_or_missing_settings_file_in_one_line(tmp_path, capsys):
    write(tmp_path / "bad.toml", "cache = 3\n")
    assert main(["nodes", "--config", str(tmp_path / "bad.toml")]) == 2
    assert main(["nodes", "--config", str(tmp_path / "missing.toml")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert "[cache] must be a table" in errors[0] and "missing.toml not found" in errors[1]
    assert "Traceback" not in "".join(errors)


def test_cli_uses_the_models_folder_from_the_file(tmp_path, capsys):
    from tests.factories import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "elsewhere" / "checkpoints" / "mine.safetensors")
    write(tmp_path / "nodeflow.toml", 'models = ["elsewhere"]\n')
    assert main(["nodes", "--json"]) == 0
    assert "mine.safetensors" in capsys.readouterr().out


def test_preview_interval_setting(tmp_path):
    assert load_config().preview_every == 1
    write(tmp_path / "nodeflow.toml", "preview_every = 4\n")
    assert load_config().preview_every == 4
    write(tmp_path / "bad.toml", "preview_every = -1\n")
    with pytest.raises(ConfigError, match="preview_every must be a whole number"):
        load_config(tmp_path / "bad.toml")
