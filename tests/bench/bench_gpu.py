"""Every GPU figure of issue 20 from one run on a lent NVIDIA GPU (H100/H200): ours against diffusers.

    python tests/bench/bench_gpu.py                          # on the GPU (default --device cuda)
    python tests/bench/bench_gpu.py --device cpu --tiny      # dry run: every section, CUDA-only calls skipped
    options: --only sd15,sdxl,batch,cache,load,vram,compile  --runs N  --deadline SECONDS

Sections (machine and summary always print; each other one is caught on its own, so a failure
prints one line and costs no other figure):

- machine: GPU, memory, torch / CUDA / diffusers versions.
- sd15: SD1.5-architecture single file, 512 px, 20 euler steps, cfg 7. Ours: Executor.run on
  workflows/txt2img.json (device cuda, dtype auto = fp16 U-Net); diffusers: StableDiffusionPipeline
  in fp16 with its default SDPA attention, built from the same file by bench_pipeline's
  diffusers_pipeline (diffusers' own single-file converters). Warm-up each, then runs alternate;
  medians of --runs (3): whole run, per step (CUDA events at each step's end), ratio, and the peak
  GPU memory of a run (model weights + what the run allocated on top of everything resident).
- sdxl: the same with SDXL's architecture (full-size U-Net, VAE, CLIP-L + CLIP-G) at 1024 px
  against StableDiffusionXLPipeline in fp16 (its VAE: diffusers' default force_upcast, i.e. decoded
  in fp32), built from the same file through diffusers' single-file utilities
  (convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint via tests/comfy_reference.py,
  create_diffusers_clip_model_from_ldm for CLIP-L and, through convert_open_clip_checkpoint, CLIP-G).
- batch: SD1.5, batch_size 4 in one run against 4 runs of batch 1 (ours), images per second.
- cache: SD1.5 and SDXL alternating on one Executor, then a new seed (executed / cached nodes,
  GPU memory after each run).
- load: the CheckpointLoaderSimple time of each file's first run, and the CPU RSS it took.
- vram: SDXL with Executor.run(vram="low") under a 4 GiB cap (set_per_process_memory_fraction).
- compile: SD1.5 with Executor.run(compile=True): first run (compiles), median of steady runs.
- summary: one markdown table for the README's performance section.

The files: random weights in fp16, written ONCE each in a child process (so the parent's peak RSS
is the loaders', not the writer's) and reused by every section. SD1.5: nodeflow's exporter through
tests/test_single_file_parity.write_checkpoint, as bench_pipeline does. SDXL: the test-side writer
of tests/family_files.py (our U-Net/VAE keys, CLIP-L in transformers' layout, CLIP-G in OpenCLIP's),
the models built with torch's default init directly on the GPU (seconds; 3.5 billion random numbers
on the CPU would take a minute) and stored in fp16.

Time on an H200, estimated (no GPU was available when this was written): writing the files ~40 s,
building diffusers' pipelines ~40 s, SD1.5 runs ~1 s and SDXL ~3 s each (sd15 + sdxl ~1 min),
batch + cache ~30 s, vram low ~1-2 min (weights streamed every step), compile 1-2 min: about 5-6
minutes. --deadline (default 480 s) skips sections that would start after it, so the script ends
in time even when something is slower than estimated. Needs diffusers and transformers installed.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import multiprocessing
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.*: the checkpoint writers, configs and diffusers builders

GIB = 2**30
WORKFLOWS = {"sd15": "txt2img.json", "sdxl": "sdxl_txt2img.json"}
SECTIONS = ("sd15", "sdxl", "batch", "cache", "load", "vram", "compile")
#: diffusers' SDXL U-Net holds the ADM MLP as a text_time embedding; its config reader picks that by
#: the real context widths only, so it is asked for explicitly (the scaled-down config needs it)
SDXL_TEXT_TIME = {"class_embed_type": None, "addition_embed_type": "text_time", "addition_time_embed_dim": 256}


# ---- the files (written in a child process)

def sd15_configs(tiny: bool):
    """(U-Net, VAE, CLIP sizes) as bench_pipeline uses them."""
    from nodeflow.models.unet import UNetConfig
    from nodeflow.models.vae import VAEConfig
    from tests.test_single_file_parity import TINY_CLIP, TINY_UNET, TINY_VAE, VIT_L

    return (TINY_UNET, TINY_VAE, TINY_CLIP) if tiny else (UNetConfig(), VAEConfig(), VIT_L)


def sdxl_configs(tiny: bool):
    """(U-Net, VAE, CLIP-L sizes, CLIP-G sizes): family_files' scaled-down SDXL, or the real one."""
    from nodeflow.models.vae import VAEConfig
    from tests.bench.bench_models import SDXL_UNET
    from tests.family_files import TINY_G, TINY_L, TINY_VAE, VIT_BIGG, VIT_L, tiny_unet

    return (tiny_unet("sdxl"), TINY_VAE, TINY_L, TINY_G) if tiny else (SDXL_UNET, VAEConfig(), VIT_L, VIT_BIGG)


