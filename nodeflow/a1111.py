"""AUTOMATIC1111-style "parameters" text for saved images, derived from a workflow.

    a red circle on a blue background
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 42, Size: 512x512, Model: sd15

Values come from the first KSampler: its prompts (CLIPTextEncode texts on the positive and
negative links), the latent size (EmptyLatentImage), the checkpoint name (CheckpointLoaderSimple).
"""

from __future__ import annotations

import re
from pathlib import PurePath

from nodeflow.workflow import Workflow

SAMPLER_NAMES = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_3m_sde": "DPM++ 3M SDE", "ddim": "DDIM", "lcm": "LCM",
    "uni_pc": "UniPC", "ipndm": "IPNDM", "deis": "DEIS", "ddpm": "DDPM",
}
SCHEDULER_SUFFIX = {"karras": " Karras", "exponential": " Exponential", "sgm_uniform": " SGM Uniform"}


def _upstream(workflow: Workflow, node_id: str, input_name: str, wanted: set[str], depth: int = 0):
    link = workflow.input_link(node_id, input_name)
    if link is None or depth > 16:
        return None
    node = workflow.nodes.get(link.src)
    if node is None:
        return None
    if node.type in wanted:
        return node
    for name in ("conditioning", "conditioning_1", "conditioning_to", "samples", "model", "clip",
                 "latent_image", "positive"):
        found = _upstream(workflow, link.src, name, wanted, depth + 1)
        if found is not None:
            return found
    return None


def parameters_text(workflow: Workflow, size: tuple[int, int] | None = None) -> str | None:
    """The A1111 text for the workflow's first sampler, or None when there is none."""
    sampler = next((n for n in workflow.nodes.values() if n.type in ("KSampler", "KSamplerAdvanced")), None)
    if sampler is None:
        return None
    values = sampler.inputs

    def prompt(name: str) -> str:
        node = _upstream(workflow, sampler.id, name, {"CLIPTextEncode"})
        return str(node.inputs.get("text", "")) if node else ""

    lines = [prompt("positive")]
    negative = prompt("negative")
    if negative:
        lines.append(f"Negative prompt: {negative}")
    fields = []
    if "steps" in values:
        fields.append(f"Steps: {values['steps']}")
    if "sampler_name" in values:
        name = SAMPLER_NAMES.get(values["sampler_name"], values["sampler_name"])
        fields.append(f"Sampler: {name}{SCHEDULER_SUFFIX.get(values.get('scheduler'), '')}")
    if "cfg" in values:
        fields.append(f"CFG scale: {values['cfg']}")
    seed = values.get("seed", values.get("noise_seed"))
    if seed is not None:
        fields.append(f"Seed: {seed}")
    if size is None:
        latent = _upstream(workflow, sampler.id, "latent_image", {"EmptyLatentImage"})
        if latent is not None and "width" in latent.inputs:
            size = (latent.inputs["width"], latent.inputs.get("height", latent.inputs["width"]))
    if size is not None:
        fields.append(f"Size: {size[0]}x{size[1]}")
    checkpoint = _upstream(workflow, sampler.id, "model", {"CheckpointLoaderSimple"})
    if checkpoint is not None and checkpoint.inputs.get("ckpt_name"):
        fields.append(f"Model: {PurePath(str(checkpoint.inputs['ckpt_name'])).stem}")
    if values.get("denoise", 1.0) != 1.0:
        fields.append(f"Denoising strength: {values['denoise']}")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict:
    """The A1111 text back into {"prompt", "negative_prompt", and each "Key: value" field}."""
    lines = text.strip().split("\n")
    result: dict = {"prompt": "", "negative_prompt": ""}
    fields_line = lines[-1] if lines and re.match(r"^\w[\w ]*: ", lines[-1]) and "Steps:" in lines[-1] else ""
    body = lines[:-1] if fields_line else lines
    prompt, negative, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            negative.append(line[len("Negative prompt:"):].strip())
        elif in_negative:
            negative.append(line)
        else:
            prompt.append(line)
    result["prompt"], result["negative_prompt"] = "\n".join(prompt), "\n".join(negative)
    for key, value in re.findall(r"\s*([\w ]+): ([^,]+)(?:,|$)", fields_line):
        result[key.strip()] = value.strip()
    return result
