"""SDXL conditioning and model sampling: the ADM vector against a hand computation, its way through
guidance into the U-Net and ControlNets, the SDXL text-encode nodes and ModelSamplingDiscrete
against ComfyUI's declarations, and the sigma tables against diffusers' schedulers.

ComfyUI's rules (comfy/model_base.py SDXL / SDXLRefiner ``encode_adm``, comfy/samplers.py
``encode_model_conds``; shared/reference/comfyui-conventions.md, points 17 and 22): y = [pooled,
e(height), e(width), e(crop_h), e(crop_w), e(target_height), e(target_width)] (refiner: [pooled,
e(height), e(width), e(crop_h), e(crop_w), e(aesthetic_score)]), e(v) the 256-wide [cos | sin]
embedding of v; sizes the entry does not give are the latent's size x 8, crop 0, target = size,
aesthetic score 6 (positive) or 2.5 (negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from nodeflow.engine.registry import Registry
from nodeflow.errors import NodeflowError, NodeInputError
from nodeflow.sampling.adm import SDXL, SDXL_REFINER, encode_adm
from nodeflow.sampling.conditioning import resolve
from nodeflow.sampling.guidance import CFGDenoiser
from nodeflow.sampling.model import DiffusionModel, LatentFormat
from nodeflow.sampling.model_sampling import ModelSampling, rescale_zero_terminal_snr
from nodeflow_nodes import conditioning as conditioning_nodes
from nodeflow_nodes import model_advanced
from tests.toy_models import ConstantHook, toy_model

POOLED = 8  # the pooled width of these tests' fake text encoder
BASE_ADM = POOLED + 6 * 256
REFINER_ADM = POOLED + 5 * 256


def hand_embedding(value: float) -> list[float]:
    """e(v): cos(v f_i) for i < 128, then sin(v f_i), f_i = 10000^(-i / 128), in float64."""
    freqs = [math.exp(-math.log(10000.0) * i / 128) for i in range(128)]
    return [math.cos(value * f) for f in freqs] + [math.sin(value * f) for f in freqs]


def hand_adm(pooled: torch.Tensor, numbers: list[float]) -> torch.Tensor:
    flat = [x for v in numbers for x in hand_embedding(v)]
    return torch.cat([pooled.double(), torch.tensor([flat], dtype=torch.float64).repeat(len(pooled), 1)], dim=1)


def pooled(value: float = 0.5, batch: int = 1) -> torch.Tensor:
    return torch.linspace(-1, 1, POOLED).repeat(batch, 1) * value


# ---------------------------------------------------------------- the ADM vector


def test_sdxl_adm_vector_by_hand():
    options = {"pooled_output": pooled(), "width": 1216, "height": 832, "crop_w": 24, "crop_h": 40,
               "target_width": 1024, "target_height": 1536}
    y = encode_adm(options, 512, 512, channels=BASE_ADM)
    assert y.shape == (1, BASE_ADM) and y.dtype == torch.float32
    assert torch.equal(y[:, :POOLED], pooled())  # the pooled output, untouched, first
    expected = hand_adm(pooled(), [832, 1216, 40, 24, 1536, 1024])  # height before width
    torch.testing.assert_close(y.double(), expected, atol=2e-4, rtol=0)


def test_defaults_are_the_latent_size_crop_zero_and_target_size():
    """Plain CLIPTextEncode output (only the pooled output): 8 x the latent's size (not 1024)."""
    y = encode_adm({"pooled_output": pooled()}, 1024, 768, channels=BASE_ADM)  # width, height
    torch.testing.assert_close(y.double(), hand_adm(pooled(), [768, 1024, 0, 0, 768, 1024]), atol=2e-4, rtol=0)
    zero = torch.tensor([1.0] * 128 + [0.0] * 128)  # e(0) exactly: cos 0 | sin 0
    assert torch.equal(y[0, POOLED + 512:POOLED + 768], zero) and torch.equal(y[0, POOLED + 768:POOLED + 1024], zero)
    target_only = encode_adm({"pooled_output": pooled(), "width": 640, "height": 448}, 1024, 768, channels=BASE_ADM)
    torch.testing.assert_close(target_only.double(), hand_adm(pooled(), [448, 640, 0, 0, 448, 640]), atol=2e-4, rtol=0)