def write_sd15(path: Path, tiny: bool, device: str) -> None:
    """nodeflow's exporter, random fp16 weights (bench_pipeline's file). ``device`` is unused: the
    writer fills its weights from a pool of noise on the CPU, fast enough for SD1.5."""
    from tests.test_single_file_parity import write_checkpoint

    write_checkpoint(path, *sd15_configs(tiny))


def write_sdxl(path: Path, tiny: bool, device: str) -> None:
    """An SDXL-layout single file (keys as tests/family_files.family_state_dict writes them), its
    models built with torch's default init on ``device`` and stored in fp16."""
    import transformers
    from safetensors.torch import save_file

    from nodeflow.models.unet import UNetModel
    from nodeflow.models.vae import AutoencoderKL
    from tests.family_files import clip_config, open_clip_layout, prefixed, transformers_layout

    unet_config, vae_config, l_sizes, g_sizes = sdxl_configs(tiny)
    torch.manual_seed(0)
    with torch.device(device), torch.no_grad():
        unet, vae = UNetModel(unet_config).half(), AutoencoderKL(vae_config).half()
        clip_l = transformers.CLIPTextModel(clip_config(l_sizes)).half()
        clip_g = transformers.CLIPTextModelWithProjection(clip_config(g_sizes)).half()
    tensors = (prefixed("model.diffusion_model.", unet.state_dict()) | prefixed("first_stage_model.", vae.state_dict())
               | prefixed("conditioner.embedders.0.transformer.", transformers_layout(clip_l))
               | prefixed("conditioner.embedders.1.model.", open_clip_layout(clip_g)))
    del unet, vae, clip_l, clip_g
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def write_in_child(writer, path: Path, tiny: bool, device: str) -> Path:
    """Run ``writer`` in a spawned process: its memory (the whole state dict on the CPU, GPU
    scratch) is returned to the system before our loaders are measured."""
    child = multiprocessing.get_context("spawn").Process(target=writer, args=(path, tiny, device))
    child.start()
    child.join()
    if child.exitcode != 0 or not path.is_file():
        raise RuntimeError(f"writing {path.name} failed in the child process (exit status {child.exitcode})")
    return path


# ---- diffusers' pipelines

def diffusers_sd15(path: Path, tiny: bool, folder: Path, device: torch.device, dtype: torch.dtype):
    """bench_pipeline's StableDiffusionPipeline (fp32 on the CPU), moved to ``device`` in ``dtype``."""
    from tests.bench.bench_pipeline import diffusers_pipeline

    return diffusers_pipeline(path, *sd15_configs(tiny), folder).to(device, dtype)


