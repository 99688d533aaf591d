"""AUTOMATIC1111-style "parameters" text for saved images, derived from a workflow, and parsed back.

    a red circle on a blue background
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5

Values come from the workflow's first sampler (KSampler or KSamplerAdvanced): the prompts are the
CLIPTextEncode texts reached by following its positive and negative links (through conditioning
nodes), the size is EmptyLatentImage's (through latent nodes), the model name is the
CheckpointLoaderSimple's ``ckpt_name`` reached from its model link, "Clip skip" comes from a
CLIPSetLastLayer on the way from the prompt to the checkpoint. A value containing a comma, colon
or quote is written as a JSON string, as A1111 does; ``parse_a1111_parameters`` reads it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePath
from typing import Any

from nodeflow.engine.workflow import Link, NodeInstance, Workflow, node_id_order
from nodeflow.runtime.atomic import write_text_atomic

SAMPLERS = ("KSampler", "KSamplerAdvanced")
# ComfyUI sampler name -> A1111 sampler name (A1111 appends the scheduler, e.g. "DPM++ 2M Karras").
SAMPLER_NAMES = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE", "ddim": "DDIM",
    "lcm": "LCM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC", "ipndm": "IPNDM", "deis": "DEIS",
    "ddpm": "DDPM", "restart": "Restart",
}
SCHEDULER_SUFFIX = {"karras": " Karras", "exponential": " Exponential", "sgm_uniform": " SGM Uniform"}
# Input names along which prompts, latents and models travel through intermediate nodes.
CONDITIONING_INPUTS = ("conditioning", "conditioning_1", "conditioning_to", "positive")
LATENT_INPUTS = ("samples", "latent_image", "samples_to", "samples1", "destination")
MODEL_INPUTS = ("model",)
CLIP_INPUTS = ("clip",)
_FIELD = re.compile(r'\s*([\w][\w \-/+]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def a1111_settings(workflow: Workflow, size: tuple[int, int] | None = None, *,
                   model_hash: str | None = None, links: list[Link] | None = None) -> dict[str, str] | None:
    """The A1111 fields of the workflow's first sampler, or None when it has no sampler.

    Keys: ``prompt``, ``negative_prompt``, then A1111's field names in A1111's order ("Steps",
    "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "Clip skip", "Denoising
    strength"), values as text. ``size`` (width, height) overrides the latent's size;
    ``links`` (e.g. with bypassed nodes routed through) replaces ``workflow.links``.
    """
    graph = _Graph(workflow, workflow.links if links is None else links)
    sampler = next((workflow.nodes[i] for i in sorted(workflow.nodes, key=node_id_order)
                    if workflow.nodes[i].type in SAMPLERS and workflow.nodes[i].mode == "normal"), None)
    if sampler is None:
        return None
    values = sampler.inputs
    settings = {"prompt": graph.prompt(sampler.id, "positive"),
                "negative_prompt": graph.prompt(sampler.id, "negative")}
    if "steps" in values:
        settings["Steps"] = _text(values["steps"])
    if "sampler_name" in values:
        name = SAMPLER_NAMES.get(values["sampler_name"], values["sampler_name"])
        settings["Sampler"] = name + SCHEDULER_SUFFIX.get(values.get("scheduler"), "")
    if "cfg" in values:
        settings["CFG scale"] = _text(values["cfg"])
    seed = values.get("seed", values.get("noise_seed"))
    if seed is not None:
        settings["Seed"] = _text(seed)
    if size is None:
        latent = graph.upstream(sampler.id, "latent_image", {"EmptyLatentImage"}, LATENT_INPUTS)
        if latent is not None and "width" in latent.inputs and "height" in latent.inputs:
            size = (latent.inputs["width"], latent.inputs["height"])
    if size is not None:
        settings["Size"] = f"{size[0]}x{size[1]}"
    if model_hash:
        settings["Model hash"] = model_hash
    checkpoint = graph.upstream(sampler.id, "model", {"CheckpointLoaderSimple"}, MODEL_INPUTS)
    if checkpoint is not None and checkpoint.inputs.get("ckpt_name"):
        settings["Model"] = PurePath(str(checkpoint.inputs["ckpt_name"]).replace("\\", "/")).stem
    clip_skip = graph.clip_skip(sampler.id)
    if clip_skip:
        settings["Clip skip"] = str(clip_skip)
    if values.get("denoise", 1.0) != 1.0:
        settings["Denoising strength"] = _text(values["denoise"])
    return settings


def parameters_text(workflow: Workflow, size: tuple[int, int] | None = None, *,
                    model_hash: str | None = None, links: list[Link] | None = None) -> str | None:
    """The A1111 "parameters" text for the workflow's first sampler, or None without one."""
    settings = a1111_settings(workflow, size, model_hash=model_hash, links=links)
    return format_a1111_parameters(settings) if settings is not None else None


def format_a1111_parameters(settings: dict[str, str]) -> str:
    """``{"prompt", "negative_prompt", field: value...}`` as A1111's three-part text."""
    lines = [settings.get("prompt", "")]
    if settings.get("negative_prompt"):
        lines.append(f"Negative prompt: {settings['negative_prompt']}")
    fields = [f"{key}: {_quote(str(value))}" for key, value in settings.items()
              if key not in ("prompt", "negative_prompt")]
    lines.append(", ".join(fields))
    return "\n".join(lines)


def parse_a1111_parameters(text: str) -> dict[str, str]:
    """A1111 "parameters" text back into ``{"prompt", "negative_prompt", field: value...}``.

    The last line holds the ``Key: value`` fields when it starts with one and has at least three
    (A1111's own rule, stricter about the start); lines before it are the prompt, up to a line starting "Negative prompt:", which starts
    the negative prompt. Quoted values are unquoted.
    """
    lines = text.rstrip("\n").split("\n")
    fields: dict[str, str] = {}
    if lines and _FIELD.match(lines[-1]) and len(_FIELD.findall(lines[-1])) >= 3:
        for key, value in _FIELD.findall(lines.pop()):
            fields[key.strip()] = _unquote(value.strip())
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip(" ")
        (negative if in_negative else prompt).append(line)
    return {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative), **fields}


