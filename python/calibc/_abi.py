"""The Python view of the C ABI of calibc's kernel libraries: `include/calib_abi.h` (what both
targets share: the status codes, the dtype codes, the `calib_info` struct), `calib_kernels.h`
(the CPU target's entries) and `calib_cuda.h` (the CUDA target's).

This is the only place in the package that spells the C interface. `Tests/python/test_abi.py`
parses the headers in `Sources/CalibKernelSources/kernels/include/` and fails when anything here
differs from them, so a change of a header cannot go unnoticed.

ABI 1 (libraries compiled before the layer entries) is still readable: its `calib_info` has a
`threads` field after `plans`, and it has only the per-head entries. ABI 2's `calib_info` ends
before `timesteps` (ABI 3), and ABI 3's before `text_tokens` (ABI 4); fields are read only from
libraries that have them.
"""

import ctypes
import operator

from .errors import ArgumentError

ABI_VERSION = 4

# enum calib_status
STATUS = {
    "CALIB_OK": 0,
    "CALIB_ERR_SHAPE": 1,
    "CALIB_ERR_NO_PLAN": 2,
    "CALIB_ERR_ARGUMENT": 3,
    "CALIB_ERR_NO_MEMORY": 4,
    "CALIB_ERR_CUDA": 5,
    "CALIB_ERR_CAPTURE": 6,
    "CALIB_ERR_UNSUPPORTED": 7,
}

# enum calib_fp8 (calib_cuda.h): the products calib_cuda_attention_fp8 runs on e4m3
FP8 = {
    "CALIB_FP8_PV": 1,
    "CALIB_FP8_ALL": 2,
}

# enum calib_dtype
DTYPE = {
    "CALIB_F32": 0,
    "CALIB_BF16": 1,
    "CALIB_F16": 2,
}

_i32, _i64, _int, _vp, _cp = ctypes.c_int32, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
_strides = ctypes.POINTER(ctypes.c_int64)  # const int64_t x_strides[3]


class Info(ctypes.Structure):
    """struct calib_info (ABI 4; `timesteps` is past the end of an ABI 2 library's, `text_tokens`
    and `text_first` past an ABI 3 one's)."""
    _fields_ = [("abi_version", _i32), ("tokens", _i32), ("head_dim", _i32), ("block", _i32), ("layers", _i32),
                ("heads", _i32), ("plans", _i32), ("step_count", _i32), ("steps", ctypes.POINTER(_i32)),
                ("model", _cp), ("mask_sha256", _cp), ("timesteps", ctypes.POINTER(ctypes.c_float)),
                ("text_tokens", _i32), ("text_first", _i32)]


class InfoV1(ctypes.Structure):
    """struct calib_info of ABI 1: `threads` after `plans`."""
    _fields_ = [("abi_version", _i32), ("tokens", _i32), ("head_dim", _i32), ("block", _i32), ("layers", _i32),
                ("heads", _i32), ("plans", _i32), ("threads", _i32), ("step_count", _i32),
                ("steps", ctypes.POINTER(_i32)), ("model", _cp), ("mask_sha256", _cp)]


_LAYER_TAIL = [_i64, _i64, _i64, _i64, _strides, _strides, _strides, _strides]
_HEAD_TAIL = [_i64, _i64, _i64, _i64, _i64, _i64]