def test_refiner_adm_vector_and_its_aesthetic_score_defaults():
    options = {"pooled_output": pooled(), "width": 1024, "height": 1024, "crop_w": 0, "crop_h": 8,
               "aesthetic_score": 7.5}
    y = encode_adm(options, 512, 512, channels=REFINER_ADM)
    torch.testing.assert_close(y.double(), hand_adm(pooled(), [1024, 1024, 8, 0, 7.5]), atol=2e-4, rtol=0)
    plain = {"pooled_output": pooled()}
    positive = encode_adm(plain, 512, 640, channels=REFINER_ADM)
    negative = encode_adm(plain, 512, 640, channels=REFINER_ADM, negative=True)
    torch.testing.assert_close(positive.double(), hand_adm(pooled(), [640, 512, 0, 0, 6.0]), atol=2e-4, rtol=0)
    torch.testing.assert_close(negative.double(), hand_adm(pooled(), [640, 512, 0, 0, 2.5]), atol=2e-4, rtol=0)


def test_kind_from_shapes_or_as_declared_and_clear_errors():
    options = {"pooled_output": pooled(), "aesthetic_score": 3.0, "target_width": 64}
    refiner = encode_adm(options, 512, 512, channels=REFINER_ADM)  # 5 numbers fit: the refiner's
    assert torch.equal(refiner, encode_adm(options, 512, 512, channels=REFINER_ADM, kind=SDXL_REFINER))
    with pytest.raises(NodeflowError, match="takes 1288"):
        encode_adm(options, 512, 512, channels=REFINER_ADM, kind=SDXL)  # declared SDXL, built wide
    with pytest.raises(NodeflowError, match="neither SDXL"):
        encode_adm(options, 512, 512, channels=BASE_ADM + 1)
    with pytest.raises(NodeflowError, match="pooled"):
        encode_adm({}, 512, 512, channels=BASE_ADM)
    batch = encode_adm({"pooled_output": pooled(batch=3)}, 512, 512, channels=BASE_ADM)
    assert batch.shape == (3, BASE_ADM) and torch.equal(batch[0, POOLED:], batch[2, POOLED:])


# ---------------------------------------------------------------- guidance: y into the U-Net


@dataclass(frozen=True)
class AdmConfig:
    in_channels: int = 4
    adm_in_channels: int = BASE_ADM


class RecordingAdmUNet(torch.nn.Module):
    """eps = 0.1 tanh(x) + mean(y) + 0.05 mean(context): depends on y; records every y."""

    def __init__(self, adm_in_channels: int = BASE_ADM) -> None:
        super().__init__()
        self.config = AdmConfig(adm_in_channels=adm_in_channels)
        self.weight = torch.nn.Parameter(torch.tensor(0.1))
        self.ys: list[torch.Tensor] = []

    def forward(self, x, timesteps, context, control=None, y=None):
        self.ys.append(y.clone())
        batch = x.shape[0]
        out = torch.tanh(x[:, :4]) * self.weight + y.mean(dim=1).view(batch, 1, 1, 1)
        return out + context.mean(dim=(1, 2)).view(batch, 1, 1, 1) * 0.05


def sdxl_model(adm_in_channels: int = BASE_ADM, adm: str | None = None) -> DiffusionModel:
    return DiffusionModel(RecordingAdmUNet(adm_in_channels), ModelSampling.sd1(), LatentFormat(0.13025),
                          torch.device("cpu"), torch.float32, adm=adm)


def entry(value: float, **options):
    return (torch.full((1, 77, 8), value), {"pooled_output": pooled(value), **options})


