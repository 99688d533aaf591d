"""Where things live: model folders, the output and temporary folders, custom nodes, assets.

Model roots come from ``--models-dir`` (repeatable), then ``NODEFLOW_MODELS_DIR`` (a
``os.pathsep``-separated list), then ``./models``. Inside a root each kind has a folder; the
folder names of AUTOMATIC1111 (``Stable-diffusion``, ``Lora``...) are accepted too, so an
existing A1111 ``models`` folder works as it is. The embedded model shipped in ``assets/`` is
listed next to the user's checkpoints.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nodeflow.errors import ModelFileError, NodeflowError

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

#: Folder names per model kind: ours first, then ComfyUI's and AUTOMATIC1111's.
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints", "Stable-diffusion"),
    "vae": ("vae", "VAE"),
    "loras": ("loras", "Lora", "LyCORIS"),
    "controlnet": ("controlnet", "ControlNet"),
    "embeddings": ("embeddings",),
    # UNETLoader's and the CLIP loaders' folders, as ComfyUI's folder_paths names them (the
    # second is the older name it still reads)
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "hypernetworks": ("hypernetworks",),  # HypernetworkLoader; AUTOMATIC1111's folder has the same name
    "clip_vision": ("clip_vision",),  # CLIPVisionLoader
    "style_models": ("style_models",),  # StyleModelLoader (T2I style adapters)
    "gligen": ("gligen",),  # GLIGENLoader
    # UpscaleModelLoader: ComfyUI's folder, then AUTOMATIC1111's folders for the same files
    "upscale_models": ("upscale_models", "ESRGAN", "RealESRGAN", "SwinIR"),
}


def expand_user(path: str | os.PathLike) -> Path:
    """``Path(path).expanduser()``; a ``~name`` whose home folder is unknown (no such user) is a
    NodeflowError naming the path, not pathlib's RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        home = Path(path).parts[0]
        raise NodeflowError(f"{os.fspath(path)!r}: cannot find the home folder of {home!r} "
                            "(no such user)") from None


