"""Fast decoding on CPU: linear layers that multiply small inference batches by a weight packed
once into MKL's blocked GEMM layout, for the duration of a `generate()` call.
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# MKL's packed GEMM (cblas_sgemm_pack / _compute, the kernels torch.compile's CPU freezing uses),
# where torch is built with MKL.
_MKL_PACKED_GEMM = torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


class Linear(nn.Linear):
    """y = x W^T + b, an `nn.Linear` that inside `packed_weights(model)` multiplies small batches
    by a copy of W packed once into MKL's blocked GEMM layout.

    Decoding multiplies every weight by a few rows (batch x beams) once per generated token. For
    each such call MKL's sgemm first repacks W into its blocked layout; for 4 to 512 rows that
    repacking can cost twice the product itself (measured here: (16, 512) x (512, 2048) in 117
    us packed against 370 us, (8, 256) x (256, 50257) in 1.0 ms against 2.8 ms). Packed once per
    `generate()` call, it is paid once. The pack is made the second time a weight multiplies a
    small batch, so weights used once per call (the encoder's) are never packed. It is float32,
    CPU and inference (no autograd) only; elsewhere, and outside the context, `nn.Linear`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.packing = False  # set by `packed_weights`
        self._pack = None  # (the weight's identity, its packed copy or None when seen once)

    def __getstate__(self) -> dict:
        # Copies (deepcopy, pickle) start without packs: MKL's packed buffer is opaque to torch.
        return {**self.__dict__, "packing": False, "_pack": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packing:
            rows = x.numel() // self.in_features
            if self._pays(rows) and self._packable(x):
                packed = self._packed_weight(rows)
                if packed is not None:
                    y = torch.ops.mkl._mkl_linear(
                        x.reshape(rows, self.in_features), packed, self.weight, self.bias, rows
                    )  # (rows, out)
                    return y.view(*x.shape[:-1], self.out_features)
        # `nn.Linear.forward`, without its extra Python frame: this line runs for every projection
        # of every decoding step (measured: 2.5% of a batch-1 step of the small Transformer).
        return F.linear(x, self.weight, self.bias)

    def _pays(self, rows: int) -> bool:
        """Measured here: from 4 rows for a weight of a million entries or more, from 8 below
        that (at 4 rows a (256, 256) product ran slower packed), up to 512 rows. The row count is
        checked first: batch-1 decoding never pays, and reading the weight costs a module lookup."""
        if not 4 <= rows <= 512:
            return False
        return rows >= (4 if self.weight.numel() >= 1 << 20 else 8)

    def _packable(self, x: torch.Tensor) -> bool:
        weight = self.weight
        return (
            not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")  # autocast would run nn.Linear in bf16
            and type(weight) is nn.Parameter  # not a DTensor shard, quantised or meta tensor
            and x.device.type == weight.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32
        )

    def _packed_weight(self, rows: int) -> torch.Tensor | None:
        weight = self.weight
        identity = (weight.data_ptr(), weight._version)  # changes when the weight is written
        pack = self._pack  # read once: another thread leaving the context may clear it
        if pack is None or pack[0] != identity:
            self._pack = (identity, None)  # first use: remember the weight, do not pack yet
            return None
        if pack[1] is None:
            pack = (identity, torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), rows))
            self._pack = pack
        return pack[1]


@contextmanager
def packed_weights(model: nn.Module):
    """Within the block, the model's `Linear` layers multiply small inference batches by packed
    weights (see `Linear`); on leaving it the packs are freed. The packs take about 1.3 to 3 times
    the memory of the weights they copy, plus ~8 MB each, while the block runs."""
    linears = [module for module in model.modules() if isinstance(module, Linear)]
    if not _MKL_PACKED_GEMM or not linears or linears[0].packing:  # unavailable, or nested
        yield
        return
    for linear in linears:
        linear.packing = True
    try:
        yield
    finally:
        for linear in linears:
            linear.packing = False
            linear._pack = None