def test_resolve_builds_y_per_entry_from_the_whole_latent_size():
    model = sdxl_model()
    entries = resolve([entry(1.0), entry(2.0, width=1024, height=1024, area=(4, 4, 0, 0))], 12, 16, model)
    torch.testing.assert_close(entries[0].y.double(), hand_adm(pooled(1.0), [96, 128, 0, 0, 96, 128]),
                               atol=2e-4, rtol=0)  # 8 x the latent (12 x 16), not the area's size
    torch.testing.assert_close(entries[1].y.double(), hand_adm(pooled(2.0), [1024, 1024, 0, 0, 1024, 1024]),
                               atol=2e-4, rtol=0)
    assert all(e.y is None for e in resolve([entry(1.0)], 12, 16, toy_model()))  # SD1: no y


def test_cfg_batches_each_lists_y_with_its_context():
    model = sdxl_model()
    x, sigma = torch.randn(2, 4, 8, 8), torch.full((2,), 3.0)
    guided = CFGDenoiser(model, [entry(1.0, width=640, height=320)], [entry(-1.0)], cfg=4.0)
    out = guided(x, sigma)
    assert guided.calls == 1
    (y,) = model.unet.ys
    positive = encode_adm({"pooled_output": pooled(1.0), "width": 640, "height": 320}, 64, 64, channels=BASE_ADM)
    negative = encode_adm({"pooled_output": pooled(-1.0)}, 64, 64, channels=BASE_ADM)
    # negative first (ComfyUI's order), each repeated to the latent batch of 2
    assert torch.equal(y, torch.cat([negative, negative, positive, positive]))
    cond = model.predict_denoised(x, sigma, torch.full((2, 77, 8), 1.0), y=positive.repeat(2, 1))
    uncond = model.predict_denoised(x, sigma, torch.full((2, 77, 8), -1.0), y=negative.repeat(2, 1))
    torch.testing.assert_close(out, uncond + (cond - uncond) * 4.0, atol=1e-5, rtol=0)


def test_refiner_negative_list_gets_the_low_aesthetic_score():
    model = sdxl_model(REFINER_ADM, adm=SDXL_REFINER)
    CFGDenoiser(model, [entry(1.0)], [entry(1.0)], cfg=2.0)(torch.randn(1, 4, 8, 8), torch.full((1,), 1.0))
    (y,) = model.unet.ys
    plain = {"pooled_output": pooled(1.0)}
    assert torch.equal(y[0], encode_adm(plain, 64, 64, channels=REFINER_ADM, negative=True)[0])  # 2.5
    assert torch.equal(y[1], encode_adm(plain, 64, 64, channels=REFINER_ADM)[0])  # 6
    assert not torch.equal(y[0], y[1])


def test_area_counterpart_carries_the_enclosing_entrys_y():
    """The negative gains a copy of the positive's area with the negative's context and y."""
    model = sdxl_model()
    positive = [entry(1.0), entry(2.0, area=(4, 4, 0, 0), width=256, height=256)]
    guided = CFGDenoiser(model, positive, [entry(-1.0)], cfg=2.0)
    lists = guided.entries(8, 8)
    counterpart = lists[1][-1]
    assert counterpart.area == (4, 4, 0, 0) and torch.equal(counterpart.y, lists[1][0].y)
    assert torch.equal(counterpart.context, lists[1][0].context)


def test_control_hooks_are_given_the_batchs_y():
    seen = []

    class RecordingHook(ConstantHook):
        def residuals(self, x, timesteps, context, sigma, model, halves=1, y=None):
            seen.append(y)
            return super().residuals(x, timesteps, context, sigma, model, halves)

    model = sdxl_model()
    hook = RecordingHook(0.1)
    guided = CFGDenoiser(model, [entry(1.0, control=hook)], [entry(-1.0, control=hook)], cfg=2.0)
    guided(torch.randn(1, 4, 8, 8), torch.full((1,), 2.0))
    assert len(seen) == 1 and torch.equal(seen[0], model.unet.ys[0])


