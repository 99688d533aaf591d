"""The text encoder equals transformers' CLIPTextModel run the SD1 way on the same random weights:
token layout, padding with 49407, long prompts, ComfyUI's weights and clip skip."""

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from nodeflow.text.text_encoder import (clip_config_from_state_dict, hidden_state_index,
                                        text_encoder_from_state_dict)
from nodeflow.text.tokenizer import load_tokenizer

LAYERS = 3
PROMPT = "a red circle on a blue background"


def tiny_clip(seed=0, heads=2) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=LAYERS, num_attention_heads=heads,
                            max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config).eval()


def original_layout(model: CLIPTextModel) -> dict:
    """Keys as in SD1 checkpoints after 'cond_stage_model.transformer.' (with 'text_model.')."""
    return {("" if k.startswith("text_model.") else "text_model.") + k: v
            for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def setup():
    reference = tiny_clip()
    tokenizer = load_tokenizer()
    ours = text_encoder_from_state_dict(original_layout(reference), tokenizer, num_heads=2)
    return reference, tokenizer, ours


def reference_ids(tokenizer, prompt):
    """SD1's layout, built independently: [start] + ids + [end], padded with end to 77."""
    ids = [49406] + tokenizer.encode(prompt) + [49407]
    return torch.tensor([ids + [49407] * (77 - len(ids))])


def run_reference(reference, ids):
    with torch.no_grad():
        return reference(input_ids=ids, output_hidden_states=True)


def test_matches_reference_last_layer(setup):
    reference, tokenizer, ours = setup
    cond, pooled = ours.encode(PROMPT)
    expected = run_reference(reference, reference_ids(tokenizer, PROMPT))
    assert cond.shape == (1, 77, 64) and pooled.shape == (1, 64)
    assert cond.dtype == pooled.dtype == torch.float32
    torch.testing.assert_close(cond, expected.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, expected.pooler_output, rtol=1e-5, atol=1e-5)
    end = len(tokenizer.encode(PROMPT)) + 1  # pooled = final state at the first end token
    torch.testing.assert_close(pooled[0], expected.last_hidden_state[0, end], rtol=1e-5, atol=1e-5)


def test_padding_is_end_token_not_zero(setup):
    reference, tokenizer, ours = setup
    cond, _ = ours.encode("a cat")
    zero_padded = reference_ids(tokenizer, "a cat")
    zero_padded[0, 4:] = 0
    other = run_reference(reference, zero_padded).last_hidden_state
    torch.testing.assert_close(cond[:, :4], other[:, :4], rtol=1e-5, atol=1e-5)  # causal: same prefix
    assert not torch.allclose(cond[:, 4:], other[:, 4:], atol=1e-3)


@pytest.mark.parametrize("layer_idx", [-1, -2, -3])
def test_clip_skip_takes_that_layer_through_the_final_norm(setup, layer_idx):
    reference, tokenizer, ours = setup
    cond, pooled = ours.clone_with(layer_idx=layer_idx).encode("a cat")
    out = run_reference(reference, reference_ids(tokenizer, "a cat"))
    final_norm = getattr(reference, "text_model", reference).final_layer_norm
    expected = final_norm(out.hidden_states[layer_idx])
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, out.pooler_output, rtol=1e-5, atol=1e-5)  # always the last layer


def test_clip_skip_changes_the_output_and_shares_weights(setup):
    _, _, ours = setup
    skipped = ours.clone_with(layer_idx=-2)
    assert skipped.model is ours.model and ours.layer_idx is None
    assert not torch.allclose(skipped.encode("a cat")[0], ours.encode("a cat")[0], atol=1e-3)


def test_layer_index_semantics_follow_comfyui():
    assert hidden_state_index(None, 12) is None
    assert hidden_state_index(-1, 12) is None  # the last layer
    assert hidden_state_index(-2, 12) == 11  # hidden_states[11] = output of layer 10 (0-based)
    assert hidden_state_index(-12, 12) == 1  # the first layer's output
    assert hidden_state_index(-13, 12) is None  # beyond the depth: ComfyUI uses the last layer
    assert hidden_state_index(0, 12) == 1
    with pytest.raises(ValueError, match="12 layers"):
        hidden_state_index(12, 12)


def test_empty_prompt_is_encoded_like_any_prompt(setup):
    reference, tokenizer, ours = setup
    cond, _ = ours.encode("")
    expected = run_reference(reference, torch.tensor([[49406] + [49407] * 76])).last_hidden_state
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-5)


def test_long_prompts_give_concatenated_windows(setup):
    reference, tokenizer, ours = setup
    prompt = "cat " * 100
    cond, pooled = ours.encode(prompt)
    assert cond.shape == (1, 154, 64)
    first = torch.tensor([[49406] + [2368] * 75 + [49407]])
    second = torch.tensor([[49406] + [2368] * 25 + [49407] * 51])
    expected_first = run_reference(reference, first)
    expected_second = run_reference(reference, second).last_hidden_state
    torch.testing.assert_close(cond[:, :77], expected_first.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cond[:, 77:], expected_second, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, expected_first.pooler_output, rtol=1e-5, atol=1e-5)


