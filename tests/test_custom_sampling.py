"""Custom sampling (issue 15): the nodes' values and semantics.

- SamplerCustom and SamplerCustomAdvanced with KSamplerSelect + BasicScheduler are KSampler (same
  seed, same latent, ancestral noise included), and their second output is the last clean estimate.
- Schedules equal k-diffusion's get_sigmas_* (1e-6) or their formula; sigma edits as ComfyUI's.
- Guiders: BasicGuider is CFG 1; DualCFGGuider's two styles by their formulas.
- The SDXL Turbo template (SamplerCustom, SDTurboScheduler, KSamplerSelect) is in test_comfy_templates.
"""

from __future__ import annotations

import math

import pytest
import torch

from nodeflow.engine.context import RunContext
from nodeflow.errors import NodeInputError
from nodeflow.sampling.ksampler import sample
from nodeflow.sampling.model_sampling import ModelSampling
from nodeflow_nodes import custom_sampling as nodes
from tests.kdiffusion_ref import load_sampling
from tests.toy_models import cond, toy_model

LATENT = {"samples": torch.zeros(2, 4, 8, 8)}


def ctx():
    return RunContext()


@pytest.mark.parametrize("sampler_name, scheduler", [("euler", "normal"), ("euler_ancestral", "karras"),
                                                     ("dpmpp_2m_sde", "exponential"), ("heun", "simple")])
def test_sampler_custom_and_advanced_equal_ksampler(sampler_name, scheduler):
    model = toy_model()
    positive, negative = cond(1.0), cond(-1.0)
    expected = sample(model, seed=5, steps=6, cfg=4.0, sampler_name=sampler_name, scheduler=scheduler,
                      positive=positive, negative=negative, latent=LATENT)["samples"]
    [sampler] = nodes.ksampler_select(sampler_name)
    [sigmas] = nodes.basic_scheduler(model, scheduler, 6, 1.0)
    output, denoised = nodes.sampler_custom(model, True, 5, 4.0, positive, negative, sampler, sigmas, LATENT, ctx())
    assert torch.equal(output["samples"], expected)
    [noise] = nodes.random_noise(5)
    [guider] = nodes.cfg_guider(model, positive, negative, 4.0)
    advanced, _ = nodes.sampler_custom_advanced(noise, guider, sampler, sigmas, LATENT, ctx())
    assert torch.equal(advanced["samples"], expected)
    assert denoised["samples"].shape == expected.shape


def test_denoised_output_is_the_last_clean_estimate_and_input_is_untouched():
    model = toy_model()
    seen = []
    latent = {"samples": torch.randn(1, 4, 8, 8), "batch_index": [3]}
    before = latent["samples"].clone()
    [sampler] = nodes.ksampler_select("euler")
    [sigmas] = nodes.basic_scheduler(model, "normal", 4, 1.0)
    context = RunContext(on_event=seen.append)
    output, denoised = nodes.sampler_custom(model, True, 1, 3.0, cond(1.0), cond(0.0), sampler, sigmas, latent,
                                            context)
    assert torch.equal(latent["samples"], before) and output["batch_index"] == [3]
    # the Euler step to 0 lands on the denoised estimate: both outputs agree on the last step
    assert torch.allclose(output["samples"], denoised["samples"], atol=1e-6)
    assert [e.step for e in seen if hasattr(e, "step")][-1] == 4


def test_disable_noise_and_add_noise():
    model = toy_model()
    [off] = nodes.disable_noise()
    assert torch.equal(off.generate(LATENT), torch.zeros(2, 4, 8, 8))
    [noise] = nodes.random_noise(7)
    sigmas = torch.tensor([5.0, 2.0, 0.0])
    [noisy] = nodes.add_noise(model, noise, sigmas, LATENT)
    scale = model.latent_format.scale_factor
    assert torch.allclose(noisy["samples"], noise.generate(LATENT) * 5.0 / scale)  # sigma: first - last
    latent = {"samples": torch.ones(1, 4, 8, 8)}
    [noisy] = nodes.add_noise(model, noise, torch.tensor([3.0]), latent)
    assert torch.allclose(noisy["samples"], 1 + noise.generate(latent) * 3.0 / scale)
    assert nodes.add_noise(model, noise, torch.zeros(0), latent)[0] is latent