def test_sdxl_controlnet_hook_passes_y_to_the_controlnet():
    from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel
    from nodeflow.models.unet import UNetConfig
    from nodeflow.sampling.controlnet import ControlNetHook

    unet = UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(0, 1),
                      context_dim=8, num_heads=None, head_channels=32, use_linear_in_transformer=True,
                      adm_in_channels=BASE_ADM)
    torch.manual_seed(0)
    controlnet = ControlNetModel(ControlNetConfig(unet)).eval()
    hook = ControlNetHook(controlnet, torch.rand(1, 16, 16, 3))
    x, t, context = torch.randn(2, 4, 2, 2), torch.tensor([10.0, 10.0]), torch.randn(2, 77, 8)
    y = torch.randn(2, BASE_ADM)
    model = SimpleNamespace(unet=SimpleNamespace(config=unet))
    with torch.no_grad():
        got = hook.residuals(x, t, context, torch.tensor([1.0, 1.0]), model, halves=2, y=y)
        expected = controlnet(x, hook.hint(2, 2, 2, "cpu", torch.float32, 2), t, context, y=y)
        other = controlnet(x, hook.hint(2, 2, 2, "cpu", torch.float32, 2), t, context, y=y * 2)
    torch.testing.assert_close(got.middle, expected.middle)
    assert not torch.allclose(got.middle, other.middle)


# ---------------------------------------------------------------- nodes


def declaration(node_id: str) -> tuple:
    spec = Registry.load().get(node_id)
    inputs = [(i.name, i.type, i.default, i.min, i.max) for i in spec.inputs]
    return spec.category, inputs, [o.type for o in spec.outputs]


# ComfyUI's declarations (comfy_extras/nodes_clip_sdxl.py, comfy_extras/nodes_model_advanced.py):
# ids, input names in order, defaults, ranges, output types; MAX_RESOLUTION = 16384
COMFY = {
    "CLIPTextEncodeSDXL": ("advanced/conditioning", [
        ("clip", "CLIP", None, None, None), ("width", "INT", 1024, 0, 16384), ("height", "INT", 1024, 0, 16384),
        ("crop_w", "INT", 0, 0, 16384), ("crop_h", "INT", 0, 0, 16384),
        ("target_width", "INT", 1024, 0, 16384), ("target_height", "INT", 1024, 0, 16384),
        ("text_g", "STRING", "", None, None), ("text_l", "STRING", "", None, None)], ["CONDITIONING"]),
    "CLIPTextEncodeSDXLRefiner": ("advanced/conditioning", [
        ("ascore", "FLOAT", 6.0, 0.0, 1000.0), ("width", "INT", 1024, 0, 16384), ("height", "INT", 1024, 0, 16384),
        ("text", "STRING", "", None, None), ("clip", "CLIP", None, None, None)], ["CONDITIONING"]),
    "ModelSamplingDiscrete": ("advanced/model", [
        ("model", "MODEL", None, None, None), ("sampling", "CHOICE", "eps", None, None),
        ("zsnr", "BOOLEAN", False, None, None)], ["MODEL"]),
}


@pytest.mark.parametrize("node_id", list(COMFY))
def test_node_declarations_follow_comfyui(node_id):
    assert declaration(node_id) == COMFY[node_id]
    spec = Registry.load().get(node_id)
    assert all(i.multiline for i in spec.inputs if i.type == "STRING")
    if node_id == "ModelSamplingDiscrete":
        assert spec.input("sampling").choices() == ["eps", "v_prediction", "lcm", "x0"]
    if node_id == "CLIPTextEncodeSDXLRefiner":
        assert spec.input("ascore").step == 0.01


class FakeSdxlClip:
    """Stands in for the SDXL text encoder: records what it is asked to encode."""

    def __init__(self) -> None:
        self.calls = []

    def encode_sdxl(self, text_g, text_l, embeddings=None):
        self.calls.append((text_g, text_l, embeddings))
        return torch.full((1, 77, 16), float(len(text_g))), torch.full((1, POOLED), float(len(text_l)))

    def encode(self, text, embeddings=None):
        self.calls.append((text, embeddings))
        return torch.full((1, 77, 12), float(len(text))), torch.full((1, POOLED), 2.0)


