"""A model file whose tensors do not build its model is named in one line; running out of memory
while building, or a missing kernel, is not the file's fault and is not reported as its."""

from __future__ import annotations

import pytest
import torch

from nodeflow.errors import ModelFileError
from nodeflow.loading.build_errors import built


def _raise(error: Exception):
    def build():
        raise error
    return build


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("Error(s) in loading state_dict for UNetModel:\n\tMissing key(s): out.2.weight"),
     "model.safetensors: the U-Net does not match its configuration: Missing key(s): out.2.weight"),
    (KeyError("input_blocks.0.0.weight"),
     "model.safetensors: the U-Net does not match its configuration: KeyError: 'input_blocks.0.0.weight'"),
])
def test_a_file_that_does_not_build_is_named_in_one_line(error, expected):
    with pytest.raises(ModelFileError) as raised:
        built("model.safetensors", "U-Net", _raise(error))
    assert str(raised.value) == expected


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"),
                                   NotImplementedError("\"addmm_impl_cpu_\" not implemented for 'Half'")])
def test_out_of_memory_and_missing_kernels_are_not_blamed_on_the_file(error):
    with pytest.raises(type(error)):
        built("model.safetensors", "U-Net", _raise(error))


def test_the_built_value_comes_back():
    assert built("model.safetensors", "U-Net", lambda: 42) == 42