def test_initial_noise_is_comfyuis_cpu_noise():
    [noise] = nodes.random_noise(7)
    values = noise.generate({"samples": torch.zeros(1, 4, 8, 8)}).flatten()[:4]
    assert torch.allclose(values, torch.tensor([-0.82013452, 0.39563116, 0.89890850, -1.38840389]))


# ---- schedules

@pytest.mark.parametrize("node, reference, args", [
    ("karras_scheduler", "get_sigmas_karras", dict(rho=7.0)),
    ("exponential_scheduler", "get_sigmas_exponential", {}),
    ("polyexponential_scheduler", "get_sigmas_polyexponential", dict(rho=1.7)),
])
def test_schedules_equal_k_diffusion(node, reference, args):
    got = getattr(nodes, node)(12, 14.614642, 0.0291675, *args.values())[0]
    expected = getattr(load_sampling(), reference)(12, 0.0291675, 14.614642, *args.values())
    assert got.dtype == torch.float32 and len(got) == 13 and float(got[-1]) == 0
    assert torch.allclose(got, expected.float(), rtol=1e-6)


def test_vp_and_laplace_schedules():
    got = nodes.vp_scheduler(10, 19.9, 0.1, 0.001)[0]
    t = torch.linspace(1, 0.001, 10, dtype=torch.float64)
    exact = torch.sqrt(torch.expm1(19.9 * t**2 / 2 + 0.1 * t))  # ComfyUI's expm1 (k-diffusion 0.1.1: exp - 1)
    assert torch.allclose(got[:-1].double(), exact, rtol=1e-5) and float(got[-1]) == 0
    assert torch.allclose(got, load_sampling().get_sigmas_vp(10, 19.9, 0.1, 0.001).float(), rtol=1e-3)
    laplace = nodes.laplace_scheduler(9, 14.614642, 0.0291675, 0.3, 0.5)[0]
    assert len(laplace) == 9 and float(laplace[-1]) > 0  # no appended 0, as ComfyUI's
    assert math.isclose(float(laplace[4]), math.exp(0.3 + 0.5 * math.log(1 + 1e-5)), rel_tol=1e-5)  # the median
    assert bool((laplace[:-1] >= laplace[1:]).all()) and float(laplace.max()) == pytest.approx(14.614642)


def test_align_your_steps_sd_turbo_and_basic_scheduler():
    ays = nodes.align_your_steps_scheduler("SDXL", 10, 1.0)[0]
    assert float(ays[0]) == pytest.approx(14.6146412293) and float(ays[-1]) == 0 and len(ays) == 11
    assert float(ays[5]) == pytest.approx(0.8620721141)
    doubled = nodes.align_your_steps_scheduler("SD1", 20, 1.0)[0]
    assert len(doubled) == 21 and float(doubled[2]) == pytest.approx(6.4745760956, rel=1e-6)  # log-linear: every other
    assert float(doubled[1]) == pytest.approx(math.sqrt(14.6146412293 * 6.4745760956), rel=1e-6)
    half = nodes.align_your_steps_scheduler("SD1", 10, 0.5)[0]
    assert len(half) == 6 and float(half[0]) == pytest.approx(1.3943805092)
    model = toy_model()
    turbo = nodes.sd_turbo_scheduler(model, 4, 1.0)[0]
    assert torch.allclose(turbo[:-1], model.sampling.sigma(torch.tensor([999.0, 899.0, 799.0, 699.0])))
    assert float(nodes.sd_turbo_scheduler(model, 1, 0.5)[0][0]) == pytest.approx(float(model.sampling.sigma(torch.tensor(499.0))))
    from nodeflow.sampling.schedulers import compute_sigmas
    assert torch.equal(nodes.basic_scheduler(model, "karras", 5, 0.5)[0], compute_sigmas(model.sampling, "karras", 10)[-6:])
    assert len(nodes.basic_scheduler(model, "karras", 5, 0.0)[0]) == 0


