"""What only a CUDA GPU can show; every test here skips cleanly without one.

The default workflow on the embedded model runs on the GPU (fp16 U-Net and text encoder, bf16 or
fp32 VAE by the rule in nodeflow/models/devices.py) and draws what the CPU draws for the same seed;
in fp32 the two agree to float rounding. Cached models and conditioning stay on the GPU between
runs, so a new seed re-runs only the sampler and what follows it.
"""

import numpy as np
import pytest
import torch

from nodeflow.engine.executor import Executor
from nodeflow.runtime.paths import Paths
from nodeflow.engine.registry import Registry
from nodeflow.engine.workflow import Link, NodeInstance
from nodeflow.formats import load_workflow
from tests.image_checker import read_image
from tests.project import ROOT, run_for_images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CHECKPOINT = ROOT / "assets" / "nodeflow-tiny.safetensors"


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda")
    paths = Paths(models_dirs=(root / "models",), output_dir=root / "out", temp_dir=root / "tmp")
    return Executor(Registry.load(paths), paths)


def preview_workflow(seed: int = 7, sampler: str = "euler", batch: int = 4):
    """txt2img with its SaveImage replaced by a PreviewImage, so the images come back in memory."""
    workflow = load_workflow(ROOT / "workflows" / "txt2img.json")
    workflow.nodes["3"].inputs.update(seed=seed, sampler_name=sampler)
    workflow.nodes["5"].inputs["batch_size"] = batch
    workflow.nodes["9"] = NodeInstance("9", "PreviewImage")
    workflow.links = [link for link in workflow.links if link.dst != "9"] + [Link("8", 0, "9", "images")]
    return workflow


images_of = run_for_images


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")
@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde"])
def test_gpu_fp32_equals_cpu(executor, sampler):
    """Same seed, same image: the noise is drawn on the CPU, so only float rounding differs."""
    cpu = images_of(executor, preview_workflow(sampler=sampler), device="cpu")
    executor.clear_cache()
    gpu = images_of(executor, preview_workflow(sampler=sampler), device="cuda", dtype="fp32")
    executor.clear_cache()
    assert np.abs(cpu - gpu).max() < 2e-3, sampler


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")
def test_gpu_half_precision_draws_what_the_cpu_draws(executor):
    cpu = images_of(executor, preview_workflow(batch=8), device="cpu")
    executor.clear_cache()
    gpu = images_of(executor, preview_workflow(batch=8), device="cuda", dtype="auto")
    executor.clear_cache()
    assert np.isfinite(gpu).all()
    assert np.abs(cpu - gpu).mean() < 0.02
    same = [read_image(a).foreground == read_image(b).foreground and read_image(a).shape == read_image(b).shape
            for a, b in zip(cpu, gpu)]
    assert sum(same) >= 7


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")
def test_cached_models_stay_on_the_gpu_and_a_new_seed_reruns_only_the_sampler(executor):
    first = executor.run(preview_workflow(seed=1), device="cuda")
    assert executor.cache.bytes_used().get("cuda", 0) > 4 * 2**20  # the models, kept on the GPU
    second = executor.run(preview_workflow(seed=2), device="cuda")
    assert set(second.executed) == {"3", "8", "9"}
    assert {"4", "5", "6", "7"} <= set(second.cached)
    assert second.node_seconds["3"] < first.seconds
    executor.clear_cache()
    assert torch.cuda.memory_allocated() < 64 * 2**20


