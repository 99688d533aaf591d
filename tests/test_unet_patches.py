"""The U-Net's patch hooks (nodeflow.models.unet_patches): where each hook runs, what it is told,
and that hooks which change nothing leave the output exactly as without patches."""

from __future__ import annotations

import torch

from nodeflow.models.attention import attention
from nodeflow.models.unet_patches import UNetPatches
from tests.test_unet_parity import random_unet, tiny_config


def run(unet, patches=None, sigma=None):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 5, unet.config.context_dim, generator=generator)
    return unet(x, torch.tensor([500, 500]), context, patches=patches, sigma=sigma)


def test_hooks_that_change_nothing_leave_the_output_unchanged_and_see_every_block():
    unet = random_unet(tiny_config())
    seen = []

    def tokens(n, context, value, call):
        seen.append(("attn1", call.block, call.block_index, call.heads, call.dim_head, call.original_shape))
        return n, context, value

    def product(q, k, v, call):
        seen.append(("replace", call.block))
        return attention(q, k, v, call.heads)

    def after_skip(h, call):
        seen.append(("skip", call.block))
        return h

    patches = UNetPatches(attn1_patch=(tokens,), attn1_output_patch=(lambda out, call: out,),
                          attn1_replace=((("middle", 0), product),), input_block_after_skip=(after_skip,),
                          output_block=(lambda h, skip, call: (h, skip),))
    plain = run(unet)
    assert torch.allclose(run(unet, patches, torch.tensor([1.0, 1.0])), plain, atol=1e-6)
    config = unet.config
    transformers = [entry for entry in seen if entry[0] == "attn1"]
    blocks = {entry[1] for entry in transformers}
    assert ("middle", 0) in blocks and any(b[0] == "input" for b in blocks) and any(b[0] == "output" for b in blocks)
    assert all(entry[5] == (2, 4, 16, 16) for entry in transformers)
    assert all(entry[3] * entry[4] in {config.model_channels * m for m in config.channel_mult} for entry in transformers)
    assert [entry for entry in seen if entry[0] == "replace"] == [("replace", ("middle", 0))]
    assert [entry[1] for entry in seen if entry[0] == "skip"] == [("input", i) for i in range(len(unet.input_blocks))]


def test_a_replaced_self_attention_changes_only_its_block():
    unet = random_unet(tiny_config())
    calls = []

    def values(q, k, v, call):  # PAG's perturbation: the attention of each token to itself only
        calls.append(call.block)
        return v

    changed = run(unet, UNetPatches(attn1_replace=((("middle", 0), values),)))
    assert calls == [("middle", 0)] and not torch.allclose(changed, run(unet), atol=1e-4)


def test_a_transformer_specific_replacement_wins_over_the_blocks_and_the_last_one_set_wins():
    first, second, specific = (lambda *a: 1), (lambda *a: 2), (lambda *a: 3)
    patches = UNetPatches(attn1_replace=((("middle", 0), first), (("middle", 0, 0), specific)))
    patches = patches + UNetPatches(attn1_replace=((("middle", 0), second),))
    assert patches.replacement(("middle", 0), 0) is specific
    assert patches.replacement(("middle", 0), 1) is second
    assert patches.replacement(("input", 1), 0) is None
    assert not UNetPatches() and patches