def test_sigma_edits():
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    high, low = nodes.split_sigmas(sigmas, 2)
    assert high.tolist() == [10.0, 5.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]
    high, low = nodes.split_sigmas_denoise(sigmas, 0.5)
    assert high.tolist() == [10.0, 5.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]
    assert nodes.flip_sigmas(sigmas)[0].tolist() == pytest.approx([0.0001, 1.0, 2.0, 5.0, 10.0])
    assert nodes.set_first_sigma(sigmas, 136.0)[0].tolist() == [136.0, 5.0, 2.0, 1.0, 0.0] and sigmas[0] == 10.0
    extended = nodes.extend_intermediate_sigmas(sigmas, 2, -1.0, 4.0, "linear")[0]
    assert extended.tolist() == [10.0, 7.5, 5.0, 3.5, 2.0, 1.0, 0.0]
    assert nodes.manual_sigmas("14.6, 7,1 0.5")[0].tolist() == pytest.approx([14.6, 7.0, 1.0, 0.5])
    model = toy_model()
    assert nodes.sampling_percent_to_sigma(model, 0.0, True)[0] == pytest.approx(float(ModelSampling.sd1().sigma_max))
    assert nodes.sampling_percent_to_sigma(model, 0.5, False)[0] == pytest.approx(
        float(model.sampling.sigma(torch.tensor(499.5))))


# ---- guiders

def test_basic_guider_is_cfg_one_and_dual_cfg_follows_its_formulas():
    model = toy_model()
    x, sigma = torch.randn(1, 4, 8, 8), torch.tensor([3.0])
    c1, c2, negative = cond(1.0), cond(0.3), cond(-1.0)
    [basic] = nodes.basic_guider(model, c1)
    [one] = nodes.cfg_guider(model, c1, negative, 1.0)
    assert torch.equal(basic.denoiser()(x, sigma), one.denoiser()(x, sigma))

    def prediction(conditioning):
        return nodes.basic_guider(model, conditioning)[0].denoiser()(x, sigma)

    p1, p2, pn = prediction(c1), prediction(c2), prediction(negative)
    [regular] = nodes.dual_cfg_guider(model, c1, c2, negative, 3.0, 2.0, "regular")
    assert torch.allclose(regular.denoiser()(x, sigma), pn + (p2 - pn) * 2.0 + (p1 - p2) * 3.0, atol=1e-6)
    [nested] = nodes.dual_cfg_guider(model, c1, c2, negative, 3.0, 2.0, "nested")
    assert torch.allclose(nested.denoiser()(x, sigma), pn + 2.0 * (p2 + (p1 - p2) * 3.0 - pn), atol=1e-6)
    # a model patch changes the guided part as in ComfyUI (its cfg_function sees cond2 vs the negative)
    from nodeflow_nodes.model_advanced import cfg_zero_star
    [patched] = cfg_zero_star(model)
    [dual_patched] = nodes.dual_cfg_guider(patched, c1, c2, negative, 3.0, 2.0, "regular")
    expected = patched.guide(x, sigma, p2, pn, 2.0) + (p1 - p2) * 3.0
    assert torch.allclose(dual_patched.denoiser()(x, sigma), expected, atol=1e-6)
    assert not torch.allclose(expected, pn + (p2 - pn) * 2.0 + (p1 - p2) * 3.0, atol=1e-4)
    [as_cfg] = nodes.dual_cfg_guider(model, c1, c2, negative, 3.0, 1.0, "regular")
    [cfg] = nodes.cfg_guider(model, c1, c2, 3.0)
    assert torch.allclose(as_cfg.denoiser()(x, sigma), cfg.denoiser()(x, sigma), atol=1e-6)


# ---- samplers with options, bad input

def test_sampler_nodes_pass_their_options():
    [choice] = nodes.sampler_dpmpp_2m_sde("heun", 0.5, 0.8, "cpu")
    assert choice.name == "dpmpp_2m_sde" and dict(choice.options) == {"eta": 0.5, "s_noise": 0.8, "solver_type": "heun"}
    model = toy_model()
    [sigmas] = nodes.karras_scheduler(5, 14.614642, 0.0291675, 7.0)
    results = [nodes.sampler_custom(model, True, 3, 2.0, cond(1.0), cond(0.0), nodes.sampler_euler_ancestral(eta, 1.0)[0],
                                    sigmas, LATENT, ctx())[0]["samples"] for eta in (1.0, 0.0)]
    [euler] = nodes.ksampler_select("euler")
    plain = nodes.sampler_custom(model, True, 3, 2.0, cond(1.0), cond(0.0), euler, sigmas, LATENT, ctx())[0]["samples"]
    assert not torch.allclose(results[0], results[1]) and torch.allclose(results[1], plain, atol=1e-6)  # eta 0: Euler