def diffusers_sdxl(path: Path, tiny: bool, folder: Path, device: torch.device, dtype: torch.dtype):
    """StableDiffusionXLPipeline from the same single file, through diffusers' single-file utilities."""
    import diffusers
    import transformers
    from diffusers.loaders import single_file_utils as sfu

    from nodeflow.text.tokenizer import default_tokenizer_dir
    from tests.comfy_reference import diffusers_unet, diffusers_vae
    from tests.family_files import clip_config, original_config

    unet_config, vae_config, l_sizes, g_sizes = sdxl_configs(tiny)
    checkpoint = {k: v.to(dtype) if v.is_floating_point() else v
                  for k, v in sfu.load_single_file_checkpoint(str(path)).items()}
    ldm = original_config(unet_config, vae_config, 0.13025)
    unet, vae = diffusers_unet(checkpoint, ldm, SDXL_TEXT_TIME), diffusers_vae(checkpoint, ldm)
    towers = []
    for name, cls, sizes in (("l", transformers.CLIPTextModel, l_sizes),
                             ("g", transformers.CLIPTextModelWithProjection, g_sizes)):
        clip_config(sizes).save_pretrained(folder / name)
        with torch.device(device):  # without accelerate the tower is initialised before loading: do it there
            towers.append(sfu.create_diffusers_clip_model_from_ldm(
                cls, checkpoint, config=str(folder / name), local_files_only=True, torch_dtype=dtype))
    tokens = default_tokenizer_dir()
    tokenizers = [transformers.CLIPTokenizer(str(tokens / "vocab.json"), str(tokens / "merges.txt"),
                                             model_max_length=77, **extra) for extra in ({}, {"pad_token": "!"})]
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 num_train_timesteps=1000, steps_offset=1)
    pipeline = diffusers.StableDiffusionXLPipeline(vae=vae, text_encoder=towers[0], text_encoder_2=towers[1],
                                                   tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], unet=unet,
                                                   scheduler=scheduler, add_watermarker=False)
    return pipeline.to(device, dtype)


def parameter_bytes(pipeline) -> int:
    """Bytes of the weights a diffusers pipeline holds (its torch modules' parameters and buffers)."""
    modules = [m for m in pipeline.components.values() if isinstance(m, torch.nn.Module)]
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


# ---- clocks and memory

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """When each sampler step ended, taken without stalling the GPU: a CUDA event recorded on the
    stream at each step (read after the run), or perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def per_step(self) -> float | None:
        """Seconds per step between the first step's end and the last's (start-up left out); None
        when fewer than 2 steps ran (a run whose sampler came from the cache)."""
        if len(self.marks) < 2:
            return None
        if self.cuda:
            torch.cuda.synchronize()
            return self.marks[0].elapsed_time(self.marks[-1]) / 1000 / (len(self.marks) - 1)
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)


@dataclass
class Measured:
    seconds: float
    per_step: float | None = None
    peak_extra: int | None = None  # bytes allocated on the GPU during the run above what was resident
    result: object = None


def measure(device: torch.device, fn, clock: StepClock | None = None) -> Measured:
    """Time ``fn()`` between two synchronisations, with the GPU's allocation peak above what was
    resident before it (CUDA only)."""
    cuda = device.type == "cuda"
    synchronize(device)
    if cuda:
        resident = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) - resident if cuda else None
    return Measured(seconds, clock.per_step() if clock else None, peak, result)


def gib(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / GIB:.2f} GiB"


def reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS,
    so a later peak is that of what ran since, not of earlier work in this process."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss(field_name: str) -> int | None:
    """VmRSS (now) or VmHWM (peak) of this process in bytes, from /proc/self/status; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def lifetime_peak_rss() -> int:
    """resource.getrusage's peak RSS of this process (KiB on Linux), in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---- the session

@dataclass
class Load:
    """What the first run of a file showed: the loader's time and the memory it took."""
    seconds: float
    loader_seconds: float | None  # None if the loader's output came from the cache (never here)
    file_bytes: int
    gpu_bytes: int | None
    rss_before: int | None
    rss_peak: int | None  # during the load (VmHWM after a reset), None where it cannot be reset
    lifetime_peak: int


