"""Textual-inversion embeddings: the file layouts users have, the lookup by name, and that an
embedding's vectors go exactly where the tokens they replace would go."""

import pytest
import torch
from safetensors.torch import save_file

from nodeflow.errors import ModelFileError
from nodeflow.loading.embeddings import EmbeddingFinder, load_embedding
from nodeflow.text.prompt_weights import PromptError
from tests.test_text_encoder import setup  # noqa: F401  (the tiny CLIP fixture)

VECTORS = torch.arange(12, dtype=torch.float32).reshape(3, 4)


@pytest.mark.parametrize("layout", ["a1111_pt", "a1111_safetensors", "diffusers_bin", "single_vector_pt", "sdxl"])
def test_file_layouts(tmp_path, layout):
    if layout == "a1111_pt":
        path = tmp_path / "e.pt"
        torch.save({"string_to_token": {"*": torch.tensor(265)}, "string_to_param": {"*": VECTORS},
                    "name": "e", "step": 3000}, path)
    elif layout == "a1111_safetensors":
        path = tmp_path / "e.safetensors"
        save_file({"emb_params": VECTORS}, str(path))
    elif layout == "diffusers_bin":
        path = tmp_path / "e.bin"
        torch.save({"<e>": VECTORS}, path)
    elif layout == "single_vector_pt":
        path = tmp_path / "e.pt"
        torch.save({"<e>": VECTORS[0]}, path)
    else:
        path = tmp_path / "e.safetensors"
        save_file({"clip_l": VECTORS, "clip_g": torch.zeros(3, 8)}, str(path))
    expected = VECTORS[:1] if layout == "single_vector_pt" else VECTORS
    assert torch.equal(load_embedding(path), expected)


def test_a_pickle_that_runs_code_is_refused_unexecuted(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": Evil()}}, path)
    with pytest.raises(ModelFileError, match="refused"):
        load_embedding(path)


def test_not_an_embedding(tmp_path):
    path = tmp_path / "two.safetensors"
    save_file({"a": VECTORS.clone(), "b": VECTORS.clone()}, str(path))
    with pytest.raises(ModelFileError, match="two.safetensors: not a textual-inversion embedding"):
        load_embedding(path)


def word_embedding(tokenizer, model, text):
    """Vectors equal to the token embeddings of ``text``'s tokens: an embedding that means ``text``."""
    ids = torch.tensor(tokenizer.encode(text))
    return model.get_input_embeddings().weight[ids].detach().clone()


@pytest.fixture
def finder(tmp_path, setup):  # noqa: F811
    reference, tokenizer, _ = setup
    (tmp_path / "styles").mkdir()
    save_file({"emb_params": word_embedding(tokenizer, reference, "red circle")}, str(tmp_path / "redcircle.safetensors"))
    torch.save({"string_to_param": {"*": word_embedding(tokenizer, reference, "blue")}}, tmp_path / "styles" / "blue.pt")
    save_file({"emb_params": torch.zeros(2, 32)}, str(tmp_path / "narrow.safetensors"))
    return EmbeddingFinder([tmp_path])


@pytest.mark.parametrize("with_embedding, plain", [
    ("a embedding:redcircle on a embedding:styles/blue background", "a red circle on a blue background"),
    ("a (embedding:redcircle.safetensors:1.3), on a blue background", "a (red circle:1.3), on a blue background"),
    ("a embedding:redcircle, on a blue background", "a red circle, on a blue background"),
])
def test_an_embedding_of_word_vectors_encodes_like_the_words(setup, finder, with_embedding, plain):  # noqa: F811
    _, _, ours = setup
    cond, pooled = ours.encode(with_embedding, finder)
    expected, expected_pooled = ours.encode(plain)
    assert cond.shape == expected.shape
    torch.testing.assert_close(cond, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pooled, expected_pooled, rtol=1e-6, atol=1e-6)


def test_an_embedding_is_one_group_that_moves_whole_to_the_next_window(setup, finder):  # noqa: F811
    _, tokenizer, ours = setup
    first, second = ours.windows("cat " * 74 + "embedding:redcircle", finder)
    assert [token for token, _ in first][75:] == [49407, 49407]
    assert [type(token) for token, _ in second[:4]] == [int, torch.Tensor, torch.Tensor, int]
    cond, _ = ours.encode("cat " * 74 + "embedding:redcircle", finder)
    assert cond.shape == (1, 154, 64)


def test_the_hook_is_removed_after_encoding(setup, finder):  # noqa: F811
    _, _, ours = setup
    plain = ours.encode("a red circle")[0]
    ours.encode("a embedding:styles/blue circle", finder)
    assert torch.equal(ours.encode("a red circle")[0], plain)


def test_missing_embedding_names_it_and_lists_what_there_is(setup, finder):  # noqa: F811
    _, _, ours = setup
    with pytest.raises(PromptError, match=r"embedding 'easynegative' not found .*available: narrow, redcircle, styles/blue"):
        ours.encode("a cat, embedding:easynegative", finder)


def test_embedding_for_another_model_family_is_a_clear_error(setup, finder):  # noqa: F811
    _, _, ours = setup
    with pytest.raises(PromptError, match="32 wide, but this text encoder's tokens are 64"):
        ours.encode("embedding:narrow", finder)


def test_clip_text_encode_fingerprint_follows_the_embedding_files_it_names(tmp_path):
    import os

    from nodeflow.runtime.paths import Paths
    from nodeflow.loading.embedding_files import embedding_files_fingerprint

    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": VECTORS.clone()}, str(folder / "style.safetensors"))
    paths = Paths(models_dirs=(tmp_path,))
    text = {"text": "a cat, (embedding:style:1.2), embedding:style."}
    first = embedding_files_fingerprint(text, paths)
    assert first.count("style.safetensors") == 2
    assert embedding_files_fingerprint({"text": "a cat"}, paths) == ""
    os.utime(folder / "style.safetensors", ns=(1, 1))
    assert embedding_files_fingerprint(text, paths) != first


@pytest.mark.parametrize("type_id", ["CLIPTextEncode", "GLIGENTextBoxApply"])
def test_prompt_nodes_re_encode_when_an_embedding_file_they_name_is_replaced(tmp_path, type_id):
    """Every node that encodes a prompt through the embeddings folder declares the embedding-file
    fingerprint (GLIGENTextBoxApply lacked it: a replaced file left its cached output stale)."""
    import os

    from nodeflow.engine.registry import Registry
    from nodeflow.runtime.paths import Paths

    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": VECTORS.clone()}, str(folder / "style.safetensors"))
    paths = Paths(models_dirs=(tmp_path,))
    spec = Registry.load(paths).get(type_id)
    inputs = {"text": "a cat, embedding:style"}
    first = spec.fingerprint(inputs, paths)
    os.utime(folder / "style.safetensors", ns=(1, 1))
    assert spec.fingerprint(inputs, paths) != first