def test_empty_or_broken_sigmas_name_the_input():
    model = toy_model()
    [sampler] = nodes.ksampler_select("euler")
    with pytest.raises(NodeInputError, match="empty") as error:
        nodes.sampler_custom(model, True, 0, 1.0, cond(1.0), cond(0.0), sampler, torch.zeros(0), LATENT, ctx())
    assert error.value.input_name == "sigmas"
    with pytest.raises(NodeInputError, match="finite"):
        nodes.sampler_custom(model, True, 0, 1.0, cond(1.0), cond(0.0), sampler, torch.tensor([1.0, float("nan")]),
                             LATENT, ctx())
    one = nodes.sampler_custom(model, True, 0, 1.0, cond(1.0), cond(0.0), sampler, torch.tensor([1.0]), LATENT, ctx())
    assert torch.equal(one[0]["samples"], LATENT["samples"])  # nothing to do: the input


def test_noise_wired_into_a_sampler_input_is_refused_by_validation(tmp_path):
    from nodeflow.engine.registry import Registry
    from nodeflow.engine.validate import validate
    from nodeflow.engine.workflow import Link, NodeInstance, Workflow
    from nodeflow.runtime.paths import Paths

    paths = Paths(models_dirs=(tmp_path,), output_dir=tmp_path / "out")
    registry = Registry.load(paths)
    workflow = Workflow(nodes={"1": NodeInstance("1", "RandomNoise", {"noise_seed": 1}),
                               "2": NodeInstance("2", "SamplerCustomAdvanced", {})},
                        links=[Link("1", 0, "2", "sampler")])
    problems = [str(p) for p in validate(workflow, registry, paths)]
    assert any("2" in p and "sampler" in p and "NOISE" in p for p in problems), problems


def test_er_sde_modes_and_seeds_2():
    model = toy_model()
    [sigmas] = nodes.karras_scheduler(6, 14.614642, 0.0291675, 7.0)

    def run(sampler, seed):
        return nodes.sampler_custom(model, True, seed, 3.0, cond(1.0), cond(0.0), sampler, sigmas, LATENT, ctx())[0]["samples"]

    [ode] = nodes.sampler_er_sde("ODE", 3, 1.0, 1.0)
    [sde] = nodes.sampler_er_sde("ER-SDE", 3, 1.0, 1.0)
    [reverse] = nodes.sampler_er_sde("Reverse-time SDE", 3, 0.5, 1.0)
    same_start = {"samples": torch.zeros(2, 4, 8, 8)}
    a = nodes.sampler_custom(model, False, 1, 3.0, cond(1.0), cond(0.0), ode, sigmas, same_start, ctx())[0]["samples"]
    b = nodes.sampler_custom(model, False, 2, 3.0, cond(1.0), cond(0.0), ode, sigmas, same_start, ctx())[0]["samples"]
    assert torch.equal(a, b)  # the ODE draws no noise: the seed only sets the (disabled) initial noise
    c = nodes.sampler_custom(model, False, 1, 3.0, cond(1.0), cond(0.0), sde, sigmas, same_start, ctx())[0]["samples"]
    d = nodes.sampler_custom(model, False, 2, 3.0, cond(1.0), cond(0.0), sde, sigmas, same_start, ctx())[0]["samples"]
    assert not torch.allclose(c, d) and not torch.allclose(c, a)
    assert torch.isfinite(run(reverse, 3)).all()
    [seeds] = nodes.sampler_seeds_2("phi_1", 1.0, 1.0, 0.5)
    [heun] = nodes.sampler_seeds_2("phi_2", 0.0, 1.0, 1.0)
    [exp_heun] = nodes.ksampler_select("exp_heun_2_x0")
    assert torch.isfinite(run(seeds, 4)).all()
    assert torch.allclose(run(heun, 4), run(exp_heun, 4), atol=1e-6)  # SEEDS-2 phi_2, r 1, eta 0 = exp Heun


