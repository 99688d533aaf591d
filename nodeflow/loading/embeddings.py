"""Textual-inversion embeddings: files of learned token vectors, used in prompts as ``embedding:name``.

Layouts read (the ones AUTOMATIC1111, ComfyUI and diffusers write for SD1.x):

- A1111 ``.pt``: ``{"string_to_param": {"*": tensor (n, D)}, "name": ..., ...}``;
- A1111 ``.safetensors``: ``{"emb_params": tensor (n, D)}``;
- diffusers / single-vector files: one tensor, ``{"<token>": tensor (D,) or (n, D)}``;
- SDXL-style files with ``clip_l`` / ``clip_g``: the ``clip_l`` vectors by default (what an
  SD1.x text encoder can use); an SDXL CLIP asks for each tower's own with ``key`` (a finder's
  ``for_encoder("clip_g")``), as ComfyUI's tokenizers do with their ``embedding_key``. A file
  without that key gives its usual vectors (an SD1 embedding on SDXL: 768 wide, which CLIP-G
  refuses with a message).

Pickles load only through ``torch.load(weights_only=True)``: nothing in a file is executed.
A file is looked up in the embeddings folders by its name with or without its extension
(``.safetensors``, ``.pt``, ``.bin``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nodeflow.errors import ModelFileError

logger = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pt", ".bin")


def load_embedding(path: str | Path, key: str | None = None) -> torch.Tensor:
    """The vectors (n, D), float32, of an embedding file; ``key`` (``clip_l``, ``clip_g``): that
    tensor when the file has it."""
    path = Path(path)
    data = _read(path)
    vectors = data[key] if key is not None and isinstance(data.get(key), torch.Tensor) else _vectors(data, path)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ModelFileError(f"{path}: not a textual-inversion embedding (vectors of shape {tuple(vectors.shape)})")
    if not torch.isfinite(vectors).all():
        raise ModelFileError(f"{path}: the embedding holds values that are not finite (NaN or inf)")
    return vectors.float()


def _read(path: Path) -> dict:
    if path.suffix.lower() == ".safetensors":
        from nodeflow.loading.files import read_state_dict

        return read_state_dict(path)[0]
    from nodeflow.loading.files import load_pickle

    loaded = load_pickle(path)
    if isinstance(loaded, torch.Tensor):
        return {"vectors": loaded}
    if not isinstance(loaded, dict):
        raise ModelFileError(f"{path}: holds a {type(loaded).__name__}, not an embedding")
    return loaded


def _vectors(data: dict, path: Path) -> torch.Tensor:
    if isinstance(data.get("string_to_param"), dict) and data["string_to_param"]:
        return next(iter(data["string_to_param"].values()))
    for key in ("emb_params", "clip_l"):
        if isinstance(data.get(key), torch.Tensor):
            return data[key]
    tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        return tensors[0]
    raise ModelFileError(f"{path}: not a textual-inversion embedding (found keys {sorted(data)[:6]})")


def find_embedding_file(folders: list[Path], name: str) -> Path | None:
    """``name`` (with or without extension, sub-folders allowed) in the first folder holding it."""
    if not name or ".." in Path(name).parts or Path(name).is_absolute():
        return None
    for folder in folders:
        candidates = [folder / name] + [folder / (name + suffix) for suffix in SUFFIXES]
        for candidate in candidates:
            if candidate.is_file() and candidate.suffix.lower() in SUFFIXES:
                return candidate
    return None


def list_embeddings(folders: list[Path]) -> list[str]:
    """Names usable after ``embedding:`` (file names without extension), sorted."""
    names = {path.relative_to(folder).with_suffix("").as_posix()
             for folder in folders for path in folder.rglob("*")
             if path.is_file() and path.suffix.lower() in SUFFIXES}
    return sorted(names)


class EmbeddingFinder:
    """The lookup prompts use: ``finder(name)`` gives the vectors (n, D) of ``name`` from the
    embeddings folders, or None when there is no such file. Each file is read once."""

    def __init__(self, folders: list[Path], key: str | None = None, _loaded: dict | None = None) -> None:
        self.folders = list(folders)
        self.key = key  # which tensor of an SDXL-style file (None: clip_l)
        self._loaded: dict[tuple[Path, str | None], torch.Tensor] = {} if _loaded is None else _loaded

    def __call__(self, name: str) -> torch.Tensor | None:
        path = find_embedding_file(self.folders, name)
        if path is None:
            return None
        if (path, self.key) not in self._loaded:
            vectors = self._loaded[(path, self.key)] = load_embedding(path, self.key)
            logger.info("embedding %s: %d vectors from %s%s", name, len(vectors), path,
                        f" ({self.key})" if self.key else "")
        return self._loaded[(path, self.key)]

    def for_encoder(self, key: str) -> EmbeddingFinder:
        """The same lookup reading ``key``'s vectors (``clip_l``, ``clip_g``) from files that hold
        several (each file read once per key)."""
        return EmbeddingFinder(self.folders, key, self._loaded)

    def available(self) -> list[str]:
        return list_embeddings(self.folders)