def test_noise_is_drawn_on_the_cpu_whatever_the_device():
    from nodeflow.sampling.noise import initial_noise

    expected = torch.randn((2, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(123))
    noise = initial_noise((2, 4, 8, 8), 123)
    assert noise.device.type == "cpu" and torch.equal(noise, expected)


@pytest.mark.skipif(not (ROOT / "assets" / "controlnet" / "nodeflow-tiny-mask.safetensors").is_file(),
                    reason="the embedded ControlNet is not in assets/")
def test_controlnet_workflow_in_half_precision_on_the_gpu(tmp_path):
    from tests.test_embedded_controlnet import IOU, TARGET, make_executor, measure_ious

    executor, input_dir = make_executor(tmp_path)
    ious = measure_ious(executor, input_dir, device="cuda")
    assert sum(iou >= IOU for iou in ious) / len(ious) >= TARGET, sorted(ious)


@pytest.mark.skipif(not (ROOT / "assets" / "loras" / "nodeflow-tiny-big-shapes.safetensors").is_file(),
                    reason="the example LoRA is not in assets/")
def test_lora_workflow_gpu_fp32_equals_cpu(executor):
    workflow = load_workflow(ROOT / "workflows" / "lora.json")
    workflow.nodes["5"].inputs["batch_size"] = 2
    cpu = images_of(executor, workflow, device="cpu")
    executor.clear_cache()
    gpu = images_of(executor, workflow, device="cuda", dtype="fp32")
    executor.clear_cache()
    assert np.abs(cpu - gpu).max() < 2e-3


# --- --vram low: weights in CPU memory, the U-Net streamed block by block (nodeflow.runtime.vram) ---

XL_CHECKPOINT = ROOT / "assets" / "nodeflow-tiny-xl.safetensors"


@pytest.mark.parametrize("workflow_file, checkpoint", [("txt2img.json", CHECKPOINT),
                                                       ("sdxl_txt2img.json", XL_CHECKPOINT)], ids=["sd1", "sdxl"])
def test_low_vram_draws_what_normal_draws(executor, workflow_file, checkpoint):
    """Same U-Net and VAE dtypes, the U-Net streamed, the VAE copied in for its pass; only the
    text encoder differs (float32 on the CPU instead of float16 on the GPU), hence no exact match."""
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint.name} is not in assets/")
    normal = images_of(executor, load_workflow(ROOT / "workflows" / workflow_file), device="cuda", vram="normal")
    normal_bytes = executor.cache.bytes_used().get("cuda", 0)
    executor.clear_cache()
    low = images_of(executor, load_workflow(ROOT / "workflows" / workflow_file), device="cuda", vram="low")
    low_bytes = executor.cache.bytes_used().get("cuda", 0)
    executor.clear_cache()
    difference = np.abs(low - normal)
    print(f"{workflow_file}: low vs normal mean {difference.mean() * 255:.3f}/255, "
          f"max {difference.max() * 255:.3f}/255; cached GPU bytes {low_bytes} (low), {normal_bytes} (normal)")
    assert low_bytes < normal_bytes  # the cached models keep their weights in CPU memory
    assert difference.mean() < 2 / 255 and difference.max() < 16 / 255


def test_a_streamed_unet_on_the_gpu_computes_exactly_what_the_resident_one_does():
    from nodeflow.models.streaming import stream_blocks
    from tests.test_vram import TINY_XL, tiny_unet, unet_inputs

    resident = tiny_unet(TINY_XL).half().cuda()
    streamed = stream_blocks(tiny_unet(TINY_XL).half(), "cuda", pin=True)
    args, kwargs = unet_inputs(TINY_XL, device="cuda")
    kwargs = {"y": kwargs["y"].half()}
    with torch.inference_mode():
        expected, output = resident(*args, **kwargs), streamed(*args, **kwargs)
    assert output.device.type == "cuda" and torch.equal(output, expected)
    assert all(p.device.type == "cpu" and p.is_pinned() for p in streamed.parameters())


#: SDXL's U-Net (tests/bench/bench_models.py SDXL_UNET): 2.6 G parameters, 5.1 GB in float16
SDXL_UNET = dict(model_channels=320, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10), middle_transformer_depth=10,
                 context_dim=2048, num_heads=None, head_channels=64, use_linear_in_transformer=True,
                 adm_in_channels=2816)


