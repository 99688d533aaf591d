"""Stream a module's weights from a storage device (the CPU) to a compute device (a GPU) one
block at a time, so a model larger than the GPU's free memory still runs there (``--vram low``,
nodeflow.runtime.vram).

``stream_blocks(module, device)`` hooks each chosen block (by default every top-level child, the
items of top-level ModuleLists one by one: for our U-Net each input block, the middle block,
each output block, ``time_embed``, ``label_emb`` and ``out``). Just before a block runs, a
forward pre-hook puts copies of its parameters and buffers on ``device`` in their place; right
after it (also when it raises), a forward hook puts back the tensors that were there, and the
copies are dropped. So outside a call every parameter is its storage tensor, and during one
only the running block's weights are on the GPU. The weights stay in the dtype they were stored
in: store them in the compute device's dtype (fp16 for CUDA) so the copy is a plain transfer.

The hooks read the module's tensors at call time, not a list taken when streaming began: under
torch.func.functional_call (how LoRA's PatchedModule substitutes patched weights,
nodeflow.loading.lora) the substituted tensors are the ones copied, and put back afterwards for
functional_call to restore its own. A tensor shared by two layers of a block is copied once.

The module's own parameters and buffers (held by the module itself, not by a child: a union
ControlNet's ``task_embedding``) are streamed the same way around the module's whole call, by a
hook pair on the module: they are on ``device`` from the start of its forward to its end. Every
other parameter and buffer must belong to a streamed block (else ValueError): one left outside
would stay on the storage device and the computation would mix devices. Code that reads a weight
outside its block's call (e.g. ``time_embed[0].weight.dtype``) sees the storage tensor: its dtype
is right, its device is the storage's; so code that makes a tensor takes its device from an input.

``streamed_bytes(module)`` is the most weight copies streaming holds on the compute device at once
(the root's own tensors plus the largest block's), which a memory estimate must leave room for.

The copies are always new tensors (``Tensor.to(device, copy=True)``), even when storage and
compute devices are the same: a CPU-only test then observes the streaming. Storage tensors can be
pinned (``pin=True``, CUDA only) so transfers are faster and asynchronous; each stays in the
stream order of the current CUDA stream, so dropping a copy after its block is safe. Pinned host
memory is rounded up by PyTorch's allocator (to powers of two), about 1.25x the weights for SDXL.
No prefetching on a side stream yet: a block's copy waits for the previous block's compute.

``on_device(module, device)`` is the same swap as a context manager, for a whole module used
through methods other than ``forward`` (the VAE's encode and decode, nodeflow.image.vae).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: where stream_blocks records its hooks on the streamed module (for unstream and is_streamed)
STATE_ATTRIBUTE = "_nodeflow_streaming"

#: (a module's parameter or buffer dict, a name in it, the tensor that was there)
_Saved = list[tuple[dict, str, torch.Tensor]]


@dataclass(frozen=True)
class Streaming:
    """What ``stream_blocks`` set up on a module: the compute device, the streamed blocks, the
    hook handles, and whether the module's own tensors stream around its whole call."""

    device: torch.device
    blocks: tuple[nn.Module, ...]
    handles: tuple
    own: bool = False


def top_level_blocks(module: nn.Module) -> list[nn.Module]:
    """The module's direct children that hold weights, with ModuleLists and ModuleDicts replaced
    by their items (a ModuleList is never called itself, its items are)."""
    blocks: list[nn.Module] = []
    for child in module.children():
        items = child.children() if isinstance(child, (nn.ModuleList, nn.ModuleDict)) else (child,)
        blocks.extend(item for item in items if _has_tensors(item))
    return blocks


def stream_blocks(module: nn.Module, device: torch.device | str, blocks: Iterable[nn.Module] | None = None, *,
                  pin: bool = False) -> nn.Module:
    """Make ``blocks`` of ``module`` (default ``top_level_blocks``) copy their weights to
    ``device`` around each call (module docstring); ``pin``: pin the storage tensors first
    (CUDA only). Streaming an already streamed module again replaces its hooks (idempotent).
    Returns ``module``."""
    device = torch.device(device)
    unstream(module)
    blocks = tuple(top_level_blocks(module) if blocks is None else blocks)
    own = _own_stores(module)
    _check_covered(module, blocks, own)
    if pin:
        _pin([*own, *(store for block in blocks for store in _stores(block))])
    hooked = [(block, _stores(block)) for block in blocks] + ([(module, own)] if own else [])
    handles = []
    for target, stores in hooked:
        hook = _BlockHook(device, stores)
        handles.append(target.register_forward_pre_hook(hook.enter))
        handles.append(target.register_forward_hook(hook.leave, always_call=True))
    module.__dict__[STATE_ATTRIBUTE] = Streaming(device, blocks, tuple(handles), own=bool(own))
    logger.debug("streaming %d blocks of %s to %s", len(blocks), type(module).__name__, device)
    return module


def unstream(module: nn.Module) -> nn.Module:
    """Remove ``stream_blocks``' hooks: the module runs with its weights where they are stored.
    Does nothing to a module that is not streamed. Returns ``module``."""
    state = module.__dict__.pop(STATE_ATTRIBUTE, None)
    if state is not None:
        for handle in state.handles:
            handle.remove()
    return module


def streaming_device(module: nn.Module) -> torch.device | None:
    """The device ``module``'s blocks stream to, or None if it is not streamed."""
    state = module.__dict__.get(STATE_ATTRIBUTE)
    return None if state is None else state.device


