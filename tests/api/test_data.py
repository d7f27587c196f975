"""Datasets in memory (clbench.api.data): ``resident`` is a no-op on the CPU and batches on the
GPU as on the CPU; the iteration order is the generator's."""
from __future__ import annotations

import pytest
import torch

from clbench.api.data import TensorData, iterate, resident


def test_resident_is_a_no_op_on_the_cpu_and_iteration_order_is_the_generators():
    data = TensorData(torch.arange(50.0).view(50, 1), torch.arange(50))
    assert resident(data, torch.device("cpu")) is data
    a = [b[1] for b in iterate(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    b = [b[1] for b in iterate(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_resident_data_on_the_gpu_batches_like_the_cpu():
    data = TensorData(torch.rand(50, 1, 4, 4), torch.arange(50))
    on_gpu = resident(data, torch.device("cuda"))
    assert on_gpu.x.is_cuda and on_gpu.fingerprint == data.fingerprint
    a = [b[0] for b in iterate(data, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    b = [b[0].cpu() for b in iterate(on_gpu, 8, shuffle=True, generator=torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
