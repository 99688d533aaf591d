"""Model patches that change how the MODEL is sampled (ComfyUI's advanced/model nodes)."""

from __future__ import annotations

from nodeflow.spec import MODEL, Boolean, Choice, Input, Output, node

#: ComfyUI's choice -> nodeflow.sampling.model_sampling's parameterisation
SAMPLING = {"eps": "eps", "v_prediction": "v", "lcm": "lcm", "x0": "x0"}


@node("ModelSamplingDiscrete", display="ModelSamplingDiscrete", category="advanced/model",
      inputs=[Input("model", MODEL),
              Choice("sampling", list(SAMPLING),
                     tooltip="What the model predicts: the noise (eps: SD1, SDXL), v (SD2-768 and "
                             "v-prediction fine-tunes), the clean image (x0), or LCM's distilled eps"),
              Boolean("zsnr", False, tooltip="Rescale the noise schedule to zero terminal SNR (models "
                                             "trained that way)")],
      outputs=[Output(MODEL)])
def model_sampling_discrete(model, sampling: str, zsnr: bool):
    """Sample the model as an eps, v-prediction, x0 or LCM model, optionally with a zero-terminal-SNR schedule."""
    from nodeflow.errors import NodeInputError

    if sampling not in SAMPLING:
        raise NodeInputError("sampling", f"{sampling!r} is not one of {', '.join(SAMPLING)}")
    return (model.clone_with(sampling=model.sampling.with_parameterization(SAMPLING[sampling], zsnr)),)
