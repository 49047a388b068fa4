"""ctypes binding of a kernel library built by `calibc compile masks.json -o DIR --shared`.

    lib = CalibKernels("DIR/libcalibkernels.so")
    out = lib.attention(step, layer, head, q, k, v)   # (S, D) or (B, H, S, D) CPU tensors, fp32 or bf16
    lib.has_plan(step, layer, head)

Rows may be strided (a head sliced out of (B, S, H, D) is fine); the last dimension must be
contiguous. Output is float32 of q's shape. Errors from the C ABI raise CalibError.
"""

import ctypes

import torch

_STATUS = {1: "shape mismatch (tokens or head_dim)", 2: "no plan for this (step, layer, head)",
           3: "bad argument (null pointer or stride)", 4: "out of memory"}


class CalibError(RuntimeError):
    def __init__(self, status):
        super().__init__(_STATUS.get(status, f"status {status}"))
        self.status = status


class _Info(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_int32), ("tokens", ctypes.c_int32), ("head_dim", ctypes.c_int32),
                ("block", ctypes.c_int32), ("layers", ctypes.c_int32), ("heads", ctypes.c_int32),
                ("plans", ctypes.c_int32), ("threads", ctypes.c_int32), ("step_count", ctypes.c_int32),
                ("steps", ctypes.POINTER(ctypes.c_int32)), ("model", ctypes.c_char_p), ("mask_sha256", ctypes.c_char_p)]


class CalibKernels:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        i64, i32, vp = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
        for name in ("calib_attention", "calib_attention_bf16"):
            getattr(self.lib, name).argtypes = [i32, i32, i32, vp, vp, vp, vp, i64, i64, i64, i64, i64, i64]
            getattr(self.lib, name).restype = ctypes.c_int
        for name in ("calib_dense_attention", "calib_dense_attention_bf16"):
            getattr(self.lib, name).argtypes = [vp, vp, vp, vp, i64, i64, i64, i64, i64, i64]
            getattr(self.lib, name).restype = ctypes.c_int
        self.lib.calib_get_info.restype = ctypes.POINTER(_Info)
        info = self.lib.calib_get_info().contents
        self.tokens, self.head_dim, self.block = info.tokens, info.head_dim, info.block
        self.layers, self.heads = info.layers, info.heads
        self.steps = [info.steps[i] for i in range(info.step_count)]
        self.model, self.mask_sha256 = info.model.decode(), info.mask_sha256.decode()

    def has_plan(self, step, layer, head):
        return step in self.steps and 0 <= layer < self.layers and 0 <= head < self.heads

    def attention(self, step, layer, head, q, k, v, out=None):
        """Sparse attention of one head, or of every (b, h) of (B, H, S, D) tensors with head
        index h (the plan of (step, layer, h))."""
        return self._run(q, k, v, out, lambda fn, *ptrs: fn(step, layer, head, *ptrs), dense=False, heads_from_tensor=True,
                         step=step, layer=layer, head=head)

    def dense_attention(self, q, k, v, out=None):
        return self._run(q, k, v, out, lambda fn, *ptrs: fn(*ptrs), dense=True, heads_from_tensor=False)

    def _run(self, q, k, v, out, call, dense, heads_from_tensor, step=0, layer=0, head=0):
        if q.dim() == 4:
            out = torch.empty(q.shape, dtype=torch.float32) if out is None else out
            for b in range(q.shape[0]):
                for h in range(q.shape[1]):
                    if dense:
                        self._run(q[b, h], k[b, h], v[b, h], out[b, h], call, True, False)
                    else:
                        self.attention(step, layer, h, q[b, h], k[b, h], v[b, h], out[b, h])
            return out
        assert q.dim() == 2 and q.dtype == k.dtype == v.dtype and q.dtype in (torch.float32, torch.bfloat16)
        for t in (q, k, v):
            if t.stride(-1) != 1:
                raise ValueError("the last dimension must be contiguous")
        out = torch.empty(q.shape, dtype=torch.float32) if out is None else out
        bf16 = q.dtype == torch.bfloat16
        name = ("calib_dense_attention" if dense else "calib_attention") + ("_bf16" if bf16 else "")
        status = call(getattr(self.lib, name), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                      q.shape[0], q.shape[1], q.stride(0), k.stride(0), v.stride(0), out.stride(0))
        if status != 0:
            raise CalibError(status)
        return out