def run_context():
    from nodeflow.runtime.paths import Paths

    return SimpleNamespace(paths=Paths(models_dirs=()))


def test_clip_text_encode_sdxl_node():
    clip = FakeSdxlClip()
    (conditioning,) = conditioning_nodes.clip_text_encode_sdxl(clip, 1216, 832, 24, 40, 1024, 1536,
                                                              "a castle", "oil painting", run_context())
    assert [call[:2] for call in clip.calls] == [("a castle", "oil painting")]  # G's text, then L's
    assert clip.calls[0][2] is not None  # the embedding finder (textual inversion)
    (cond, options), = conditioning
    assert cond.shape == (1, 77, 16) and float(cond[0, 0, 0]) == 8.0
    assert torch.equal(options.pop("pooled_output"), torch.full((1, POOLED), 12.0))
    assert options == {"width": 1216, "height": 832, "crop_w": 24, "crop_h": 40,
                       "target_width": 1024, "target_height": 1536}


def test_clip_text_encode_sdxl_needs_an_sdxl_text_encoder():
    from tests.test_conditioning_nodes import FakeClip

    with pytest.raises(NodeInputError, match="needs an SDXL text encoder") as error:
        conditioning_nodes.clip_text_encode_sdxl(FakeClip(), 1024, 1024, 0, 0, 1024, 1024, "g", "l", run_context())
    assert error.value.input_name == "clip"
    with pytest.raises(NodeInputError, match="no text encoder"):
        conditioning_nodes.clip_text_encode_sdxl(None, 1024, 1024, 0, 0, 1024, 1024, "g", "l", run_context())


def test_clip_text_encode_sdxl_refiner_node():
    clip = FakeSdxlClip()
    (conditioning,) = conditioning_nodes.clip_text_encode_sdxl_refiner(2.5, 768, 1024, "blurry", clip, run_context())
    (cond, options), = conditioning
    assert clip.calls[0][0] == "blurry" and cond.shape == (1, 77, 12)
    y = encode_adm(options, 64, 64, channels=REFINER_ADM)  # the refiner's vector from it
    options = dict(options)
    assert torch.equal(options.pop("pooled_output"), torch.full((1, POOLED), 2.0))
    assert options == {"aesthetic_score": 2.5, "width": 768, "height": 1024}
    torch.testing.assert_close(y.double(), hand_adm(torch.full((1, POOLED), 2.0), [1024, 768, 0, 0, 2.5]),
                               atol=2e-4, rtol=0)


# ---------------------------------------------------------------- ModelSamplingDiscrete


def test_model_sampling_discrete_returns_a_patched_copy():
    model = toy_model()
    (patched,) = model_advanced.model_sampling_discrete(model, "v_prediction", False)
    assert patched is not model and patched.unet is model.unet and model.sampling.parameterization == "eps"
    assert patched.sampling.parameterization == "v" and torch.equal(patched.sampling.sigmas, model.sampling.sigmas)
    (zsnr,) = model_advanced.model_sampling_discrete(patched, "eps", True)
    assert zsnr.sampling.zsnr and float(zsnr.sampling.sigma_max) > 4000
    (back,) = model_advanced.model_sampling_discrete(zsnr, "eps", False)  # rebuilt from the schedule
    assert torch.equal(back.sampling.sigmas, model.sampling.sigmas)
    assert torch.equal(back.sampling.log_sigmas, model.sampling.log_sigmas)
    with pytest.raises(NodeInputError, match="sampling"):
        model_advanced.model_sampling_discrete(model, "edm", False)