parse_parameters = parse_a1111_parameters  # the name the first version used


def workflow_from_a1111(text: str, checkpoint_extension: str = ".safetensors") -> Workflow:
    """A txt2img workflow (ComfyUI's default graph) with the settings of an A1111 text.

    The sampler name is split back into ComfyUI's sampler and scheduler ("DPM++ 2M Karras" ->
    dpmpp_2m, karras); "Clip skip: 2" adds a CLIPSetLastLayer (-2); "Model: name" becomes the
    checkpoint ``name + checkpoint_extension``. A1111 weighs prompts and draws noise its own way,
    so the image is alike, not identical. Raises ValueError when the text has no "Steps" field.
    """
    fields = parse_a1111_parameters(text)
    if "Steps" not in fields:
        raise ValueError("not A1111 generation parameters (no 'Steps' field)")
    sampler, scheduler = _comfy_sampler(fields.get("Sampler", "Euler"), fields.get("Schedule type"))
    width, height = (int(v) for v in fields.get("Size", "512x512").split("x"))
    nodes = {
        "3": NodeInstance("3", "KSampler", {"seed": int(fields.get("Seed", 0)), "steps": int(fields["Steps"]),
                                            "cfg": float(fields.get("CFG scale", 7)), "sampler_name": sampler,
                                            "scheduler": scheduler, "denoise": 1.0}),
        "4": NodeInstance("4", "CheckpointLoaderSimple",
                          {"ckpt_name": fields.get("Model", "model") + checkpoint_extension}),
        "5": NodeInstance("5", "EmptyLatentImage", {"width": width, "height": height, "batch_size": 1}),
        "6": NodeInstance("6", "CLIPTextEncode", {"text": fields["prompt"]}),
        "7": NodeInstance("7", "CLIPTextEncode", {"text": fields["negative_prompt"]}),
        "8": NodeInstance("8", "VAEDecode"),
        "9": NodeInstance("9", "SaveImage", {"filename_prefix": "nodeflow"}),
    }
    clip = ("4", 1)
    if int(fields.get("Clip skip", 1)) > 1:
        nodes["10"] = NodeInstance("10", "CLIPSetLastLayer", {"stop_at_clip_layer": -int(fields["Clip skip"])})
        clip = ("10", 0)
    wiring = [("4", 0, "3", "model"), ("6", 0, "3", "positive"), ("7", 0, "3", "negative"),
              ("5", 0, "3", "latent_image"), (*clip, "6", "clip"), (*clip, "7", "clip"),
              ("3", 0, "8", "samples"), ("4", 2, "8", "vae"), ("8", 0, "9", "images")]
    if "10" in nodes:
        wiring.append(("4", 1, "10", "clip"))
    return Workflow(nodes, [Link(*wire) for wire in wiring])


