"""Reading model files: safetensors (metadata, truncation, corruption), safe pickles, folders."""

import json

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.files import read_state_dict


def _write(path, tensors=None, metadata=None):
    tensors = tensors or {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_safetensors_tensors_and_metadata(tmp_path):
    path = _write(tmp_path / "m.safetensors", metadata={"nodeflow.unet.num_heads": "4"})
    sd, metadata = read_state_dict(path)
    assert torch.equal(sd["a.weight"], torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert sorted(sd) == ["a.weight", "b"] and metadata == {"nodeflow.unet.num_heads": "4"}


@pytest.mark.parametrize("keep", [0, 5, 9, 40, -1])
def test_truncated_safetensors_names_the_file(tmp_path, keep):
    data = _write(tmp_path / "full.safetensors").read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[:keep] if keep >= 0 else data[:-4])
    with pytest.raises(ModelFileError, match=r"broken\.safetensors: .*(truncated|empty)"):
        read_state_dict(broken)


def test_random_bytes_and_bad_header_name_the_file(tmp_path):
    (tmp_path / "noise.safetensors").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelFileError, match=r"noise\.safetensors"):
        read_state_dict(tmp_path / "noise.safetensors")
    header = b"{not json!"
    (tmp_path / "header.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ModelFileError, match=r"header\.safetensors: corrupt safetensors header"):
        read_state_dict(tmp_path / "header.safetensors")


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ModelFileError, match=r"nothing\.safetensors: no such model file"):
        read_state_dict(tmp_path / "nothing.safetensors")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelFileError, match=r"model\.gguf: unsupported model file type"):
        read_state_dict(tmp_path / "model.gguf")


class Malicious:
    """Unpickling this would create a file: proof that nothing ran if the file is absent."""

    target = ""

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth"])
def test_pickle_needing_code_is_refused_and_never_run(tmp_path, suffix):
    marker = tmp_path / "pwned"
    payload = Malicious()
    payload.target = str(marker)
    path = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": {"w": torch.zeros(2), "x": payload}}, path)
    assert not marker.exists()  # saving does not run it
    with pytest.raises(ModelFileError, match=rf"evil\{suffix}: refused: this pickle file needs arbitrary Python code"):
        read_state_dict(path)
    assert not marker.exists()


def test_plain_pickles_unwrap_state_dict_and_drop_non_tensors(tmp_path):
    weights = {"a": torch.randn(2, 3), "b": torch.arange(4)}
    torch.save({"state_dict": weights, "global_step": 10}, tmp_path / "wrapped.ckpt")
    sd, metadata = read_state_dict(tmp_path / "wrapped.ckpt")
    assert sorted(sd) == ["a", "b"] and torch.equal(sd["a"], weights["a"]) and metadata == {}
    torch.save({**weights, "epoch": 3}, tmp_path / "flat.pt")
    sd, _ = read_state_dict(tmp_path / "flat.pt")
    assert sorted(sd) == ["a", "b"]
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ModelFileError, match=r"list\.pth: holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pth")


def test_folders_must_be_diffusers_folders(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelFileError, match=r"plain: a folder, but not a diffusers model folder"):
        read_state_dict(tmp_path / "plain")
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelFileError, match=r"pipe/unet: no weights file"):
        read_state_dict(folder)


@pytest.mark.parametrize("content", [bytes(range(256)) * 20, b"PK\x03\x04" + bytes(600), b"\x80\x02}q\x00(X"])
def test_damaged_pickles_are_called_damaged_not_dangerous(tmp_path, content):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "broken.ckpt" in message and "refused" not in message and "damaged" in message


def test_reading_with_conversion_equals_reading_then_converting(tmp_path):
    from nodeflow.loading.files import read_safetensors_converted, stored_dtypes

    tensors = {"half": torch.randn(3, 5).half(), "bf": torch.randn(4).bfloat16(), "ids": torch.arange(6),
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3)}
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"name": "x"})
    assert stored_dtypes(path) == {k: v.dtype for k, v in tensors.items()}
    converted, metadata = read_safetensors_converted(path, lambda key: torch.float32 if key != "bf" else None)
    assert metadata == {"name": "x"}
    assert converted["half"].dtype == torch.float32 and torch.equal(converted["half"], tensors["half"].float())
    assert converted["bf"].dtype == torch.bfloat16 and torch.equal(converted["bf"], tensors["bf"])
    assert converted["ids"].dtype == torch.int64 and torch.equal(converted["ids"], tensors["ids"])
    assert converted["scalar"].shape == () and float(converted["scalar"]) == 2.5
    assert converted["empty"].shape == (0, 3)