def test_v_prediction_convention_analytically():
    """Convention 22 through the MODEL: a U-Net that knows the clean latent x0 answers the exact
    v = alpha eps - sigma_vp x0 (alpha = 1 / sqrt(1 + s^2), sigma_vp = s alpha) for the input it
    is given; the model must give it x / sqrt(s^2 + 1) and turn its answer back into x0."""
    (model,) = model_advanced.model_sampling_discrete(toy_model(), "v_prediction", False)
    ms = model.sampling
    x0 = torch.randn(2, 4, 4, 4)
    eps = torch.randn(2, 4, 4, 4)
    sigma = ms.sigmas[torch.tensor([999, 250])]  # table entries: the timestep is exact
    s = sigma.view(2, 1, 1, 1)
    x = x0 + s * eps
    seen = []

    class Oracle(torch.nn.Module):
        config = AdmConfig(adm_in_channels=0)

        def forward(self, z, timesteps, context, control=None):
            seen.append(z)
            sig = ms.sigmas[timesteps.long()].view(-1, 1, 1, 1)
            alpha = 1 / (1 + sig**2) ** 0.5
            noise = (z / alpha - x0) / sig  # z = alpha (x0 + sig eps)
            return alpha * noise - sig * alpha * x0

    model = model.clone_with(unet=Oracle())
    denoised = model.predict_denoised(x, sigma, torch.zeros(2, 77, 8))
    torch.testing.assert_close(seen[0], x / (s**2 + 1) ** 0.5)
    torch.testing.assert_close(denoised, x0, atol=2e-4, rtol=1e-4)


def test_x0_and_lcm_denoised():
    x, out = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    x0 = ModelSampling.discrete("x0")
    sigma = x0.sigmas[torch.tensor([500, 20])]
    assert torch.equal(x0.calculate_denoised(sigma, out, x), out)
    assert torch.equal(x0.calculate_input(sigma, x), ModelSampling.sd1().calculate_input(sigma, x))

    from diffusers import LCMScheduler

    lcm = ModelSampling.discrete("lcm")
    reference = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sigma = lcm.sigmas[torch.tensor([49, 3])]
    t = lcm.timestep(sigma)
    assert t.tolist() == [999.0, 79.0]
    got = lcm.calculate_denoised(sigma, out, x)
    for i in range(2):
        c_skip, c_out = reference.get_scalings_for_boundary_condition_discrete(int(t[i]))
        expected = c_out * (x[i] - out[i] * sigma[i]) + c_skip * x[i]
        torch.testing.assert_close(got[i], expected, atol=1e-6, rtol=1e-6)


def test_lcm_table_is_every_twentieth_timestep_as_diffusers_lcm_scheduler():
    from diffusers import LCMScheduler

    sd = ModelSampling.sd1()
    lcm = ModelSampling.discrete("lcm")
    reference = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    reference.set_timesteps(50)
    assert len(lcm.sigmas) == 50 and lcm.skip_steps == 20
    assert lcm.timestep(lcm.sigmas.flip(0)).long().tolist() == reference.timesteps.tolist()  # 999, 979 ... 19
    assert torch.equal(lcm.sigmas, sd.sigmas[19::20])
    assert torch.equal(lcm.log_sigmas, sd.sigmas[19::20].log())  # float32 log of the float32 table
    torch.testing.assert_close(lcm.sigma(torch.tensor([999.0, 19.0])), torch.stack([lcm.sigma_max, lcm.sigma_min]))
    torch.testing.assert_close(lcm.sigma(torch.tensor(29.0)), (lcm.log_sigmas[0] / 2 + lcm.log_sigmas[1] / 2).exp())
    assert float(lcm.fractional_timestep(lcm.sigma(torch.tensor(509.0)))) == pytest.approx(509.0, abs=1e-3)
    assert lcm.percent_to_sigma(0.5) == pytest.approx(float(lcm.sigma(torch.tensor(499.5))), rel=1e-6)


