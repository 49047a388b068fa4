"""safetensors without the safetensors package: what the recorder writes and the benchmark reads."""

import json
import struct

import torch

__all__ = ["save_file", "read_header", "read_tensor"]

_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.uint8: "U8", torch.uint16: "U16"}
_TORCH = {name: dtype for dtype, name in _DTYPES.items()}


def save_file(tensors, path, metadata):
    """Header, then raw little-endian data, tensors in name order."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)), 8 + n


def read_tensor(path, name):
    """One tensor of a safetensors file, read alone."""
    header, base = read_header(path)
    if name not in header:
        raise KeyError(f"{path}: no tensor {name!r}")
    info = header[name]
    start, end = info["data_offsets"]
    if end == start:  # torch.frombuffer refuses an empty buffer
        return torch.empty(info["shape"], dtype=_TORCH[info["dtype"]])
    with open(path, "rb") as f:
        f.seek(base + start)
        raw = bytearray(f.read(end - start))
    return torch.frombuffer(raw, dtype=_TORCH[info["dtype"]]).reshape(info["shape"])