@dataclass
class Bench:
    """Settings, the folder, the files written so far, one Executor, and the summary rows."""

    args: argparse.Namespace
    folder: Path
    device: torch.device = field(init=False)
    rows: list[tuple[str, ...]] = field(default_factory=list)
    loads: dict[str, Load] = field(default_factory=dict)  # each file's first load, kept for the summary
    loaded: set[str] = field(default_factory=set)  # the files the shared Executor holds now
    files: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nodeflow.engine.registry import Registry
        from nodeflow.runtime.paths import Paths

        self.device = torch.device(self.args.device)
        (self.folder / "models" / "checkpoints").mkdir(parents=True)
        self.paths = Paths(models_dirs=(self.folder / "models",), output_dir=self.folder / "out",
                           temp_dir=self.folder / "tmp", input_dir=self.folder / "in")
        self.registry = Registry.load(self.paths)
        self.executor = self.new_executor()

    @property
    def dtype(self) -> torch.dtype:
        """diffusers' dtype: fp16 on the GPU (as users run it), fp32 on the CPU (ours' auto there)."""
        return torch.float16 if self.device.type == "cuda" else torch.float32

    def size(self, kind: str) -> int:
        return 64 if self.args.tiny else {"sd15": 512, "sdxl": 1024}[kind]

    @property
    def steps(self) -> int:
        return 3 if self.args.tiny else 20

    def new_executor(self):
        from nodeflow.engine.executor import Executor

        return Executor(self.registry, self.paths)

    def checkpoint(self, kind: str) -> Path:
        """The kind's file, written on first use and reused after."""
        if kind not in self.files:
            started = time.perf_counter()
            path = self.folder / "models" / "checkpoints" / f"{kind}-random.safetensors"
            writer = write_sd15 if kind == "sd15" else write_sdxl
            self.files[kind] = write_in_child(writer, path, self.args.tiny, str(self.device))
            print(f"wrote {path.name}: {path.stat().st_size / GIB:.2f} GiB of random fp16 weights in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        return self.files[kind]

    def workflow(self, kind: str, batch: int = 1):
        from nodeflow.formats import load_workflow

        workflow = load_workflow(ROOT / "workflows" / WORKFLOWS[kind])
        workflow.nodes["4"].inputs["ckpt_name"] = self.checkpoint(kind).name
        workflow.nodes["5"].inputs.update(width=self.size(kind), height=self.size(kind), batch_size=batch)
        workflow.nodes["3"].inputs.update(steps=self.steps, cfg=7.0, sampler_name="euler", scheduler="normal")
        return workflow

    def run_ours(self, workflow, prompt: str, seed: int, executor=None, **options) -> Measured:
        """One Executor.run, timed, with the sampler's per-step time from its Progress events."""
        from nodeflow.engine.events import Progress

        workflow.nodes["6"].inputs["text"], workflow.nodes["3"].inputs["seed"] = prompt, seed
        clock = StepClock(self.device)

        def on_event(event) -> None:
            if isinstance(event, Progress) and event.node_id == "3":  # the KSampler's steps
                clock.mark()

        return measure(self.device, lambda: (executor or self.executor).run(
            workflow, device=self.args.device, dtype="auto", on_event=on_event, preview_every=0, **options), clock)

    def ensure_loaded(self, kind: str) -> Load:
        """The kind's first run on the shared Executor (it loads the file: the warm-up run)."""
        if kind not in self.loaded:
            workflow = self.workflow(kind)
            gc.collect()
            cuda_before = self.executor.cache.bytes_used().get("cuda", 0)
            rss_before, can_reset = rss("VmRSS"), reset_peak_rss()
            first = self.run_ours(workflow, "warm-up", 0)
            cuda_after = self.executor.cache.bytes_used().get("cuda", 0)
            self.loaded.add(kind)
            self.loads.setdefault(kind, Load(first.seconds, first.result.node_seconds.get("4"),
                                    self.checkpoint(kind).stat().st_size,
                                    cuda_after - cuda_before if self.device.type == "cuda" else None,
                                    rss_before, rss("VmHWM") if can_reset else None, lifetime_peak_rss()))
        return self.loads[kind]

    def free_gpu(self) -> None:
        """Drop every cached output (models included) and return the allocator's blocks."""
        self.executor.clear_cache()
        self.loaded.clear()  # the next run of a file loads it again
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def median(values: list[float | None]) -> float | None:
    """The median of the values taken (None: not taken), or None if there are none."""
    taken = [value for value in values if value is not None]
    return statistics.median(taken) if taken else None


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def has_keyword(name: str) -> bool:
    from nodeflow.engine.executor import Executor

    return name in inspect.signature(Executor.run).parameters


# ---- the sections

def section_machine(bench: Bench) -> None:
    import diffusers

    if bench.device.type == "cuda":
        props = torch.cuda.get_device_properties(bench.device)
        gpu = f"{props.name}, {props.total_memory / GIB:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        gpu = f"no GPU: device {bench.device} ({platform.processor() or platform.machine()}), dry run"
    print(f"machine: {gpu}; torch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"Python {platform.python_version()}; {'scaled-down models' if bench.args.tiny else 'full-size models'}",
          flush=True)


def versus(bench: Bench, kind: str, label: str, build, call) -> None:
    """Ours against a diffusers pipeline on the same file: warm-up each, then alternating runs."""
    load = bench.ensure_loaded(kind)  # our warm-up (it loads the file)
    started = time.perf_counter()
    pipeline = build(bench.checkpoint(kind), bench.args.tiny, bench.folder / f"clip-{kind}", bench.device, bench.dtype)
    print(f"{label}: diffusers' pipeline built from the file in {time.perf_counter() - started:.1f} s", flush=True)
    try:
        runs = alternate(bench, kind, pipeline, call)
        weights = {"ours": load.gpu_bytes, "diffusers": parameter_bytes(pipeline)}
    finally:
        del pipeline
        gc.collect()
        if bench.device.type == "cuda":
            torch.cuda.empty_cache()
    report_versus(bench, kind, label, runs, weights)


def alternate(bench: Bench, kind: str, pipeline, call) -> dict[str, list[Measured]]:
    """diffusers' warm-up (ours had its own), then ours and diffusers by turns, a new prompt and
    seed each time (so the text encoders run too)."""
    call(pipeline, "warm-up", 0, None)
    runs: dict[str, list[Measured]] = {"ours": [], "diffusers": []}
    for run in range(bench.args.runs):
        prompt = f"a photo of an astronaut riding a horse, take {run}"
        runs["ours"].append(bench.run_ours(bench.workflow(kind), prompt, run + 1))
        clock = StepClock(bench.device)
        runs["diffusers"].append(measure(bench.device, partial(call, pipeline, prompt, run + 1, clock), clock))
    return runs


def report_versus(bench: Bench, kind: str, label: str, runs: dict[str, list[Measured]], weights: dict) -> None:
    whole = {side: median([m.seconds for m in measured]) for side, measured in runs.items()}
    step = {side: median([m.per_step for m in measured]) for side, measured in runs.items()}
    save = median([m.result.node_seconds.get("9", 0.0) for m in runs["ours"]])
    print(f"{label}: whole run ours {whole['ours']:.3f} s, diffusers {whole['diffusers']:.3f} s (medians of "
          f"{bench.args.runs}); ratio {whole['ours'] / whole['diffusers']:.2f}; ours includes SaveImage's PNG "
          f"writing, {ms(save)} (diffusers returns PIL images unsaved)", flush=True)
    print(f"{label}: per sampler step ours {ms(step['ours'])}, diffusers {ms(step['diffusers'])}; "
          f"ratio {ratio(step['ours'], step['diffusers'])}", flush=True)
    peak = {}
    if bench.device.type == "cuda":
        for side, measured in runs.items():
            extra = max(m.peak_extra for m in measured)
            peak[side] = (weights[side] or 0) + extra
            print(f"{label}: GPU memory {side}: weights {gib(weights[side])} + at most {gib(extra)} allocated "
                  f"during a run = {gib(peak[side])} (torch.cuda.max_memory_allocated above what was resident)",
                  flush=True)
    else:
        print(f"{label}: GPU memory: not measured on {bench.device}", flush=True)
    goal = {"sd15": "<= 0.7x; < 0.5 s on H100/H200", "sdxl": "<= 0.7x; < 1.5 s on H100/H200"}[kind]
    bench.rows += [(f"{label}, whole run", f"{whole['ours']:.3f} s", f"{whole['diffusers']:.3f} s",
                    f"{whole['ours'] / whole['diffusers']:.2f}", goal),
                   (f"{label}, per step", ms(step["ours"]), ms(step["diffusers"]),
                    ratio(step["ours"], step["diffusers"]), "<= 0.7x")]
    if peak:
        bench.rows.append((f"{label}, peak GPU memory", gib(peak["ours"]), gib(peak["diffusers"]),
                           f"{peak['ours'] / peak['diffusers']:.2f}", "frugal"))


def diffusers_call(bench: Bench, kind: str):
    """pipeline(prompt, seed, clock): diffusers' txt2img at the kind's size, steps and cfg 7."""
    size = bench.size(kind)

    def call(pipeline, prompt: str, seed: int, clock: StepClock | None):
        def on_step(pipe, i, t, kwargs):
            if clock is not None:
                clock.mark()
            return kwargs

        return pipeline(prompt, height=size, width=size, num_inference_steps=bench.steps, guidance_scale=7.0,
                        generator=torch.Generator().manual_seed(seed), callback_on_step_end=on_step).images
    return call


def section_sd15(bench: Bench) -> None:
    label = f"SD1.5 {bench.size('sd15')} px {bench.steps} steps"
    versus(bench, "sd15", label, diffusers_sd15, diffusers_call(bench, "sd15"))


def section_sdxl(bench: Bench) -> None:
    label = f"SDXL {bench.size('sdxl')} px {bench.steps} steps"
    print(f"{label}: diffusers' VAE runs as its default force_upcast makes it: decoded in fp32", flush=True)
    versus(bench, "sdxl", label, diffusers_sdxl, diffusers_call(bench, "sdxl"))


def section_batch(bench: Bench) -> None:
    bench.ensure_loaded("sd15")
    prompt = "a photo of an astronaut riding a horse, batch"  # one prompt: its conditioning is cached
    single, batch = bench.workflow("sd15"), bench.workflow("sd15", batch=4)
    bench.run_ours(batch, prompt, 0)  # warm-up of the batch-4 shapes
    singles, batched = [], []
    for run in range(bench.args.runs):
        seeds = [100 + 10 * run + i for i in range(4)]
        singles.append(sum(bench.run_ours(single, prompt, seed).seconds for seed in seeds))
        batched.append(bench.run_ours(batch, prompt, 200 + run).seconds)
    one_by_one, together = 4 / median(singles), 4 / median(batched)
    label = f"SD1.5 {bench.size('sd15')} px {bench.steps} steps"
    print(f"batch: {label}, batch_size 4 in one run {together:.2f} images/s, 4 runs of batch 1 "
          f"{one_by_one:.2f} images/s (medians of {bench.args.runs}); ratio {together / one_by_one:.2f} (goal >= 2)",
          flush=True)
    bench.rows.append((f"batch 4 vs 4 x batch 1 ({label})", f"{together:.2f} img/s vs {one_by_one:.2f} img/s", "-",
                       f"{together / one_by_one:.2f}", ">= 2x"))


def section_cache(bench: Bench) -> None:
    cuda = bench.device.type == "cuda"
    # a new prompt on the second pass, so each run samples with its model (a full cache hit would not
    # use it); then a new seed alone
    dusk, dawn = "a lighthouse at dusk", "a lighthouse at dawn"
    plan = [("sd15", dusk, 1000), ("sdxl", dusk, 1000), ("sd15", dawn, 1000), ("sdxl", dawn, 1000),
            ("sd15", dawn, 1001)]
    for kind in ("sd15", "sdxl"):  # each file's first load is timed there (section load), not here
        bench.ensure_loaded(kind)
    results = []
    for index, (kind, prompt, seed) in enumerate(plan, start=1):
        measured = bench.run_ours(bench.workflow(kind), prompt, seed)
        result = measured.result
        held = f"{gib(torch.cuda.memory_allocated(bench.device))} allocated" if cuda else "GPU memory n/a on cpu"
        holds = ", ".join(f"{gib(n)} on {dev}" for dev, n in bench.executor.cache.bytes_used().items())
        print(f"cache run {index} {kind} '{prompt}' seed {seed}: {measured.seconds:.3f} s; executed {result.executed}; "
              f"cached {result.cached}; {held}; the cache holds {holds or 'nothing'}", flush=True)
        results.append(result)
    reloaded = [index for index, result in enumerate(results[2:4], start=3) if "4" not in result.cached]
    kept = "yes, the loader came from the cache in runs 3 and 4" if not reloaded else f"no, reloaded in runs {reloaded}"
    print(f"cache: both models stayed loaded: {kept}", flush=True)
    print(f"cache: a new seed re-ran {results[-1].executed} (expected ['3', '8', '9']: KSampler, VAEDecode, "
          f"SaveImage)", flush=True)
    bench.rows.append(("cache: SD1.5/SDXL alternating, then a new seed", f"{kept.split(',')[0]}; new seed ran "
                       f"{', '.join(results[-1].executed)}", "-", "-", "no reload; only 3, 8, 9"))


def section_load(bench: Bench) -> None:
    for kind in ("sd15", "sdxl"):
        load = bench.ensure_loaded(kind)
        during = (f"peak during the first run {gib(load.rss_peak)} (RSS before it {gib(load.rss_before)})"
                  if load.rss_peak is not None else "peak during the load: n/a (cannot reset VmHWM here)")
        if load.loader_seconds is None:
            raise RuntimeError(f"the first run of {kind} took its loader from the cache: no load time")
        print(f"load {kind}: CheckpointLoaderSimple {load.loader_seconds:.2f} s for {gib(load.file_bytes)} "
              f"({load.file_bytes / GIB / load.loader_seconds:.2f} GiB/s; the file is in the page cache, just "
              f"written) to {bench.device}, {gib(load.gpu_bytes)} cached there; first run {load.seconds:.2f} s; "
              f"CPU RSS: {during}, process peak so far {gib(load.lifetime_peak)} (getrusage)", flush=True)
        bench.rows.append((f"load {kind} file ({gib(load.file_bytes)}) to {bench.device}",
                           f"{load.loader_seconds:.2f} s, CPU RSS peak {gib(load.rss_peak or load.lifetime_peak)}",
                           "-", "-", "straight to the GPU, no full CPU copy"))


def section_vram(bench: Bench) -> None:
    if not has_keyword("vram"):
        print("vram: not available: Executor.run has no vram keyword yet", flush=True)
        bench.rows.append(("SDXL --vram low under a 4 GiB cap", "not available", "-", "-", "fits in 4 GiB"))
        return
    bench.free_gpu()  # the cap counts everything this process holds on the GPU
    cuda = bench.device.type == "cuda"
    if cuda:
        total = torch.cuda.get_device_properties(bench.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, 4 * GIB / total), bench.device)
        print(f"vram: capped at 4 GiB of {gib(total)} (set_per_process_memory_fraction)", flush=True)
    else:
        print(f"vram: no memory cap on {bench.device} (CUDA only); the vram='low' path runs uncapped", flush=True)
    executor = bench.new_executor()
    try:
        workflow = bench.workflow("sdxl")
        if cuda:
            torch.cuda.reset_peak_memory_stats(bench.device)
        first = bench.run_ours(workflow, "warm-up, low vram", 0, executor, vram="low")
        runs = [bench.run_ours(workflow, f"a low-vram take {run}", run + 1, executor, vram="low")
                for run in range(max(1, min(2, bench.args.runs)))]
        whole, step = median([m.seconds for m in runs]), median([m.per_step for m in runs])
        peak = torch.cuda.max_memory_allocated(bench.device) if cuda else None
        reserved = torch.cuda.max_memory_reserved(bench.device) if cuda else None
        print(f"vram low: SDXL {bench.size('sdxl')} px {bench.steps} steps: first run (loads) {first.seconds:.2f} s, "
              f"then {whole:.2f} s per run, {ms(step)} per step (median of {len(runs)}); peak GPU memory "
              f"{gib(peak)} allocated, {gib(reserved)} reserved", flush=True)
        bench.rows.append(("SDXL --vram low under a 4 GiB cap", f"{whole:.2f} s/run, {ms(step)}/step, peak {gib(peak)}",
                           "-", "-", "fits in 4 GiB"))
    finally:
        executor.clear_cache()
        del executor
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1.0, bench.device)