def test_sa_solver_node_declares_comfyuis_inputs_and_passes_its_options():
    from nodeflow.sampling.samplers_sa_solver import TauInterval
    from nodeflow.spec import spec_of

    spec = spec_of(nodes.sampler_sa_solver)
    declared = {i.name: (i.default, i.min, i.max) for i in spec.inputs if i.is_widget}
    assert [i.name for i in spec.inputs][0] == "model" and declared == {  # ComfyUI's SamplerSASolver
        "eta": (1.0, 0.0, 10.0), "sde_start_percent": (0.2, 0.0, 1.0), "sde_end_percent": (0.8, 0.0, 1.0),
        "s_noise": (1.0, 0.0, 100.0), "predictor_order": (3, 1, 6), "corrector_order": (4, 0, 6),
        "use_pece": (False, None, None), "simple_order_2": (False, None, None)}
    model = toy_model()
    [choice] = nodes.sampler_sa_solver(model, 0.7, 0.1, 0.9, 0.5, 2, 3, True, True)
    sampling = model.sampling
    assert choice.name == "sa_solver" and dict(choice.options) == {
        "tau_func": TauInterval(sampling.percent_to_sigma(0.1), sampling.percent_to_sigma(0.9), 0.7), "s_noise": 0.5,
        "predictor_order": 2, "corrector_order": 3, "use_pece": True, "simple_order_2": True}
    assert choice.options[0][1].start_sigma == pytest.approx(float(sampling.sigma(torch.tensor(899.1))))


def test_sa_solver_node_with_defaults_is_ksamplers_sa_solver():
    """At its defaults (the model's sigmas at 20 % and 80 %, eta 1, orders 3 and 4) the node's
    sampler is KSampler's sa_solver; with use_pece its sa_solver_pece; eta 0 draws no noise."""
    model = toy_model()
    [sigmas] = nodes.basic_scheduler(model, "karras", 8, 1.0)

    def run(sampler, seed):
        return nodes.sampler_custom(model, True, seed, 3.0, cond(1.0), cond(0.0), sampler, sigmas, LATENT, ctx())[0]

    for use_pece, name in ((False, "sa_solver"), (True, "sa_solver_pece")):
        [node_sampler] = nodes.sampler_sa_solver(model, 1.0, 0.2, 0.8, 1.0, 3, 4, use_pece, False)
        expected = sample(model, seed=4, steps=8, cfg=3.0, sampler_name=name, scheduler="karras",
                          positive=cond(1.0), negative=cond(0.0), latent=LATENT)["samples"]
        assert torch.equal(run(node_sampler, 4)["samples"], expected)
    [noisy] = nodes.sampler_sa_solver(model, 1.0, 0.2, 0.8, 1.0, 3, 4, False, False)
    [ode] = nodes.sampler_sa_solver(model, 0.0, 0.2, 0.8, 1.0, 3, 4, False, False)
    same_start = {"samples": torch.zeros(2, 4, 8, 8)}

    def without_initial_noise(sampler, seed):
        return nodes.sampler_custom(model, False, seed, 3.0, cond(1.0), cond(0.0), sampler, sigmas, same_start,
                                    ctx())[0]["samples"]

    assert torch.equal(without_initial_noise(ode, 1), without_initial_noise(ode, 2))
    assert not torch.allclose(without_initial_noise(noisy, 1), without_initial_noise(noisy, 2))


# ---- GITS

# ComfyUI's comfy_extras/nodes_gits.py NOISE_LEVELS (from the GITS authors' zju-pi/diff-sampler):
GITS_1_20_STEPS_10 = [14.61464119, 5.85520077, 2.84484982, 1.67050016, 1.08895338, 0.74807048, 0.50118381,
                      0.32104823, 0.19894916, 0.09824532, 0.02916753]  # NOISE_LEVELS[1.20][10 - 2]
GITS_1_20_STEPS_20 = [14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.24153244,
                      0.95350921, 0.74807048, 0.59516323, 0.50118381, 0.41087446, 0.34370604, 0.29807833, 0.25053367,
                      0.22545385, 0.19894916, 0.17026083, 0.13792117, 0.09824532, 0.02916753]  # [1.20][20 - 2]
GITS_0_80_STEPS_2 = [14.61464119, 7.49001646, 0.02916753]  # NOISE_LEVELS[0.80][0]
GITS_1_50_STEPS_4 = [14.61464119, 0.86115354, 0.32104823, 0.09824532, 0.02916753]  # NOISE_LEVELS[1.50][2]


def with_final_zero(levels):
    return torch.tensor(levels[:-1] + [0.0], dtype=torch.float32)


