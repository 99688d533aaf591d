"""HypernetworkLoader: an AUTOMATIC1111-format hypernetwork applied to the MODEL (ComfyUI's
comfy_extras/nodes_hypernetwork.py: its id, inputs and defaults). The maths in
nodeflow.models.hypernetwork, the file format in nodeflow.loading.hypernetwork."""

from __future__ import annotations

from nodeflow.spec import MODEL, Choice, Float, Input, ModelFile, Output, node


@node("HypernetworkLoader", display="Load Hypernetwork", category="loaders",
      inputs=[Input("model", MODEL),
              Choice("hypernetwork_name", lambda paths: paths.list_models("hypernetworks"),
                     tooltip="A hypernetwork (.pt or .safetensors, AUTOMATIC1111's format) from models/hypernetworks"),
              Float("strength", 1.0, min=-10.0, max=10.0, step=0.01,
                    tooltip="How much of the hypernetwork's change the keys and values of every attention get")],
      outputs=[Output(MODEL)], fingerprint=ModelFile("hypernetworks", "hypernetwork_name"))
def hypernetwork_loader(model, hypernetwork_name: str, strength: float, ctx):
    """Apply a hypernetwork: small networks that rewrite what each attention of the U-Net reads its
    keys and values from, by attention width."""
    from nodeflow.loading.hypernetwork import load_hypernetwork
    from nodeflow.models.hypernetwork import HypernetworkPatch

    hypernetwork = load_hypernetwork(ctx.paths.resolve_model("hypernetworks", hypernetwork_name),
                                     device=model.device, dtype=model.dtype)
    patch = HypernetworkPatch(hypernetwork, strength)
    return (model.with_unet_patches(attn1_patch=(patch,), attn2_patch=(patch,)),)