def streamed_bytes(module: nn.Module) -> int:
    """Bytes of the weight copies that streaming holds on the compute device at most at once
    while ``module`` runs (0 when nothing in it is streamed): a streamed module's own tensors (on
    the device for its whole call) plus its largest block's. Looks through ``module``'s submodules
    too, so a wrapper (LoRA's PatchedModule around a streamed U-Net) gives its inner module's
    figure. The copies are in the storage dtype, which ``--vram low`` makes the compute dtype."""
    peak = 0
    for candidate in module.modules():
        state = candidate.__dict__.get(STATE_ATTRIBUTE)
        if state is not None:
            own = _bytes(_own_stores(candidate)) if state.own else 0
            peak = max(peak, own + max((_bytes(_stores(block)) for block in state.blocks), default=0))
    return peak


@contextmanager
def on_device(module: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """Within the block, copies of all of ``module``'s weights on ``device`` stand in for them;
    after it (also after an error), the module holds its own tensors again."""
    saved: _Saved = []
    try:
        _swap_in(_stores(module), torch.device(device), saved)
        yield module
    finally:
        _restore(saved)


@torch.no_grad()
def pin_storage(blocks: Iterable[nn.Module]) -> None:
    """Replace the CPU tensors of ``blocks`` by pinned copies (parameters stay Parameters; a
    shared tensor stays shared). Pinning is an optimisation: when it fails (no CUDA, pinned
    memory exhausted) the rest stays unpinned, with a warning."""
    _pin([store for block in blocks for store in _stores(block)])


@torch.no_grad()
def _pin(stores: list[dict]) -> None:
    """pin_storage for the tensors in ``stores`` (parameter and buffer dicts)."""
    pinned: dict[int, torch.Tensor] = {}
    for store, name, tensor in _entries(stores):
        if tensor.device.type != "cpu":
            continue
        if id(tensor) not in pinned:
            try:
                data = tensor.detach().pin_memory()
            except RuntimeError as error:
                logger.warning("could not pin the streamed weights in CPU memory (%s); transfers will be slower",
                               error)
                return
            pinned[id(tensor)] = nn.Parameter(data, requires_grad=tensor.requires_grad) \
                if isinstance(tensor, nn.Parameter) else data
        store[name] = pinned[id(tensor)]


class _BlockHook:
    """The pre- and post-forward hooks of one streamed block. ``_frames`` holds, per call in
    progress (a stack: a block may be re-entered), the tensors to put back."""

    def __init__(self, device: torch.device, stores: list[dict]) -> None:
        self.device = device
        self.stores = stores
        self._frames: list[_Saved] = []

    def enter(self, block: nn.Module, args: tuple) -> None:
        saved: _Saved = []
        self._frames.append(saved)  # first: if a copy fails, leave() still restores what was swapped
        _swap_in(self.stores, self.device, saved)

    def leave(self, block: nn.Module, args: tuple, output) -> None:
        if self._frames:
            _restore(self._frames.pop())


def _stores(module: nn.Module) -> list[dict]:
    """The parameter and buffer dicts of ``module`` and its submodules (each module once)."""
    return [store for child in module.modules() for store in (child._parameters, child._buffers)]


def _own_stores(module: nn.Module) -> list[dict]:
    """``module``'s own parameter and buffer dicts (not its children's), or [] when they hold no
    tensor (then no hook is needed around the module's call)."""
    stores = [module._parameters, module._buffers]
    return stores if any(True for _ in _entries(stores)) else []


def _bytes(stores: list[dict]) -> int:
    """Bytes of the tensors in ``stores``, a tensor held twice counted once (as _swap_in copies it)."""
    unique = {id(tensor): tensor for _, _, tensor in _entries(stores)}
    return sum(tensor.numel() * tensor.element_size() for tensor in unique.values())


def _entries(stores: Iterable[dict]) -> Iterator[tuple[dict, str, torch.Tensor]]:
    for store in stores:
        for name, tensor in list(store.items()):
            if tensor is not None:
                yield store, name, tensor


def _swap_in(stores: list[dict], device: torch.device, saved: _Saved) -> None:
    """Put a copy on ``device`` of every tensor in ``stores`` in its place, recording in
    ``saved`` what was there (as it goes, so a failure part-way can be undone)."""
    copies: dict[int, torch.Tensor] = {}
    for store, name, tensor in _entries(stores):
        moved = copies.get(id(tensor))
        if moved is None:
            moved = copies[id(tensor)] = tensor.to(device, non_blocking=True, copy=True)
        saved.append((store, name, tensor))
        store[name] = moved


def _restore(saved: _Saved) -> None:
    for store, name, tensor in reversed(saved):
        store[name] = tensor
    saved.clear()


def _has_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _check_covered(module: nn.Module, blocks: tuple[nn.Module, ...], own: list[dict]) -> None:
    """ValueError naming a parameter or buffer of ``module`` that neither a block nor the module's
    own streamed tensors (``own``) hold."""
    covered = {id(t) for block in blocks for t in (*block.parameters(), *block.buffers())}
    covered.update(id(tensor) for _, _, tensor in _entries(own))
    outside = [name for name, t in (*module.named_parameters(), *module.named_buffers()) if id(t) not in covered]
    if outside:
        shown = ", ".join(outside[:5]) + (f" ... ({len(outside)} in all)" if len(outside) > 5 else "")
        raise ValueError(f"cannot stream {type(module).__name__}: {shown} outside the streamed blocks would stay "
                         "on the storage device")
