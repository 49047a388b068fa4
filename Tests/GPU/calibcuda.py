"""ctypes binding of a built calib_cuda .so (Tests/GPU/build.sh), for torch CUDA tensors."""
import ctypes
import torch

OK, ERR_SHAPE, ERR_NO_PLAN, ERR_ARGUMENT, ERR_NO_MEMORY, ERR_CUDA = range(6)
BF16, F16 = 1, 2
DTYPES = {torch.bfloat16: BF16, torch.float16: F16}


class Info(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_int32), ("tokens", ctypes.c_int32), ("head_dim", ctypes.c_int32),
                ("block", ctypes.c_int32), ("layers", ctypes.c_int32), ("heads", ctypes.c_int32),
                ("plans", ctypes.c_int32), ("step_count", ctypes.c_int32), ("steps", ctypes.POINTER(ctypes.c_int32)),
                ("model", ctypes.c_char_p), ("mask_sha256", ctypes.c_char_p)]


Strides = ctypes.c_int64 * 3


class Lib:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        L = self.lib
        L.calib_cuda_get_info.restype = ctypes.POINTER(Info)
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        L.calib_cuda_attention_layer.argtypes = [ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, vp, vp, vp, vp,
                                                 i64, i64, i64, i64, Strides, Strides, Strides, Strides, vp]
        L.calib_cuda_dense_attention_layer.argtypes = [ctypes.c_int32, vp, vp, vp, vp, i64, i64, i64, i64,
                                                       Strides, Strides, Strides, Strides, vp]
        L.calib_cuda_kernel_name.restype = ctypes.c_char_p
        L.calib_cuda_kernel_name.argtypes = [i64]
        info = L.calib_cuda_get_info().contents
        self.tokens, self.head_dim, self.block = info.tokens, info.head_dim, info.block
        self.layers, self.heads = info.layers, info.heads
        self.steps = [info.steps[i] for i in range(info.step_count)]
        self.sha = info.mask_sha256.decode()

    def kernel_name(self):
        return self.lib.calib_cuda_kernel_name(self.head_dim).decode()

    @staticmethod
    def _args(x, layout):
        """Pointer and (b, s, h) strides in elements of a 4D tensor in `layout` 'bshd' or 'bhsd'."""
        st = x.stride()
        if layout == "bshd":
            return x.data_ptr(), Strides(st[0], st[1], st[2])
        return x.data_ptr(), Strides(st[0], st[2], st[1])

    def layer(self, step, layer, q, k, v, out, layout="bhsd", dtype=None, stream=None, raw=None):
        """Runs one (step, layer) (step None: dense). Returns the status code."""
        B = q.shape[0]
        N = q.shape[1] if layout == "bshd" else q.shape[2]
        H = q.shape[2] if layout == "bshd" else q.shape[1]
        D = q.shape[3]
        dt = DTYPES[q.dtype] if dtype is None else dtype
        (pq, sq), (pk, sk), (pv, sv), (po, so) = (self._args(t, layout) for t in (q, k, v, out))
        if raw:  # overrides for error tests
            pq, pk, pv, po = raw.get("q", pq), raw.get("k", pk), raw.get("v", pv), raw.get("out", po)
            sq = raw.get("sq", sq)
            so = raw.get("so", so)
            B, N, H, D = raw.get("B", B), raw.get("N", N), raw.get("H", H), raw.get("D", D)
        s = torch.cuda.current_stream().cuda_stream if stream is None else stream
        if step is None:
            return self.lib.calib_cuda_dense_attention_layer(dt, pq, pk, pv, po, B, N, H, D, sq, sk, sv, so, s)
        return self.lib.calib_cuda_attention_layer(step, layer, dt, pq, pk, pv, po, B, N, H, D, sq, sk, sv, so, s)
