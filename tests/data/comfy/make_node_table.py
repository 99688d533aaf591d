"""Write core_nodes.json, the table of ComfyUI's core node declarations that
tests/test_comfy_declarations.py compares nodeflow's nodes with. Not part of nodeflow.

    python tests/data/comfy/make_node_table.py OBJECT_INFO.json > tests/data/comfy/core_nodes.json

OBJECT_INFO.json is what a ComfyUI server answers on GET /object_info (every node's declaration).
Only core nodes are kept (python_module ``nodes`` or ``comfy_extras.*``; not custom nodes, not the
paid API nodes), without tooltips and without the file lists of loader combos (they list the
server's own model files).
"""

from __future__ import annotations

import json
import sys

NUMERIC = ("default", "min", "max", "step")


def combo_options(spec: list) -> list | None:
    """The options of a combo input, in both of ComfyUI's spellings ([options, {...}] and
    ["COMBO", {"options": [...]}])."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1:
        return spec[1].get("options")
    return None


def input_entry(name: str, spec: list, optional: bool) -> dict:
    options = combo_options(spec)
    file_list = options is not None and is_file_list(options)
    extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    entry = {"name": name, "type": "COMBO" if options is not None else spec[0], "optional": optional}
    if options is not None and not file_list:
        entry["options"] = options
    entry.update({key: extra[key] for key in NUMERIC if key in extra and not isinstance(extra[key], list)})
    for key in ("multiline",):
        if key in extra:
            entry[key] = extra[key]
    return entry


FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".png", ".jpg", ".jpeg", ".webp",
                 ".latent", ".json", ".txt", ".mp4", ".wav", ".flac", ".mp3")


def is_file_list(options: list) -> bool:
    """Loader combos list the server's files (an empty list: none there)."""
    return not options or any(str(option).lower().endswith(FILE_SUFFIXES) for option in options)


def declaration(node: dict) -> dict:
    inputs = []
    for section, optional in (("required", False), ("optional", True)):
        specs = node.get("input", {}).get(section, {})
        order = node.get("input_order", {}).get(section, list(specs))
        inputs += [input_entry(name, specs[name], optional) for name in order]
    return {"category": node.get("category", ""), "inputs": inputs, "outputs": node.get("output", []),
            "output_names": node.get("output_name", [])}


def is_core(node: dict) -> bool:
    module = node.get("python_module", "")
    return module == "nodes" or module.startswith("comfy_extras.")


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        info = json.load(handle)
    table = {name: declaration(node) for name, node in sorted(info.items()) if is_core(node)}
    json.dump(table, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
