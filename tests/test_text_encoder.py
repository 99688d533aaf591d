"""The text encoder equals transformers' CLIPTextModel run the SD1 way on the same weights."""

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from nodeflow.text.text_encoder import text_encoder_from_state_dict
from nodeflow.text.tokenizer import load_tokenizer


def tiny_clip(seed=0) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=3, num_attention_heads=1, max_position_embeddings=77,
                            hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407,
                            pad_token_id=49407)
    return CLIPTextModel(config).eval()


def original_layout(model: CLIPTextModel) -> dict:
    """Keys as in SD1 checkpoints after 'cond_stage_model.transformer.' (with 'text_model.')."""
    return {("" if k.startswith("text_model.") else "text_model.") + k: v
            for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def setup():
    reference = tiny_clip()
    tokenizer = load_tokenizer()
    ours = text_encoder_from_state_dict(original_layout(reference), tokenizer)
    return reference, tokenizer, ours


def reference_ids(tokenizer, prompt):
    ids = [49406] + tokenizer.encode(prompt) + [49407]
    return torch.tensor([ids + [49407] * (77 - len(ids))])


def test_matches_reference_last_layer(setup):
    reference, tokenizer, ours = setup
    cond, pooled = ours.encode("a red circle on a blue background")
    with torch.no_grad():
        expected = reference(input_ids=reference_ids(tokenizer, "a red circle on a blue background"))
    assert cond.shape == (1, 77, 64)
    assert torch.allclose(cond, expected.last_hidden_state, atol=1e-5)
    assert torch.allclose(pooled, expected.pooler_output, atol=1e-5)


def test_clip_skip_uses_penultimate_layer_through_final_norm(setup):
    reference, tokenizer, ours = setup
    skipped = ours.clone_with(layer_idx=-2)
    cond, _ = skipped.encode("a cat")
    with torch.no_grad():
        out = reference(input_ids=reference_ids(tokenizer, "a cat"), output_hidden_states=True)
        inner = getattr(reference, "text_model", reference)
        expected = inner.final_layer_norm(out.hidden_states[-2])
    assert torch.allclose(cond, expected, atol=1e-5)
    assert not torch.allclose(cond, ours.encode("a cat")[0], atol=1e-3)


def test_empty_prompt_is_encoded_like_any_prompt(setup):
    reference, tokenizer, ours = setup
    cond, _ = ours.encode("")
    with torch.no_grad():
        expected = reference(input_ids=reference_ids(tokenizer, "")).last_hidden_state
    assert torch.allclose(cond, expected, atol=1e-5)


def test_long_prompts_give_concatenated_chunks(setup):
    _, _, ours = setup
    cond, _ = ours.encode("cat " * 100)
    assert cond.shape == (1, 154, 64)


def test_weights_interpolate_from_the_empty_prompt(setup):
    _, _, ours = setup
    plain, _ = ours.encode("a red cat")
    weighted, _ = ours.encode("a (red:1.5) cat")
    empty, _ = ours.encode("")
    red = 2  # token position of "red": [start, a, red, cat, end...]
    expected = empty[0, red] + (plain[0, red] - empty[0, red]) * 1.5
    assert torch.allclose(weighted[0, red], expected, atol=1e-5)
    assert torch.allclose(weighted[0, 1], plain[0, 1], atol=1e-6)  # weight 1 unchanged


def test_keys_without_text_model_segment_load(setup):
    reference, tokenizer, ours = setup
    plain = {k.removeprefix("text_model."): v for k, v in original_layout(reference).items()}
    other = text_encoder_from_state_dict(plain, tokenizer)
    assert torch.equal(other.encode("a cat")[0], ours.encode("a cat")[0])