def section_compile(bench: Bench) -> None:
    if not has_keyword("compile"):
        print("compile: not available: Executor.run has no compile keyword yet", flush=True)
        bench.rows.append(("SD1.5 --compile", "not available", "-", "-", "optional speed-up"))
        return
    bench.ensure_loaded("sd15")
    plain = [bench.run_ours(bench.workflow("sd15"), f"plain take {run}", run + 1).seconds
             for run in range(bench.args.runs)]
    executor = bench.new_executor()  # its own loaded model: compiling must not touch the shared one
    try:
        workflow = bench.workflow("sd15")
        first = bench.run_ours(workflow, "warm-up, compiled", 0, executor, compile=True)
        compiled = [bench.run_ours(workflow, f"compiled take {run}", run + 1, executor, compile=True)
                    for run in range(bench.args.runs)]
    finally:
        executor.clear_cache()
        del executor
        gc.collect()
    steady, uncompiled = median([m.seconds for m in compiled]), median(plain)
    step = median([m.per_step for m in compiled])
    label = f"SD1.5 {bench.size('sd15')} px {bench.steps} steps"
    print(f"compile: {label}: first run {first.seconds:.2f} s (loading and compiling), then {steady:.3f} s per run "
          f"({ms(step)} per step), uncompiled {uncompiled:.3f} s (medians of {bench.args.runs}); "
          f"ratio {steady / uncompiled:.2f}", flush=True)
    bench.rows.append((f"{label}, --compile (vs ours uncompiled)", f"{steady:.3f} s (first {first.seconds:.1f} s)",
                       f"{uncompiled:.3f} s (ours)", f"{steady / uncompiled:.2f}", "optional; < 1"))


