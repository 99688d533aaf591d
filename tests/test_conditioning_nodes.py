"""Conditioning and sampler nodes: ComfyUI's declarations, values computed by hand, inputs never
modified."""

import copy

import torch

from nodeflow.sampling.conditioning import resolve
from nodeflow.sampling.samplers import SAMPLER_NAMES
from nodeflow.sampling.schedulers import SCHEDULER_NAMES
from nodeflow_nodes import conditioning as nodes
from nodeflow_nodes import sampling as sampler_nodes
from tests.toy_models import toy_model


def entry(value, tokens=77, **options):
    return (torch.full((1, tokens, 4), float(value)), {"pooled_output": torch.full((1, 4), float(value)), **options})


def snapshot(conditioning):
    return [(c.clone(), copy.copy(o)) for c, o in conditioning]


def assert_unchanged(conditioning, before):
    for (c, o), (c0, o0) in zip(conditioning, before, strict=True):
        assert torch.equal(c, c0) and o.keys() == o0.keys()


class FakeClip:
    def encode(self, text, embeddings=None):
        cond = torch.full((1, 77, 4), float(len(text)))
        return cond, cond[:, 0]


def run_context():
    from types import SimpleNamespace

    from nodeflow.runtime.paths import Paths

    return SimpleNamespace(paths=Paths(models_dirs=()))


def test_clip_text_encode_keeps_pooled_output():
    (conditioning,) = nodes.clip_text_encode("a cat", FakeClip(), run_context())
    assert len(conditioning) == 1
    cond, options = conditioning[0]
    assert cond.shape == (1, 77, 4) and float(cond[0, 0, 0]) == 5.0
    assert torch.equal(options["pooled_output"], torch.full((1, 4), 5.0))


def test_combine_and_concat():
    a, b = [entry(1)], [entry(2), entry(3)]
    before = snapshot(a), snapshot(b)
    (combined,) = nodes.conditioning_combine(a, b)
    assert [float(c.mean()) for c, _ in combined] == [1.0, 2.0, 3.0]
    (concatenated,) = nodes.conditioning_concat(a, b)  # only the first "from" entry is used
    cond = concatenated[0][0]
    assert cond.shape == (1, 154, 4) and float(cond[0, :77].mean()) == 1.0 and float(cond[0, 77:].mean()) == 2.0
    assert_unchanged(a, before[0])
    assert_unchanged(b, before[1])
    combined[0][1]["strength"] = 5.0  # the copies are independent of the inputs
    assert "strength" not in a[0][1]


def test_average_blends_tokens_and_pooled_by_hand():
    to, frm = [entry(1.0, tokens=154)], [entry(3.0)]
    (averaged,) = nodes.conditioning_average(to, frm, 0.25)
    cond, options = averaged[0]
    assert cond.shape == (1, 154, 4)
    torch.testing.assert_close(cond[0, :77], torch.full((77, 4), 0.25 * 1 + 0.75 * 3))  # 2.5
    torch.testing.assert_close(cond[0, 77:], torch.full((77, 4), 0.25 * 1))  # "from" zero-padded
    torch.testing.assert_close(options["pooled_output"], torch.full((1, 4), 2.5))
    (longer_from,) = nodes.conditioning_average([entry(1.0)], [entry(3.0, tokens=154)], 0.5)
    assert longer_from[0][0].shape == (1, 77, 4)  # "from" cut to the entry's length


def test_set_area_in_pixels_and_percentage():
    base = [entry(1, strength=3.0)]
    (area,) = nodes.conditioning_set_area(base, width=200, height=120, x=64, y=16, strength=0.5)
    options = area[0][1]
    assert options["area"] == (15, 25, 2, 8) and options["strength"] == 0.5
    assert options["set_area_to_bounds"] is False and base[0][1]["strength"] == 3.0
    (percent,) = nodes.conditioning_set_area_percentage(base, width=0.5, height=0.25, x=0.5, y=0.1, strength=1.0)
    assert percent[0][1]["area"] == ("percentage", 0.25, 0.5, 0.1, 0.5)
    resolved = resolve(percent, 40, 64, toy_model())[0]  # latent 40 x 64
    assert resolved.area == (10, 32, 4, 32)
    (strength,) = nodes.conditioning_set_area_strength(area, 2.0)
    assert strength[0][1]["strength"] == 2.0 and strength[0][1]["area"] == (15, 25, 2, 8)