def _comfy_sampler(name: str, schedule_type: str | None) -> tuple[str, str]:
    """A1111 sampler (and A1111 >= 1.9 "Schedule type") -> ComfyUI sampler_name, scheduler."""
    scheduler = "normal"
    for comfy_scheduler, suffix in SCHEDULER_SUFFIX.items():
        if name.endswith(suffix):
            name, scheduler = name[: -len(suffix)], comfy_scheduler
    if schedule_type:
        scheduler = {"karras": "karras", "exponential": "exponential", "sgm uniform": "sgm_uniform"}.get(
            schedule_type.lower(), "normal")
    reverse = {}
    for comfy_name, a1111_name in SAMPLER_NAMES.items():
        reverse.setdefault(a1111_name, comfy_name)  # the first (non-GPU) variant wins
    return reverse.get(name, name), scheduler


def model_hash(path: str | os.PathLike) -> str:
    """A1111's "Model hash" (its "AutoV2" short hash): the first 10 hex digits of the file's SHA-256.

    Reads the whole file (seconds for a 2 GB checkpoint): callers should cache it.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def cached_model_hash(path: Path, cache_file: Path) -> str:
    """``model_hash(path)``, kept in the JSON file ``cache_file`` by path, size and modification
    time (hashing reads the whole file); the cache is rewritten atomically, so concurrent runs
    never read half a file."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = model_hash(path)
        write_text_atomic(cache_file, json.dumps(cache, sort_keys=True))
    return cache[key]


class _Graph:
    """Walks a workflow backwards along links, as the A1111 fields need."""

    def __init__(self, workflow: Workflow, links: list[Link]) -> None:
        self.nodes = workflow.nodes
        self.into = {(link.dst, link.dst_input): link for link in links}

    def upstream(self, node_id: str, input_name: str, wanted: set[str], through: tuple[str, ...],
                 depth: int = 0) -> NodeInstance | None:
        """The first node of a ``wanted`` type feeding ``input_name``, via ``through`` inputs."""
        link = self.into.get((node_id, input_name))
        if link is None or depth > 32 or link.src not in self.nodes:
            return None
        source = self.nodes[link.src]
        if source.type in wanted:
            return source
        for name in through:
            found = self.upstream(source.id, name, wanted, through, depth + 1)
            if found is not None:
                return found
        return None

    def prompt(self, sampler_id: str, input_name: str) -> str:
        encoder = self.upstream(sampler_id, input_name, {"CLIPTextEncode"}, CONDITIONING_INPUTS)
        return str(encoder.inputs.get("text", "")) if encoder is not None else ""

    def clip_skip(self, sampler_id: str) -> int | None:
        """A1111's "Clip skip" (2 for ``stop_at_clip_layer`` -2) of the positive prompt's encoder."""
        encoder = self.upstream(sampler_id, "positive", {"CLIPTextEncode"}, CONDITIONING_INPUTS)
        if encoder is None:
            return None
        last_layer = self.upstream(encoder.id, "clip", {"CLIPSetLastLayer"}, CLIP_INPUTS)
        layer = last_layer.inputs.get("stop_at_clip_layer") if last_layer is not None else None
        return -int(layer) if isinstance(layer, int) and layer < -1 else None


def _text(value: Any) -> str:
    """Numbers as A1111 writes them: 7.0 -> "7", 0.55 -> "0.55"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:"\n') else value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