def section_summary(bench: Bench) -> None:
    if bench.device.type == "cuda":
        name = torch.cuda.get_device_name(bench.device)
    else:
        name = f"{bench.device} (a dry run: no GPU figures)"
    lines = [f"GPU figures on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}:", "",
             "| what | ours | diffusers | ratio | goal |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in bench.rows]
    print("\n".join(lines), flush=True)


# ---- the driver

RUNNERS = {"sd15": section_sd15, "sdxl": section_sdxl, "batch": section_batch, "cache": section_cache,
           "load": section_load, "vram": section_vram, "compile": section_compile}


def run_section(name: str, runner, bench: Bench, deadline: float = float("inf")) -> None:
    """One section, unless the clock is past ``deadline`` (perf_counter seconds); a failure prints
    one line (type and message) and the run goes on."""
    if time.perf_counter() > deadline:
        print(f"{name}: skipped: past the --deadline of {bench.args.deadline:.0f} s", flush=True)
        return
    try:
        runner(bench)
    except Exception as error:  # noqa: BLE001 - one failure must not cost the other figures
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"{name}: failed: {type(error).__name__}: {message}", flush=True)
        traceback.print_exc(file=sys.stderr)
        gc.collect()
        if bench.device.type == "cuda":
            torch.cuda.empty_cache()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="scaled-down models at 64 px, 3 steps (a dry run)")
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (medians)")
    parser.add_argument("--deadline", type=float, default=480.0,
                        help="seconds after which sections not yet started are skipped")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {','.join(SECTIONS)}")
    args.sections = [name for name in SECTIONS if name in chosen]
    return args


def main() -> None:
    args = parse()
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(f"no CUDA GPU here (torch {torch.__version__}): no GPU figures; a dry run: --device cpu --tiny")
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nodeflow-bench-gpu-") as folder:
        bench = Bench(args, Path(folder))
        run_section("machine", section_machine, bench)
        for name in args.sections:
            run_section(name, RUNNERS[name], bench, started + args.deadline)
        bench.free_gpu()
        run_section("summary", section_summary, bench)
    print(f"total: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