# name: (restype, argtypes, first ABI version that has it)
FUNCTIONS = {
    "calib_get_info": (ctypes.POINTER(Info), [], 1),
    "calib_attention_layer": (_int, [_i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL, 2),
    "calib_attention_heads": (_int, [_i32, _i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL, 2),
    "calib_attention_joint": (_int, [_i32, _i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL + [ctypes.POINTER(_i32)], 4),
    "calib_dense_attention_layer": (_int, [_i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL, 2),
    "calib_attention": (_int, [_i32, _i32, _i32, _vp, _vp, _vp, _vp] + _HEAD_TAIL, 1),
    "calib_attention_bf16": (_int, [_i32, _i32, _i32, _vp, _vp, _vp, _vp] + _HEAD_TAIL, 1),
    "calib_dense_attention": (_int, [_vp, _vp, _vp, _vp] + _HEAD_TAIL, 1),
    "calib_dense_attention_bf16": (_int, [_vp, _vp, _vp, _vp] + _HEAD_TAIL, 1),
    "calib_team_size": (_int, [], 1),
    "calib_isa": (_cp, [], 2),
}

# struct calib_entry_points: the ABI version, then a pointer to each entry, in this order
# (the field `x` is the function `calib_x` above).
ENTRY_POINTS = ["get_info", "attention_layer", "dense_attention_layer", "attention", "attention_bf16",
                "dense_attention", "dense_attention_bf16", "team_size", "isa", "attention_heads", "attention_joint"]


class EntryPoints(ctypes.Structure):
    _fields_ = [("abi_version", _i32)] + [
        (name, ctypes.CFUNCTYPE(FUNCTIONS["calib_" + name][0], *FUNCTIONS["calib_" + name][1])) for name in ENTRY_POINTS]


FUNCTIONS["calib_get_entry_points"] = (ctypes.POINTER(EntryPoints), [], 2)


def bind(lib, abi_version):
    """Sets restype/argtypes of every entry of `lib` that its ABI version has; returns their names."""
    bound = []
    for name, (restype, argtypes, since) in FUNCTIONS.items():
        if abi_version < since or not hasattr(lib, name):
            continue
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        bound.append(name)
    return bound


# ---- the CUDA target's library (include/calib_cuda.h): calib_abi.h's statuses, dtypes and info ----

CUDA_FUNCTIONS = {
    "calib_cuda_get_info": (ctypes.POINTER(Info), []),
    "calib_cuda_attention_layer": (_int, [_i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL + [_vp]),
    "calib_cuda_attention_heads": (_int, [_i32, _i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL + [_vp]),
    "calib_cuda_dense_attention_layer": (_int, [_i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL + [_vp]),
    "calib_cuda_attention_indexed": (_int, [ctypes.POINTER(_i32), _i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL + [_vp]),
    "calib_cuda_attention_joint": (_int, [ctypes.POINTER(_i32), _i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL
                                   + [ctypes.POINTER(_i32), _vp]),
    "calib_cuda_prepare": (_int, [_i32, _i32, _vp]),
    "calib_cuda_kernel_name": (_cp, [_i64]),
    "calib_cuda_attention_fp8": (_int, [ctypes.POINTER(_i32), _i32, _i32, _i32, _i32, _vp, _vp, _vp, _vp] + _LAYER_TAIL
                                 + [ctypes.POINTER(_i32), _vp, _i64, _vp]),
    "calib_cuda_fp8_workspace_size": (_int, [_i32, _i64, _i64, ctypes.POINTER(_i64)]),
}
# Entries libraries compiled before them lack (CUDA ABI 1: the head range; 2: the step chosen
# on the device; 3: padded text; 4: FP8); they still load without them.
CUDA_SINCE_ABI = {"calib_cuda_attention_heads": 2, "calib_cuda_attention_indexed": 3, "calib_cuda_prepare": 3,
                  "calib_cuda_attention_joint": 4, "calib_cuda_attention_fp8": 5, "calib_cuda_fp8_workspace_size": 5}


# ---- integers into C ----
#
# ctypes converts a Python int to a C integer type by keeping its low bits: step 2**32 would reach
# the kernels as step 0 and run step 0's plans. Every integer this package passes to C goes
# through one of these first.

INT32_RANGE = (-(1 << 31), (1 << 31) - 1)
INT64_RANGE = (-(1 << 63), (1 << 63) - 1)


def _integer(name, value, c_type, lo, hi):
    if isinstance(value, bool):
        raise ArgumentError(f"{name}: expected an integer in {lo}…{hi} (C {c_type}), got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{name}: expected an integer in {lo}…{hi} (C {c_type}), got {type(value).__name__} "
                            f"{value!r}") from None
    if not lo <= v <= hi:
        raise ArgumentError(f"{name}: expected an integer in {lo}…{hi} (C {c_type}), got {v}")
    return v


def int32(name, value):
    """`value` as a C int32_t, or ArgumentError naming `name` when it is not an integer in range."""
    return ctypes.c_int32(_integer(name, value, "int32_t", *INT32_RANGE))


def int64(name, value):
    """`value` as a C int64_t, or ArgumentError naming `name`."""
    return ctypes.c_int64(_integer(name, value, "int64_t", *INT64_RANGE))


def int64_array(name, values):
    """A C int64_t[len(values)], each checked."""
    return (ctypes.c_int64 * len(values))(*(_integer(f"{name}[{i}]", v, "int64_t", *INT64_RANGE)
                                            for i, v in enumerate(values)))