def test_zero_terminal_snr_table_against_diffusers():
    from diffusers import EulerDiscreteScheduler
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr as diffusers_rescale

    ms = ModelSampling.discrete("v", zsnr=True)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - diffusers_rescale(betas), dim=0)  # float64; the last is 0 there
    expected = ((1 - abar[:-1]) / abar[:-1]) ** 0.5
    torch.testing.assert_close(ms.sigmas[:-1].double(), expected, rtol=1e-6, atol=0)
    assert float(ms.sigmas[0]) == pytest.approx(float(ModelSampling.sd1().sigmas[0]), rel=1e-6)  # first kept
    last = ((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08) ** 0.5  # ComfyUI's stand-in for 0
    assert float(ms.sigma_max) == pytest.approx(last, rel=1e-6)
    table = ModelSampling.sd1().sigmas.double()
    assert float(rescale_zero_terminal_snr(table)[0]) == pytest.approx(float(table[0]), rel=1e-12)
    # diffusers' Euler scheduler (float32 betas; 2^-24 for the last abar instead)
    euler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   rescale_betas_zero_snr=True, timestep_spacing="trailing")
    euler.set_timesteps(1000)
    torch.testing.assert_close(ms.sigmas[:-1].flip(0), euler.sigmas[1:-1].float(), rtol=2e-4, atol=0)
    assert float(euler.sigmas[0]) == pytest.approx(4096.0)  # vs ComfyUI's 4518.76 above


def test_sdxl_latent_format_and_preview():
    from nodeflow.sampling.latent_preview import latent_preview

    fmt = LatentFormat.sdxl()
    latent = torch.randn(1, 4, 2, 2)
    assert torch.equal(fmt.process_in(latent), latent * 0.13025) and fmt.rgb_bias is not None
    torch.testing.assert_close(fmt.process_out(fmt.process_in(latent)), latent)
    one = torch.zeros(1, 4, 1, 1)
    one[0, 1] = 1.0  # channel 1 alone: its row of factors plus the bias, mapped from -1..1 to 0..1
    preview = latent_preview(one, fmt.rgb_factors, fmt.rgb_bias)
    expected = (torch.tensor([-0.2533 + 0.1084, -0.0042 - 0.0175, 0.1068 - 0.0011]) + 1) / 2
    torch.testing.assert_close(preview[0, 0, 0], expected)


def test_ksampler_runs_a_tiny_sdxl_unet_with_an_sdxl_controlnet():
    """The whole path on real modules: conditioning options -> ADM vectors -> guidance -> U-Net and
    ControlNet (both with label_emb). Deterministic, and the size options change the result."""
    from nodeflow.models.controlnet import ControlNetConfig, ControlNetModel
    from nodeflow.models.unet import UNetConfig, UNetModel
    from nodeflow.sampling.controlnet import ControlNetHook
    from nodeflow.sampling.ksampler import sample

    config = UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(0, 1),
                        middle_transformer_depth=1, context_dim=8, num_heads=None, head_channels=32,
                        use_linear_in_transformer=True, adm_in_channels=BASE_ADM)
    torch.manual_seed(0)
    unet, controlnet = UNetModel(config).eval(), ControlNetModel(ControlNetConfig(config)).eval()
    with torch.no_grad():
        for parameter in list(unet.parameters()) + list(controlnet.parameters()):
            parameter.copy_(torch.randn_like(parameter) * 0.05)
    model = DiffusionModel(unet, ModelSampling.sd1(), LatentFormat.sdxl(), torch.device("cpu"), torch.float32)
    hook = ControlNetHook(controlnet, torch.rand(1, 32, 32, 3), strength=0.8)

    def run(width: int):
        positive = [(torch.full((1, 77, 8), 0.5), {"pooled_output": pooled(1.0), "width": width, "height": 1024,
                                                   "control": hook})]
        negative = [(torch.zeros(1, 77, 8), {"pooled_output": pooled(0.0)})]
        return sample(model, seed=3, steps=2, cfg=5.0, sampler_name="euler", scheduler="normal",
                      positive=positive, negative=negative, latent={"samples": torch.zeros(2, 4, 4, 4)})["samples"]

    first, again, other = run(1024), run(1024), run(512)
    assert first.shape == (2, 4, 4, 4) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-4