def test_weights_interpolate_from_the_empty_prompt(setup):
    reference, tokenizer, ours = setup
    weighted, pooled = ours.encode("a (red:1.5) ((cat))")
    plain = run_reference(reference, reference_ids(tokenizer, "a red cat"))
    empty = run_reference(reference, reference_ids(tokenizer, "")).last_hidden_state
    z, z_empty = plain.last_hidden_state[0], empty[0]
    expected = z.clone()
    expected[2] = z_empty[2] + (z[2] - z_empty[2]) * 1.5  # "red"
    expected[3] = z_empty[3] + (z[3] - z_empty[3]) * 1.21  # "cat"
    torch.testing.assert_close(weighted[0], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(weighted[0, [0, 1, 4]], ours.encode("a red cat")[0][0, [0, 1, 4]])
    torch.testing.assert_close(pooled, plain.pooler_output, rtol=1e-5, atol=1e-5)  # unweighted


def test_weights_apply_in_every_window(setup):
    _, _, ours = setup
    weighted, _ = ours.encode("cat " * 80 + "(red:0.5)")
    plain, _ = ours.encode("cat " * 80 + "red")
    empty, _ = ours.encode("")
    red = 77 + 1 + 5  # second window: [start, cat x 5, red, ...]
    torch.testing.assert_close(weighted[0, red], empty[0, 6] + (plain[0, red] - empty[0, 6]) * 0.5,
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(weighted[0, :red], plain[0, :red])


def test_keys_without_text_model_segment_and_position_ids_load(setup):
    reference, tokenizer, ours = setup
    plain = {k.removeprefix("text_model."): v for k, v in original_layout(reference).items()}
    plain["embeddings.position_ids"] = torch.arange(77)[None]
    other = text_encoder_from_state_dict(plain, tokenizer, num_heads=2)
    assert torch.equal(other.encode("a cat")[0], ours.encode("a cat")[0])
    assert not any(t.is_meta for t in [*other.model.parameters(), *other.model.buffers()])


def test_unexpected_or_missing_keys_are_errors(setup):
    reference, tokenizer, _ = setup
    sd = original_layout(reference)
    with pytest.raises(RuntimeError, match="surprise"):
        text_encoder_from_state_dict({**sd, "text_model.surprise": torch.zeros(1)}, tokenizer)
    del sd["text_model.final_layer_norm.weight"]
    with pytest.raises(RuntimeError, match="final_layer_norm"):
        text_encoder_from_state_dict(sd, tokenizer)


def test_config_from_shapes(setup):
    reference, _, _ = setup
    sd = {k.removeprefix("text_model."): v for k, v in reference.state_dict().items()}
    config = clip_config_from_state_dict(sd)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size,
            config.vocab_size, config.max_position_embeddings) == (64, LAYERS, 128, 49408, 77)
    assert config.num_attention_heads == 1  # hidden / 64 unless given
    assert clip_config_from_state_dict(sd, num_heads=4).num_attention_heads == 4
    with pytest.raises(KeyError, match="not a CLIP text encoder"):
        clip_config_from_state_dict({"foo": torch.zeros(1)})


def test_dtype_and_device_are_kept(setup):
    reference, tokenizer, _ = setup
    half = text_encoder_from_state_dict(original_layout(reference), tokenizer, dtype=torch.bfloat16,
                                        num_heads=2)
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.dtype == torch.bfloat16
    cond, pooled = half.encode("a cat")
    assert cond.dtype == pooled.dtype == torch.float32 and half.device == torch.device("cpu")


def test_full_sd1_key_set_builds_vit_l_on_meta(setup):
    """The real SD1.5 text tower (ViT-L/14: 768 wide, 12 layers, 12 heads, 3072 MLP), shapes only:
    the checkpoint's key layout and the config read from it. (Run with random weights through a
    single-file checkpoint against diffusers' conversion: tests/test_single_file_parity.py.)"""
    _, tokenizer, _ = setup
    vit_l = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    with torch.device("meta"):
        model = CLIPTextModel(vit_l)
    sd = {"cond_stage_model.transformer.text_model." + k.removeprefix("text_model."): v
          for k, v in model.state_dict().items()}
    text_sd = {k.removeprefix("cond_stage_model.transformer."): v for k, v in sd.items()}
    assert len(text_sd) == 196  # 16 tensors per layer, 2 embeddings, final norm (2)
    encoder = text_encoder_from_state_dict(text_sd, tokenizer, device="meta")
    config = encoder.model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.vocab_size) == (768, 12, 12, 3072, 49408)
    assert encoder.width == 768 and encoder.num_layers == 12
