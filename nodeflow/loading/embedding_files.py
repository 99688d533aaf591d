"""The embedding files a prompt names, for the nodes that encode prompts (CLIPTextEncode and its
SDXL variants, GLIGENTextBoxApply): the cache fingerprint that re-encodes a prompt when one of
its files is replaced, and the finder the text encoder reads them through. Torch-free at import
(the node packs import this while the registry loads); the finder's module is imported on use."""

from __future__ import annotations


def embedding_files_fingerprint(inputs: dict, paths, name: str = "text") -> str:
    """Cache fingerprint of the embedding files a prompt (input ``name``) names (size and
    modification time), so replacing one re-encodes the prompt."""
    from nodeflow.loading.embeddings import find_embedding_file
    from nodeflow.text.prompt_weights import EMBEDDING_PREFIX, embedding_name, embedding_references

    text = inputs.get(name)
    if not isinstance(text, str) or EMBEDDING_PREFIX not in text:
        return ""
    folders = paths.kind_dirs("embeddings")
    found = []
    for reference in embedding_references(text):
        name = embedding_name(reference, lambda candidate: find_embedding_file(folders, candidate) is not None)
        if name is not None:
            path = find_embedding_file(folders, name)
            stat = path.stat()
            found.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(found)


def embedding_finder(paths):
    """The finder ``clip.encode`` looks embedding names up with: the models' embeddings folders."""
    from nodeflow.loading.embeddings import EmbeddingFinder

    return EmbeddingFinder(paths.kind_dirs("embeddings"))