def test_an_sdxl_sized_unet_streamed_from_the_cpu_runs_in_4_gib():
    """One CFG-batched call at a 1024 px image's 128 x 128 latent with the process capped at
    4 GiB of the GPU; prints the peak and the time per call, streamed and resident."""
    import time

    from nodeflow.models.streaming import stream_blocks, unstream
    from nodeflow.models.unet import UNetConfig, UNetModel

    with torch.device("meta"):
        unet = UNetModel(UNetConfig(**SDXL_UNET)).to(torch.float16)
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.normal_(0, 0.02)
    weights = sum(p.numel() * p.element_size() for p in unet.parameters())
    stream_blocks(unet, "cuda", pin=True)
    device = torch.device("cuda")
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(2, 4, 128, 128, device=device, dtype=torch.float16, generator=generator)
    timesteps = torch.tensor([999.0, 999.0], device=device)
    context = torch.randn(2, 77, 2048, device=device, dtype=torch.float16, generator=generator)
    y = torch.randn(2, 2816, device=device, dtype=torch.float16, generator=generator)

    def timed_call() -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            output = unet(x, timesteps, context, y=y)
        torch.cuda.synchronize()
        assert output.shape == (2, 4, 128, 128) and output.device.type == "cuda"
        return time.perf_counter() - started

    cap = 4 * 2**30
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(device).total_memory, device)
    try:
        torch.cuda.reset_peak_memory_stats(device)
        streamed = [timed_call() for _ in range(3)]
        peak = torch.cuda.max_memory_allocated(device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    unstream(unet).to(device)
    resident = [timed_call() for _ in range(3)]
    print(f"{torch.cuda.get_device_name(device)}: SDXL-sized U-Net ({weights / 2**30:.2f} GiB fp16), batch 2 at "
          f"128 x 128, streamed: peak {peak / 2**30:.2f} GiB, {min(streamed):.3f} s per call "
          f"(first {streamed[0]:.3f} s); resident: {min(resident):.3f} s per call")
    assert peak < cap


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="the embedded model is not in assets/")
def test_compile_on_the_gpu_draws_what_the_uncompiled_model_draws(executor):
    """--compile with inductor (Triton kernels) on the GPU, fp32 so the two can be compared
    tightly: the same images to float rounding, and a later run of the same size reuses the
    compiled graph (faster than the first, which compiled)."""
    plain = images_of(executor, preview_workflow(), device="cuda", dtype="fp32")
    executor.clear_cache()
    first = executor.run(preview_workflow(seed=8), device="cuda", dtype="fp32", compile=True)
    compiled = images_of(executor, preview_workflow(), device="cuda", dtype="fp32", compile=True)
    again = executor.run(preview_workflow(seed=9), device="cuda", dtype="fp32", compile=True)
    executor.clear_cache()
    print(f"compile: first sampler run {first.node_seconds['3']:.2f} s, later {again.node_seconds['3']:.3f} s")
    assert np.abs(plain - compiled).max() < 2e-3
    assert again.node_seconds["3"] < first.node_seconds["3"]


@pytest.mark.parametrize("kind", ["union", "t2i-full", "t2i-light"])
def test_a_streamed_union_controlnet_or_t2i_adapter_on_the_gpu_computes_what_the_resident_one_does(kind):
    """--vram low streams union ControlNets (their own task_embedding copied in for the whole
    call) and T2I-Adapters block by block: fp16, pinned, the same numbers as on the GPU whole."""
    from nodeflow.models.streaming import stream_blocks
    from tests.test_vram import tiny_adapter, tiny_union, union_inputs

    make = tiny_union if kind == "union" else lambda: tiny_adapter(kind.removeprefix("t2i-"))
    resident = make().half().cuda()
    streamed = stream_blocks(make().half(), "cuda", pin=True)
    with torch.inference_mode():
        if kind == "union":
            args, kwargs = union_inputs(resident, device="cuda")
            kwargs = {"y": kwargs["y"].half()}
            expected, output = resident(*args, **kwargs, control_type=1), streamed(*args, **kwargs, control_type=1)
            pairs = [*zip(expected.skips, output.skips, strict=True), (expected.middle, output.middle)]
        else:
            hint = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)).cuda()
            pairs = list(zip(resident(hint), streamed(hint), strict=True))
    assert all(b.device.type == "cuda" and torch.equal(a, b) for a, b in pairs)
    assert all(p.device.type == "cpu" and p.is_pinned() for p in streamed.parameters())


def test_a_streamed_call_adds_about_its_largest_block_to_the_gpu_memory():
    """What images_per_call subtracts for a streamed U-Net (streamed_bytes: its largest block in
    fp16) is what one call at a small latent takes beyond its activations: the peak of an
    SDXL-sized U-Net's call at 32 x 32 is at least that block and not far above it."""
    from nodeflow.models.streaming import stream_blocks, streamed_bytes
    from nodeflow.models.unet import UNetConfig, UNetModel

    with torch.device("meta"):
        unet = UNetModel(UNetConfig(**SDXL_UNET)).to(torch.float16)
    unet = unet.to_empty(device="cpu").eval().requires_grad_(False)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.zero_()
    stream_blocks(unet, "cuda", pin=True)
    block = streamed_bytes(unet)
    device = torch.device("cuda")
    x = torch.zeros(1, 4, 32, 32, device=device, dtype=torch.float16)
    context = torch.zeros(1, 77, 2048, device=device, dtype=torch.float16)
    y = torch.zeros(1, 2816, device=device, dtype=torch.float16)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        unet(x, torch.tensor([999.0], device=device), context, y=y)
    torch.cuda.synchronize()
    added = torch.cuda.max_memory_allocated(device) - before
    print(f"largest streamed block {block / 2**30:.3f} GiB; one call at 32 x 32 added {added / 2**30:.3f} GiB at peak")
    assert 0.7 * 2**30 < block < 0.8 * 2**30  # an output block of 1280 channels with 10 transformer layers
    assert block <= added < block + 2**28