def test_gits_node_declares_comfyuis_inputs_and_gives_its_table_rows():
    from nodeflow.spec import spec_of

    spec = spec_of(nodes.gits_scheduler)
    assert [(i.name, i.default, i.min, i.max) for i in spec.inputs] == [
        ("coeff", 1.20, 0.80, 1.50), ("steps", 10, 2, 1000), ("denoise", 1.0, 0.0, 1.0)]
    assert spec.input("coeff").step == 0.05
    for coeff, steps, levels in ((1.2, 10, GITS_1_20_STEPS_10), (1.2, 20, GITS_1_20_STEPS_20),
                                 (0.8, 2, GITS_0_80_STEPS_2), (1.5, 4, GITS_1_50_STEPS_4)):
        [sigmas] = nodes.gits_scheduler(coeff, steps, 1.0)
        assert sigmas.dtype == torch.float32 and torch.equal(sigmas, with_final_zero(levels)), (coeff, steps)
    [float_noise] = nodes.gits_scheduler(1.15 + 0.05, 10, 1.0)  # 1.2000000000000002: rounded to 2 places
    assert torch.equal(float_noise, with_final_zero(GITS_1_20_STEPS_10))


def test_gits_interpolates_the_20_step_row_above_20_steps():
    """Above 20 steps: the 20-step row spread log-linearly over steps + 1 points (numpy's interp
    of log sigma at evenly spaced positions, ComfyUI's loglinear_interp); both ends kept."""
    for steps in (21, 25, 60):
        [sigmas] = nodes.gits_scheduler(1.2, steps, 1.0)
        assert len(sigmas) == steps + 1 and float(sigmas[-1]) == 0
        expected = []
        for j in range(steps + 1):  # position of point j on the row's 20 intervals, from the low end
            position = (steps - j) / steps * 20
            low = min(int(position), 19)
            fraction = position - low
            a, b = GITS_1_20_STEPS_20[20 - low], GITS_1_20_STEPS_20[19 - low]
            expected.append(a ** (1 - fraction) * b**fraction)
        assert torch.allclose(sigmas[:-1].double(), torch.tensor(expected[:-1], dtype=torch.float64), rtol=1e-6)
        assert float(sigmas[0]) == pytest.approx(14.61464119, rel=1e-7)  # the last point, 0.02916753, became 0
    assert float(nodes.gits_scheduler(1.2, 40, 1.0)[0][2]) == pytest.approx(7.49001646, rel=1e-6)  # every other point


def test_gits_denoise_and_edges():
    """denoise < 1 keeps the last round(steps * denoise) steps (Python's rounding: half to even),
    denoise 0 gives no sigmas; a coeff outside the table names the input."""
    [half] = nodes.gits_scheduler(1.2, 10, 0.5)
    assert torch.equal(half, with_final_zero(GITS_1_20_STEPS_10[-6:]))
    assert len(nodes.gits_scheduler(1.2, 10, 0.0)[0]) == 0
    assert nodes.gits_scheduler(1.2, 10, 0.04)[0].tolist() == [0.0]  # round(0.4) = 0 steps: only the final 0
    assert len(nodes.gits_scheduler(1.2, 5, 0.5)[0]) == 3  # round(2.5) = 2
    assert len(nodes.gits_scheduler(1.2, 7, 0.5)[0]) == 5  # round(3.5) = 4
    assert torch.equal(nodes.gits_scheduler(1.2, 10, 0.999)[0], nodes.gits_scheduler(1.2, 10, 1.0)[0])
    with pytest.raises(NodeInputError, match="1.25") as error:
        nodes.gits_scheduler(1.22, 10, 1.0)
    assert error.value.input_name == "coeff"


def test_gits_table_rows_are_schedules_and_its_grid_is_sds_sigmas():
    """Every row (15 coeffs, 2 to 20 steps): steps + 1 strictly decreasing sigmas from SD's
    sigma_max to its sigma_min; the grid's point k is SD's sigma at timestep 9.99 k (within 3e-6)."""
    from nodeflow.sampling import custom_schedules

    assert list(custom_schedules.GITS_SCHEDULES) == [round(0.80 + 0.05 * i, 2) for i in range(15)]
    for coeff in custom_schedules.GITS_SCHEDULES:
        assert len(custom_schedules.GITS_SCHEDULES[coeff]) == 19
        for steps in range(2, 21):
            levels = custom_schedules.gits_table_levels(coeff, steps)
            assert len(levels) == steps + 1 and levels[0] == 14.61464119 and levels[-1] == 0.02916753
            assert all(a > b for a, b in zip(levels, levels[1:])), (coeff, steps)
    sd = ModelSampling.sd1()
    for k, sigma in custom_schedules.GITS_GRID.items():
        assert abs(float(sd.sigma(torch.tensor(9.99 * k, dtype=torch.float64))) - sigma) < 3e-6 + 1e-6 * sigma, k