def test_set_mask_and_timestep_range():
    mask = torch.zeros(16, 16)
    (masked,) = nodes.conditioning_set_mask([entry(1)], mask, 0.7, "mask bounds")
    options = masked[0][1]
    assert options["mask"].shape == (1, 16, 16) and options["mask_strength"] == 0.7
    assert options["set_area_to_bounds"] is True
    (default,) = nodes.conditioning_set_mask([entry(1)], mask[None], 1.0, "default")
    assert default[0][1]["set_area_to_bounds"] is False
    (ranged,) = nodes.conditioning_set_timestep_range([entry(1)], 0.2, 0.8)
    assert ranged[0][1]["timestep_start"] == 0.2 and ranged[0][1]["timestep_end"] == 0.8
    model = toy_model()
    resolved = resolve(ranged, 8, 8, model)[0]
    assert resolved.sigma_start == model.sampling.percent_to_sigma(0.2)
    assert resolved.sigma_end == model.sampling.percent_to_sigma(0.8)


def test_zero_out():
    base = [entry(2, area=(1, 1, 0, 0))]
    (zeroed,) = nodes.conditioning_zero_out(base)
    cond, options = zeroed[0]
    assert not cond.any() and not options["pooled_output"].any() and options["area"] == (1, 1, 0, 0)
    assert float(base[0][0].mean()) == 2.0 and float(base[0][1]["pooled_output"].mean()) == 2.0


def widget(spec, name):
    found = spec.input(name)
    return (found.type, found.default, found.min, found.max, found.step)


def test_ksampler_declarations_follow_comfyui():
    spec = sampler_nodes.ksampler.__nodeflow_spec__
    assert spec.id == "KSampler"
    assert [i.name for i in spec.inputs] == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler",
                                             "positive", "negative", "latent_image", "denoise"]
    assert spec.input("seed").seed and (spec.input("seed").min, spec.input("seed").max) == (0, 2**64 - 1)
    assert widget(spec, "steps") == ("INT", 20, 1, 10000, 1)
    assert widget(spec, "cfg") == ("FLOAT", 8.0, 0.0, 100.0, 0.1)
    assert widget(spec, "denoise") == ("FLOAT", 1.0, 0.0, 1.0, 0.01)
    assert spec.input("sampler_name").choices() == list(SAMPLER_NAMES)
    assert spec.input("scheduler").choices() == list(SCHEDULER_NAMES)
    assert [o.type for o in spec.outputs] == ["LATENT"]

    advanced = sampler_nodes.ksampler_advanced.__nodeflow_spec__
    assert advanced.id == "KSamplerAdvanced"
    assert [i.name for i in advanced.inputs] == [
        "model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
        "negative", "latent_image", "start_at_step", "end_at_step", "return_with_leftover_noise"]
    assert advanced.input("add_noise").choices() == ["enable", "disable"]
    assert advanced.input("return_with_leftover_noise").choices() == ["disable", "enable"]
    assert widget(advanced, "start_at_step") == ("INT", 0, 0, 10000, 1)
    assert widget(advanced, "end_at_step") == ("INT", 10000, 0, 10000, 1)


class FakeContext:
    def __init__(self):
        self.progress_calls, self.cancel_checks = [], 0

    def progress(self, step, total, preview=None):
        self.progress_calls.append((step, total, None if preview is None else tuple(preview.shape)))

    def check_cancel(self):
        self.cancel_checks += 1

    def wants_preview(self, step, total):
        return True


def test_ksampler_node_reports_progress_with_previews():
    ctx = FakeContext()
    model = toy_model()
    positive, negative = [(torch.ones(1, 77, 8), {})], [(torch.zeros(1, 77, 8), {})]
    (latent,) = sampler_nodes.ksampler(model, 1, 3, 4.0, "euler", "normal", positive, negative,
                                       {"samples": torch.zeros(1, 4, 8, 8)}, 1.0, ctx)
    assert latent["samples"].shape == (1, 4, 8, 8)
    assert ctx.progress_calls == [(i, 3, (1, 8, 8, 3)) for i in (1, 2, 3)]
    assert ctx.cancel_checks == 1 + 3  # before starting and before each model evaluation


def test_clip_text_encode_without_clip_names_the_input():
    import pytest

    from nodeflow.errors import NodeInputError

    with pytest.raises(NodeInputError, match="clip"):
        nodes.clip_text_encode("a cat", None, run_context())
