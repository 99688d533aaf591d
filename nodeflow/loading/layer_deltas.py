"""What one layer of a LoRA-family file adds to a weight: LoRA and LoCon (with LyCORIS' Tucker
``lora_mid``), LoHa (Hadamard product of two low-rank pairs), LoKr (Kronecker product), full
``diff`` layers, and DoRA's weight decomposition (``dora_scale``) over any of them.

A layer is a dict of its tensors by key suffix (``lora_up.weight``, ``hada_w1_a``, ``lokr_w1``,
``alpha`` ...). ``LayerDelta.new_weight(weight)`` gives the patched weight for the model's current
weight, computing in float32; the formulas are LyCORIS' (``lycoris.functional``), which is the
test reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nodeflow.errors import ModelFileError

LORA = ("lora_up.weight", "lora_down.weight", "lora_mid.weight")
LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2")
LOKR = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")
FULL = ("diff", "diff_b")
SUFFIXES = LORA + LOHA + LOKR + FULL + ("alpha", "dora_scale")


def layer_kind(tensors: dict[str, torch.Tensor]) -> str | None:
    """lora | loha | lokr | full, or None when the layer's tensors are incomplete."""
    if "lora_up.weight" in tensors and "lora_down.weight" in tensors:
        return "lora"
    if all(k in tensors for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")):
        return "loha"
    if ("lokr_w1" in tensors or {"lokr_w1_a", "lokr_w1_b"} <= tensors.keys()) and \
            ("lokr_w2" in tensors or {"lokr_w2_a", "lokr_w2_b"} <= tensors.keys()):
        return "lokr"
    if "diff" in tensors:
        return "full"
    return None


def _tucker(core: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A Tucker-factored kernel: core (r, r, kh, kw) between a (out, r) and b (r, in)."""
    return torch.einsum("ijkl,jr,ip->prkl", core, b, a)


def _rank_scale(tensors: dict, rank: int | None) -> float:
    if "alpha" not in tensors or not rank:
        return 1.0
    return float(tensors["alpha"]) / rank


def _f32(tensors: dict, key: str, device) -> torch.Tensor:
    return tensors[key].to(device, torch.float32)


def _difference(kind: str, t: dict, shape: torch.Size, device) -> torch.Tensor:
    """The unscaled-by-strength difference for a weight of ``shape`` (alpha / rank applied)."""
    def get(key):
        return _f32(t, key, device)

    if kind == "lora":
        up, down = get("lora_up.weight"), get("lora_down.weight")
        if "lora_mid.weight" in t:  # Tucker LoCon: up (out, r), mid (r, r, kh, kw), down (r, in)
            product = torch.einsum("or,rshw,si->oihw", up.flatten(1), get("lora_mid.weight"), down.flatten(1))
        else:
            product = up.flatten(1) @ down.flatten(1)
        return product.reshape(shape) * _rank_scale(t, down.shape[0])
    if kind == "loha":
        rank = t["hada_w1_b"].shape[0]
        if "hada_t1" in t and "hada_t2" in t:
            w1 = _tucker(get("hada_t1"), get("hada_w1_b"), get("hada_w1_a"))
            w2 = _tucker(get("hada_t2"), get("hada_w2_b"), get("hada_w2_a"))
        else:
            w1 = get("hada_w1_a") @ get("hada_w1_b")
            w2 = get("hada_w2_a") @ get("hada_w2_b")
        return (w1 * w2).reshape(shape) * _rank_scale(t, rank)
    if kind == "lokr":
        rank = t["lokr_w1_b"].shape[0] if "lokr_w1_b" in t else t["lokr_w2_b"].shape[0] if "lokr_w2_b" in t else None
        w1 = get("lokr_w1") if "lokr_w1" in t else get("lokr_w1_a") @ get("lokr_w1_b")
        if "lokr_w2" in t:
            w2 = get("lokr_w2")
        elif "lokr_t2" in t:
            w2 = _tucker(get("lokr_t2"), get("lokr_w2_b"), get("lokr_w2_a"))
        else:
            w2 = get("lokr_w2_a") @ get("lokr_w2_b")
            if len(shape) == 4:  # a conv kernel factored as (out2, in2 * kh * kw)
                w2 = w2.reshape(w2.shape[0], -1, *shape[2:])
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        return torch.kron(w1.contiguous(), w2.contiguous()).reshape(shape) * _rank_scale(t, rank)
    return get("diff").reshape(shape)


@dataclass(frozen=True, eq=False)
class LayerDelta:
    """One parameter's patch: ``tensors`` of one layer (by suffix), of ``kind``, at ``strength``.
    ``bias``: the patch is the layer's ``diff_b`` for the bias parameter."""

    parameter: str  # the module's parameter name, e.g. "input_blocks.1.1.proj_in.weight"
    kind: str
    tensors: dict
    strength: float
    bias: bool = False

    def new_weight(self, weight: torch.Tensor) -> torch.Tensor:
        device = weight.device
        if self.bias:
            return weight + (_f32(self.tensors, "diff_b", device) * self.strength).to(weight.dtype)
        difference = _difference(self.kind, self.tensors, weight.shape, device)
        if "dora_scale" not in self.tensors:
            return weight + (difference * self.strength).to(weight.dtype)
        return self._decomposed(weight, difference)

    def _decomposed(self, weight: torch.Tensor, difference: torch.Tensor) -> torch.Tensor:
        """DoRA: the merged weight rescaled per output (or input) channel to ``dora_scale`` norms;
        the strength blends the rescaling (1 + strength * (scale - 1)), as LyCORIS does."""
        merged = weight.float() + difference
        dora = _f32(self.tensors, "dora_scale", weight.device)
        if dora.shape[0] == weight.shape[0] and dora.numel() == weight.shape[0]:  # per output channel
            norm = merged.reshape(merged.shape[0], -1).norm(dim=1).reshape(dora.shape)
        else:  # per input channel
            norm = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1).reshape(dora.shape)
        scale = dora / (norm + torch.finfo(torch.float32).eps)
        scale = self.strength * (scale - 1) + 1
        return (merged * scale).to(weight.dtype)

    def check(self, source: str, name: str, weight: torch.Tensor, family: str = "") -> None:
        """Refuse, naming the file and the layer, a layer whose shapes do not make the model's
        weight (a file for another model family) or whose values are not finite."""
        if not self._fits(weight):
            shapes = " x ".join(str(tuple(v.shape)) for k, v in self.tensors.items() if k not in ("alpha", "dora_scale"))
            model = f"this {family} model's" if family else "the model's"
            raise ModelFileError(f"{source}: layer {name} is {shapes}, but {model} weight there is "
                                 f"{tuple(weight.shape)}: a LoRA made for another model family "
                                 "(e.g. an SD1.x LoRA on an SDXL model)?")
        if not all(torch.isfinite(v).all() for v in self.tensors.values() if v.is_floating_point()):
            raise ModelFileError(f"{source}: layer {name} holds values that are not finite (NaN or inf)")

    def _fits(self, weight: torch.Tensor) -> bool:
        t = self.tensors
        if self.bias:
            return t["diff_b"].numel() == weight.numel()
        if self.kind == "lora" and "lora_mid.weight" not in t:  # up and down must each match their side
            up, down = t["lora_up.weight"], t["lora_down.weight"]
            return up.ndim >= 2 and down.ndim >= 2 and up.shape[1] == down.shape[0] \
                and (up.shape[0], down[0].numel()) == (weight.shape[0], weight[0].numel())
        try:  # on the meta device: shapes only, nothing computed
            return _difference(self.kind, t, weight.shape, "meta").shape == weight.shape
        except (RuntimeError, ValueError, IndexError):
            return False
