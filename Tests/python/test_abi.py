"""calibc/_abi.py, the package's only description of the C ABI, against the header the kernels
are compiled with: a change on either side without the other fails here."""

import ctypes
import os
import re

import pytest
import torch

import calibc
from calibc import _abi, errors
from conftest import HEADER, INCLUDE, compile_library, random_masks

CTYPES = {"int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64, "int": ctypes.c_int, "char*": ctypes.c_char_p}


def c_types(args):
    """Argument types of a C parameter list as text: "const float *q" → "float*"."""
    types = []
    for arg in " ".join(args.split()).split(","):
        arg = arg.strip()
        if arg in ("void", ""):
            continue
        pointer = "*" in arg or "[" in arg
        base = re.sub(r"\bconst\b", "", arg).replace("*", " ").split()[0]
        types.append(base + ("*" if pointer else ""))
    return types


def parse_entry_points(text):
    """struct calib_entry_points: [(field, (return type, [argument types]) or "int32_t")]."""
    m = re.search(r"typedef\s+struct\s+calib_entry_points\s*\{(.*?)\}\s*calib_entry_points\s*;", text, flags=re.S)
    if m is None:
        return None
    fields = []
    for decl in m.group(1).split(";"):
        decl = " ".join(decl.split())
        if not decl:
            continue
        f = re.match(r"((?:const\s+)?\w+\s*\*?)\s*\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)$", decl)
        if f:
            fields.append((f.group(2), ("".join(f.group(1).replace("const", "").split()), c_types(f.group(3)))))
        else:
            fields.append((decl.split()[-1], decl.split()[0]))
    return fields


def header_text(path):
    """A header with the calib_abi.h it includes in front, comments removed."""
    text = open(os.path.join(INCLUDE, "calib_abi.h")).read() + open(path).read()
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def parse_header(path, version_macro="CALIB_ABI_VERSION"):
    """(#define `version_macro`, enums {name: value}, struct calib_info fields [(name, type)],
    functions {name: (return type, [argument types])}, struct calib_entry_points fields) of
    calib_kernels.h or calib_cuda.h (each with calib_abi.h), types as C text."""
    text = header_text(path)
    version = int(re.search(r"#define\s+" + version_macro + r"\s+(\d+)", text).group(1))
    enums = {}
    for body in re.findall(r"enum\s+\w+\s*\{(.*?)\}", text, flags=re.S):
        for name, value in re.findall(r"(\w+)\s*=\s*(\d+)", body):
            enums[name] = int(value)
    body = re.search(r"typedef\s+struct\s+calib_info\s*\{(.*?)\}\s*calib_info\s*;", text, flags=re.S).group(1)
    fields = []
    for decl in body.split(";"):
        decl = " ".join(decl.split())
        if not decl:
            continue
        m = re.match(r"(const\s+)?(\w+)\s*(\*?)\s*(.*)", decl)
        for name in m.group(4).split(","):
            fields.append((name.strip(), m.group(2) + m.group(3)))
    functions = {}
    for ret, name, args in re.findall(r"^\s*((?:const\s+)?\w+\s*\*?)\s*(calib_\w+)\s*\(([^)]*)\)\s*;", text, flags=re.M | re.S):
        functions[name] = ("".join(ret.replace("const", "").split()), c_types(args))
    return version, enums, fields, functions, parse_entry_points(text)


def ctype_of(c_type):
    """The ctypes type the package must use for a C type of the header."""
    if c_type in CTYPES:
        return CTYPES[c_type]
    if c_type == "int64_t*":
        return ctypes.POINTER(ctypes.c_int64)
    if c_type == "int32_t*":
        return ctypes.POINTER(ctypes.c_int32)
    if c_type == "calib_info*":
        return ctypes.POINTER(_abi.Info)
    if c_type == "calib_entry_points*":
        return ctypes.POINTER(_abi.EntryPoints)
    if c_type.endswith("*"):
        return ctypes.c_void_p  # data pointers: float, uint16_t, void
    raise AssertionError(f"no ctypes mapping for {c_type}")


HEADER_ABI = parse_header(HEADER)


def test_abi_version_and_enums_match_the_header():
    version, enums, _, _, _ = HEADER_ABI
    assert _abi.ABI_VERSION == version == calibc.ABI_VERSION
    expected = {name: value for name, value in enums.items() if name.startswith(("CALIB_OK", "CALIB_ERR"))}
    assert _abi.STATUS == expected
    assert _abi.DTYPE == {name: value for name, value in enums.items() if name in ("CALIB_F32", "CALIB_BF16", "CALIB_F16")}
    assert set(enums) == set(_abi.STATUS) | set(_abi.DTYPE), "an enum of the header that _abi.py does not know"
    assert set(errors.STATUS_TEXT) == set(_abi.STATUS.values()) - {0}
    assert errors._CALIB_ERR_ARGUMENT == _abi.STATUS["CALIB_ERR_ARGUMENT"]


def test_info_struct_matches_the_header():
    _, _, fields, _, _ = HEADER_ABI
    ours = [(name, t) for name, t in _abi.Info._fields_]
    assert [name for name, _ in ours] == [name for name, _ in fields]
    for (name, c_type), (_, ctype) in zip(fields, ours):
        expected = ctype_of(c_type)
        if c_type in ("int32_t*", "float*"):
            assert ctype._type_ is {"int32_t*": ctypes.c_int32, "float*": ctypes.c_float}[c_type], name
        else:
            assert ctype is expected, (name, c_type, ctype)


def test_every_function_matches_the_header():
    _, _, _, functions, _ = HEADER_ABI
    assert set(functions) == set(_abi.FUNCTIONS), "functions only in one of the header and _abi.py"
    for name, (ret, args) in functions.items():
        restype, argtypes, since = _abi.FUNCTIONS[name]
        assert since <= _abi.ABI_VERSION
        assert len(argtypes) == len(args), name
        for i, (c_type, ctype) in enumerate(zip(args, argtypes)):
            expected = ctype_of(c_type)
            if c_type.endswith("*") and c_type not in ("char*",) and expected is not ctypes.c_void_p:
                assert ctype._type_ is expected._type_, (name, i, c_type)
            else:
                assert ctype is expected, (name, i, c_type, ctype)
        if ret in ("calib_info*", "calib_entry_points*"):
            assert restype._type_ is ctype_of(ret)._type_, name
        else:
            assert restype is ctype_of(ret), name


def test_entry_point_table_matches_the_header():
    _, _, _, functions, entry_points = HEADER_ABI
    if entry_points is None:
        assert "calib_get_entry_points" not in functions
        return
    assert entry_points[0] == ("abi_version", "int32_t")
    assert [name for name, _ in entry_points[1:]] == _abi.ENTRY_POINTS
    for (name, (ret, args)), (field, ctype) in zip(entry_points[1:], _abi.EntryPoints._fields_[1:]):
        # Each pointer has the prototype of the function it points to.
        assert (ret, args) == functions["calib_" + name], name
        assert ctype._restype_ is _abi.FUNCTIONS["calib_" + name][0] and \
            list(ctype._argtypes_) == list(_abi.FUNCTIONS["calib_" + name][1]), name


def test_the_parser_sees_the_header_we_think_it_does():
    # Guards the guard: the layer entry must be found with its 15 arguments.
    _, _, fields, functions, _ = HEADER_ABI
    assert functions["calib_attention_layer"][1][:3] == ["int32_t", "int32_t", "int32_t"]
    assert len(functions["calib_attention_layer"][1]) == 15
    assert functions["calib_attention_layer"][1][-1] == "int64_t*"
    assert ("mask_sha256", "char*") in fields and len(functions) >= 9


def test_a_compiled_library_exports_its_version_and_shape(tmp_path):
    masks = random_masks(1, tokens=200, head_dim=16, block=32, layers=2, heads=3, timesteps=(3, 9))
    kernels = compile_library(masks, tmp_path)
    for name, (_, _, since) in _abi.FUNCTIONS.items():
        if since <= kernels.abi_version:
            assert hasattr(kernels.lib, name), name
    assert (kernels.tokens, kernels.head_dim, kernels.block, kernels.layers, kernels.heads) == (200, 16, 32, 2, 3)
    assert kernels.steps == (3, 9)
    assert kernels.model == "test"
    kernels.require_source(tmp_path / "masks.json")
    other = tmp_path / "other.json"
    random_masks(2, tokens=200, head_dim=16, block=32, layers=2, heads=3, timesteps=(3, 9)).write(other)
    with pytest.raises(calibc.CalibError, match="SHA-256"):
        kernels.require_source(other)
    if kernels.abi_version >= 2:
        assert kernels.isa in ("avx512-bf16", "avx512", "avx2", "sse", "portable")
    assert kernels.team_size() >= 1
    assert calibc.load(kernels.path) is kernels


def test_per_head_entries_report_abi_errors(tmp_path):
    kernels = compile_library(random_masks(3, tokens=130, head_dim=16, block=32, heads=2, timesteps=(0,)), tmp_path)
    q = torch.randn(130, 16)
    with pytest.raises(calibc.CalibError, match="no plan") as e:
        kernels.attention(4, 0, 0, q, q, q)
    assert e.value.status == _abi.STATUS["CALIB_ERR_NO_PLAN"]
    with pytest.raises(calibc.CalibError, match="shape mismatch"):
        kernels.attention(0, 0, 0, q[:-1], q[:-1], q[:-1])
    out = torch.full((130, 16), float("nan"))
    kernels.dense_attention(q, q, q, out=out)
    expected = torch.softmax(q.double() @ q.double().T / 4.0, -1) @ q.double()
    assert (out.double() - expected).abs().max().item() < 1e-5


def test_cuda_functions_match_the_cuda_header():
    """_abi.CUDA_FUNCTIONS against include/calib_cuda.h of the CUDA target; its statuses, dtypes
    and info struct are calib_abi.h's, which the tests above check through the CPU header."""
    _, enums, fields, functions, _ = parse_header(os.path.join(INCLUDE, "calib_cuda.h"), "CALIB_CUDA_ABI_VERSION")
    assert set(enums) == set(_abi.STATUS) | set(_abi.DTYPE) | set(_abi.FP8)
    assert [name for name, _ in fields] == [name for name, _ in _abi.Info._fields_]
    assert set(functions) == set(_abi.CUDA_FUNCTIONS)
    for name, (ret, args) in functions.items():
        restype, argtypes = _abi.CUDA_FUNCTIONS[name]
        assert len(argtypes) == len(args), name
        for c_type, ctype in zip(args, argtypes):
            if c_type == "int64_t*":
                assert ctype is _abi._strides, (name, c_type)
            else:
                assert ctype is ctype_of(c_type), (name, c_type, ctype)
        if ret == "calib_info*":
            assert restype._type_ is _abi.Info, name
        else:
            assert restype is ctype_of(ret), name


def test_calibc_version_names_the_headers_abi_versions():
    from conftest import run_calibc

    cuda_version = parse_header(os.path.join(INCLUDE, "calib_cuda.h"), "CALIB_CUDA_ABI_VERSION")[0]
    assert f"(kernel C ABI {HEADER_ABI[0]}, CUDA ABI {cuda_version})" in run_calibc("--version")
