"""Classifier-free guidance over conditioning lists (Ho & Salimans 2022, "Classifier-Free
Diffusion Guidance"), combining entries the way ComfyUI does.

For each list (positive, negative) every entry active at the current sigma predicts the denoised
latent D_i on its area, with a weight map m_i: its strength times its mask (times mask_strength),
or, for a plain area, the strength with its inner borders feathered linearly over
min(8, size / 4) latent pixels. The list's prediction is

    D = sum_i m_i D_i / (1e-37 + sum_i m_i)      (pixels no entry covers predict 0)

and the guided prediction is  uncond + cfg * (cond - uncond);  cfg == 1 skips the negative list
(unless the model's patches read it: ``uncond_at_cfg1``). The model's post-guidance functions may
ask for a list's prediction again, for another latent or a differently patched model (PAG, SAG):
``predictor`` answers them through ``predict`` itself, so they see the same areas, masks,
ControlNets and ADM vectors. Each denoiser holds the ``run_state`` dict of its sampling run, which
the model's U-Net hooks and post-guidance functions share (SAG's attention map).

Entries whose crops have the same size and share the same ControlNet chain (and have no GLIGEN
boxes, whose forwards run alone, as ComfyUI's) run in one batched forward (positive and negative
together, negative first as in ComfyUI) when memory allows: if that forward runs out of memory,
the step is retried with one forward per entry, and the rest of the sampling keeps to separate
forwards. Contexts of different
token lengths (77 vs 154) are brought to their least common multiple by repeating the tokens,
which leaves cross-attention unchanged, when that at most quadruples the shorter one (as
ComfyUI); otherwise they run apart. For SDXL models each entry also carries its ADM vector ``y``
(pooled text and sizes, nodeflow.sampling.adm), batched alongside its context and given to the
U-Net and its ControlNets. Area and mask entries are resolved once per latent size by
nodeflow.sampling.conditioning (which also gives the negative a counterpart of each positive
area, as ComfyUI does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nodeflow.runtime.devices import is_out_of_memory
from nodeflow.sampling.conditioning import Area, Entry, pair_areas, resolve, share_control
from nodeflow.sampling.model import DiffusionModel, Repredict

FEATHER = 8  # at most this many latent pixels of linear ramp at an area's inner borders
MAX_TOKEN_REPEAT = 4  # ComfyUI's limit on padding contexts by repetition
EMPTY_WEIGHT = 1e-37  # the weight sum's start: uncovered pixels divide 0 by it


@dataclass(frozen=True, eq=False)
class _Job:
    """One active entry to evaluate this step."""

    which: int  # index of the list: 0 positive, 1 negative
    area: Area  # clipped to the latent, (h, w, y, x)
    weight: torch.Tensor  # (B, 1, h, w)
    entry: Entry


class CFGDenoiser:
    """``denoise(x, sigma)`` for the samplers: guidance over positive and negative lists.

    ``concat`` holds extra model input channels (the inpainting model's mask and masked latent),
    (B, c, h, w) on the latent grid; it is cropped with each entry's area. ``max_batch`` caps the
    images per model call (memory); by default every compatible entry runs in one call, and a
    call that runs out of memory (``is_out_of_memory``) switches to one entry per call for good
    (``separate``).
    """

    def __init__(self, model: DiffusionModel, positive: list, negative: list, cfg: float,
                 concat: torch.Tensor | None = None, max_batch: int | None = None) -> None:
        self.model, self.positive, self.negative, self.cfg = model, positive, negative, float(cfg)
        self.concat, self.max_batch = concat, max_batch
        self.uncond_record = None  # a CFG++ sampler's UncondRecord: filled at every call, even at cfg 1
        self.separate = False  # set when a batched forward ran out of memory: one entry per call since
        self.calls = 0  # model forwards so far (tests, statistics)
        self.run_state: dict = {}  # this run's state of the model's patches (nodeflow.sampling.model.GuidanceStep)
        self.seed = 0  # the sampler's noise seed (unCLIP's ADM noise), set by the sampling run before the first step
        self._entries: dict[tuple[int, int], list[list[Entry]]] = {}
        self._weights: dict[tuple, torch.Tensor] = {}  # weight maps per entry and latent shape

    def entries(self, height: int, width: int) -> list[list[Entry]]:
        """The resolved positive and negative entries for a latent of this size (cached)."""
        key = (height, width)
        if key not in self._entries:
            positive = resolve(self.positive, height, width, self.model, seed=self.seed)
            negative = resolve(self.negative, height, width, self.model, negative=True, seed=self.seed)
            positive, negative = pair_areas([positive, negative])
            self._entries[key] = [positive, share_control(positive, negative)]
        return self._entries[key]

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        lists = self.entries(*x.shape[-2:])
        if math.isclose(self.cfg, 1.0) and self.uncond_record is None and not self.model.uncond_at_cfg1:
            cond = self.predict(x, sigma, lists[:1])[0]
            if not self.model.patches_guidance:
                return cond
            uncond = torch.zeros_like(cond)  # skipped at cfg 1, as ComfyUI does (it then passes zeros)
        else:
            cond, uncond = self.predict(x, sigma, lists)
            if self.uncond_record is not None:
                self.uncond_record.value = uncond
        return self.model.guide(x, sigma, cond, uncond, self.cfg, predict=self.predictor(sigma, lists),
                                run_state=self.run_state, has_negative=bool(self.negative))

    def predictor(self, sigma: torch.Tensor, lists: list[list[Entry]]) -> Repredict:
        """predict(which, x, model): list ``which`` of ``lists`` alone, predicted for x at ``sigma``
        by ``model`` (post-guidance functions evaluating the model again)."""

        def predict(which: int, x: torch.Tensor, model: DiffusionModel) -> torch.Tensor:
            return self.predict(x, sigma, [lists[which]], model)[0]

        return predict

    def predict(self, x: torch.Tensor, sigma: torch.Tensor, lists: list[list[Entry]],
                model: DiffusionModel | None = None) -> list[torch.Tensor]:
        """Each list's combined prediction for x (B, C, h, w) at sigma (B,), by ``model`` (default:
        the guidance's; another is a differently patched copy of it). The forwards tell the U-Net's
        hooks each chunk's list index in ``lists`` (``cond_or_uncond``)."""
        model = self.model if model is None else model
        sums = [torch.zeros_like(x) for _ in lists]  # (B, C, h, w)
        counts = [torch.full_like(x, EMPTY_WEIGHT) for _ in lists]
        for group in _batches(self._jobs(x, float(sigma[0]), lists)):
            start = 0
            while start < len(group):  # the chunk size drops to 1 once a forward ran out of memory
                chunk = group[start:start + self._jobs_per_call(len(group), len(x))]
                self._run(model, x, sigma, chunk, sums, counts)
                start += len(chunk)
        return [s / c for s, c in zip(sums, counts)]

    def _jobs_per_call(self, group: int, images: int) -> int:
        """How many of a group's jobs (``images`` images each) go into one model call."""
        if self.separate:
            return 1
        return group if self.max_batch is None else max(1, self.max_batch // images)

    def _run(self, model: DiffusionModel, x: torch.Tensor, sigma: torch.Tensor, batch: list[_Job],
             sums: list[torch.Tensor], counts: list[torch.Tensor]) -> None:
        """Accumulate a batch of jobs; if its batched forward runs out of memory, run them one by
        one instead (nothing was accumulated: the error comes from the model call, before)."""
        if len(batch) > 1:
            try:
                self._accumulate(model, x, sigma, batch, sums, counts)
                return
            except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(error):
                    raise
            self.separate = True  # outside the except block: its traceback no longer holds tensors
            _release_cached_memory(x.device)
        for job in batch:
            self._accumulate(model, x, sigma, [job], sums, counts)

    def _jobs(self, x: torch.Tensor, sigma: float, lists: list[list[Entry]]) -> list[_Job]:
        """The entries active at ``sigma``, with their clipped areas and (cached) weight maps."""
        batch, _, height, width = x.shape
        jobs = []
        for which, entries in enumerate(lists):
            for entry in entries:
                if not entry.active(sigma):
                    continue
                area = clip_area(entry.area, height, width)
                key = (id(entry), batch, height, width, x.device)
                if key not in self._weights:
                    self._weights[key] = entry_weight(entry, area, batch, height, width).to(x.device)
                jobs.append(_Job(which, area, self._weights[key], entry))
        return jobs

    def _accumulate(self, model: DiffusionModel, x: torch.Tensor, sigma: torch.Tensor, batch: list[_Job],
                    sums: list[torch.Tensor], counts: list[torch.Tensor]) -> None:
        """Run one batch and add its weighted predictions and weights into the lists' sums."""
        for job, prediction in zip(batch, self._forward(model, x, sigma, batch)):
            h, w, y, x0 = job.area
            sums[job.which][:, :, y:y + h, x0:x0 + w] += prediction * job.weight
            counts[job.which][:, :, y:y + h, x0:x0 + w] += job.weight

    def _forward(self, model: DiffusionModel, x: torch.Tensor, sigma: torch.Tensor,
                 batch: list[_Job]) -> tuple[torch.Tensor, ...]:
        """One model call for jobs with equal crop sizes; one prediction per job."""
        size = x.shape[0]
        crops = [x[:, :, y:y + h, x0:x0 + w] for h, w, y, x0 in (job.area for job in batch)]
        tokens = math.lcm(*(job.entry.context.shape[1] for job in batch))
        contexts = [_context(job.entry.context, size, tokens) for job in batch]  # (B, tokens, D) each
        concat = None
        if self.concat is not None:
            concat = torch.cat([self.concat[:, :, y:y + h, x0:x0 + w] for h, w, y, x0 in (j.area for j in batch)])
        adm = None
        if batch[0].entry.y is not None:  # SDXL: each entry's ADM vector, repeated to the batch
            adm = torch.cat([_repeat_to(job.entry.y, size) for job in batch])  # (n B, adm)
        out = model.predict_denoised(torch.cat(crops), sigma.repeat(len(batch)), torch.cat(contexts),
                                     control=batch[0].entry.control, concat=concat, halves=len(batch), y=adm,
                                     cond_or_uncond=tuple(job.which for job in batch),
                                     run_state=self.run_state, gligen=batch[0].entry.gligen)  # (n B, C, h, w)
        self.calls += 1
        return out.chunk(len(batch))


def _release_cached_memory(device: torch.device) -> None:
    """Give the CUDA caching allocator's free blocks back before retrying smaller forwards."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _batches(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped for batched forwards, in ComfyUI's order: the first job left and every job
    that can run with it (same crop size, same control chain, same context width, token lengths
    whose least common multiple repeats the shorter at most 4 times), last first."""
    batches, left = [], list(jobs)
    while left:
        first = left[0]
        batch = [job for job in left if _can_batch(first, job)]
        left = [job for job in left if not any(job is member for member in batch)]
        batches.append(batch[::-1])
    return batches


def _can_batch(a: _Job, b: _Job) -> bool:
    if a.entry.gligen is not None or b.entry.gligen is not None:  # GLIGEN boxes: a forward of their own
        return a is b
    ta, tb = a.entry.context.shape[1], b.entry.context.shape[1]
    ya, yb = a.entry.y, b.entry.y
    return (a.area[:2] == b.area[:2] and a.entry.control is b.entry.control
            and a.entry.context.shape[2] == b.entry.context.shape[2]
            and (ya is None) == (yb is None) and (ya is None or ya.shape[1:] == yb.shape[1:])
            and math.lcm(ta, tb) // min(ta, tb) <= MAX_TOKEN_REPEAT)


def _context(context: torch.Tensor, batch: int, tokens: int) -> torch.Tensor:
    """A (1|B', T, D) context as (batch, tokens, D): batch repeated or cut, tokens repeated."""
    context = _repeat_to(context, batch)
    return context.repeat(1, tokens // context.shape[1], 1)


def _repeat_to(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] != batch:
        repeats = math.ceil(batch / tensor.shape[0])
        tensor = tensor.repeat(repeats, *([1] * (tensor.ndim - 1)))[:batch]
    return tensor


def clip_area(area: Area | None, height: int, width: int) -> Area:
    """An area (h, w, y, x) cut to the latent; None means the whole latent."""
    if area is None:
        return (height, width, 0, 0)
    h, w, y, x = area
    y, x = min(max(y, 0), height - 1), min(max(x, 0), width - 1)
    return (min(h, height - y), min(w, width - x), y, x)


def entry_weight(entry: Entry, area: Area, batch: int, height: int, width: int) -> torch.Tensor:
    """The entry's weight map (B, 1, h, w) over its (clipped) area."""
    h, w, y, x = area
    if entry.mask is not None:
        mask = entry.mask[:batch, y:y + h, x:x + w] * entry.mask_strength  # (B', h, w)
        return _repeat_to(mask, batch)[:, None] * entry.strength
    weight = torch.full((batch, 1, h, w), entry.strength)
    if entry.area is not None:
        _feather(weight, 2, y != 0, y + h < height)
        _feather(weight, 3, x != 0, x + w < width)
    return weight


def _feather(weight: torch.Tensor, dim: int, at_start: bool, at_end: bool) -> None:
    """Linear ramps (1/r, 2/r, ... 1) over r = min(8, size / 4) pixels at inner borders."""
    size = weight.shape[dim]
    ramp = min(FEATHER, size // 4)
    for t in range(ramp):
        factor = (t + 1) / ramp
        if at_start:
            weight.narrow(dim, t, 1).mul_(factor)
        if at_end:
            weight.narrow(dim, size - 1 - t, 1).mul_(factor)