def default_temp_dir() -> Path:
    """``$TMPDIR/nodeflow-<user id>``: one per user (a shared /tmp folder would belong to whoever
    made it first), and not named like the package (``python -m`` run in /tmp would import it)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"nodeflow-{user}"


#: Weight files of a diffusers model folder (config.json beside one of them).
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def is_model_folder(kind: str, path: Path) -> bool:
    """A diffusers-format model that is a folder: a pipeline (``model_index.json`` or ``unet/``)
    for checkpoints; ``config.json`` plus ``diffusion_pytorch_model.*`` for VAEs and ControlNets."""
    if not path.is_dir():
        return False
    if kind == "checkpoints":
        return (path / "model_index.json").is_file() or (path / "unet").is_dir()
    if kind in ("vae", "controlnet"):
        return (path / "config.json").is_file() and any((path / name).is_file() for name in DIFFUSERS_WEIGHTS)
    return False


def _model_entries(folder: Path, kind: str):
    """Every file under ``folder`` and every diffusers model folder, without descending into
    those (their part files are not models of their own)."""
    visited: set[str] = set()  # real paths: a symlink loop is walked once
    for current, subfolders, files in os.walk(folder, followlinks=True):
        base = Path(current)
        visited.add(os.path.realpath(base))
        kept = []
        for name in sorted(subfolders):
            if is_model_folder(kind, base / name):
                yield base / name
            elif not name.startswith(".") and os.path.realpath(base / name) not in visited:
                kept.append(name)
        subfolders[:] = kept
        yield from (base / name for name in sorted(files))


#: Sub-folders of assets/ holding embedded models of each kind ("" = assets/ itself).
ASSET_FOLDERS: dict[str, str] = {"checkpoints": "", "controlnet": "controlnet", "loras": "loras"}


def project_assets_dir() -> Path:
    """assets/ next to the nodeflow package (the repository's, for an editable install)."""
    return Path(__file__).resolve().parents[2] / "assets"


@dataclass(frozen=True)
class Paths:
    """The folders one run uses."""

    models_dirs: tuple[Path, ...] = (Path("models"),)
    output_dir: Path = Path("output")
    input_dir: Path = Path("input")
    temp_dir: Path = field(default_factory=lambda: default_temp_dir())
    custom_nodes_dir: Path | None = None
    assets_dir: Path = field(default_factory=project_assets_dir)
    previews_dir: Path | None = None  # this session's preview folder (nodeflow.runtime.preview_folders.preview_session)

    def preview_folder(self) -> Path:
        """Where PreviewImage writes: the session's folder, else ``temp_dir/previews``."""
        return self.previews_dir or self.temp_dir / "previews"

    @classmethod
    def from_environment(cls, models_dirs: list[str] | None = None, output_dir: str | None = None,
                         input_dir: str | None = None, custom_nodes_dir: str | None = None,
                         config=None) -> Paths:
        """Folders from command-line values, then environment variables, then the settings file
        (a ``nodeflow.runtime.config.Config``), then defaults."""
        roots = [Path(p) for p in models_dirs or []]
        if not roots and os.environ.get("NODEFLOW_MODELS_DIR"):
            roots = [Path(p) for p in os.environ["NODEFLOW_MODELS_DIR"].split(os.pathsep) if p]
        if not roots and config is not None:
            roots = list(config.models)

        def pick(given: str | None, variable: str, configured: Path | None, default: str | None) -> Path | None:
            value = given or os.environ.get(variable) or configured or default
            return expand_user(value) if value else None

        return cls(
            models_dirs=tuple(expand_user(root) for root in (roots or [Path("models")])),
            output_dir=pick(output_dir, "NODEFLOW_OUTPUT_DIR", getattr(config, "output", None), "output"),
            input_dir=pick(input_dir, "NODEFLOW_INPUT_DIR", getattr(config, "input", None), "input"),
            custom_nodes_dir=pick(custom_nodes_dir, "NODEFLOW_CUSTOM_NODES",
                                  getattr(config, "custom_nodes", None), None),
        )

    def kind_dirs(self, kind: str) -> list[Path]:
        """Existing folders that hold models of ``kind``, user roots first, then assets."""
        return [folder for folder, _ in self._model_folders(kind)]

    def _model_folders(self, kind: str) -> list[tuple[Path, bool]]:
        """(folder, is_assets) for each existing folder of ``kind``. Embedded models in assets/
        are only the top-level ``*.safetensors`` of their folder."""
        if kind not in KIND_FOLDERS:
            raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KIND_FOLDERS)}")
        found = [(root / name, False) for root in self.models_dirs for name in KIND_FOLDERS[kind]]
        if kind in ASSET_FOLDERS:
            found.append((self.assets_dir / ASSET_FOLDERS[kind], True))
        return [(folder, is_assets) for folder, is_assets in found if folder.is_dir()]

    def list_models(self, kind: str) -> list[str]:
        """Models of ``kind`` as names relative to their folder ('sub/x.safetensors'; a diffusers
        folder by its folder name), sorted, without duplicates (the first folder wins)."""
        names: dict[str, None] = {}
        for folder, is_assets in self._model_folders(kind):
            found = folder.glob("*.safetensors") if is_assets else _model_entries(folder, kind)
            for path in found:
                if is_model_folder(kind, path) or (path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS):
                    names.setdefault(path.relative_to(folder).as_posix(), None)
        return sorted(names, key=str.lower)

    def resolve_model(self, kind: str, name: str) -> Path:
        """The file for a model name from ``list_models``; never a path outside the folders."""
        relative = Path(name.replace("\\", "/"))  # Windows users' workflows: "sd15\\x.safetensors"
        if not name or relative.is_absolute() or ".." in relative.parts:
            raise ModelFileError(f"model name {name!r} must be a file inside the {kind} folders")
        for folder, is_assets in self._model_folders(kind):
            if is_assets and (len(relative.parts) != 1 or relative.suffix != ".safetensors"):
                continue
            candidate = folder / relative
            if candidate.is_file() or (not is_assets and is_model_folder(kind, candidate)):
                return candidate  # symlinked model files are fine (shared libraries)
        available = self.list_models(kind)
        shown = ", ".join(available[:10]) + (" ..." if len(available) > 10 else "")
        folders = ", ".join(str(root / KIND_FOLDERS[kind][0]) for root in self.models_dirs)
        raise ModelFileError(f"{kind} model {name!r} not found in {folders}; "
                             f"available: {shown or 'none'}")

    def input_dirs(self) -> list[Path]:
        """The input folder, then the example inputs shipped in assets/inputs."""
        return [folder for folder in (self.input_dir, self.assets_dir / "inputs") if folder.is_dir()]

    def list_inputs(self) -> list[str]:
        """Image files in the input folders (for LoadImage); the user's first."""
        names: dict[str, None] = {}
        for folder in self.input_dirs():
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    names.setdefault(path.relative_to(folder).as_posix(), None)
        return sorted(names)

    def resolve_input(self, name: str) -> Path:
        """A file in the input folders, or an existing path given directly."""
        direct = expand_user(name)
        if direct.is_absolute() and direct.is_file():
            return direct
        if ".." not in Path(name).parts:
            for folder in self.input_dirs():
                if (folder / name).is_file():
                    return folder / name
        raise ModelFileError(f"input file {name!r} not found in {self.input_dir}")

