"""The package's exceptions (docs/python.md, "Kernels and the layer call").

    CalibError (RuntimeError)            a non-zero status of the C ABI; a library that cannot be
                                         loaded or is not the one asked for
      ArgumentError (+ ValueError)       a bad argument caught before any C call: a tensor of the
                                         wrong shape, dtype, device or layout, an output that
                                         overlaps an input, an integer that does not fit its C type
    MasksError (ValueError)              a masks file (or masks built in Python) that calibc would
                                         refuse, with calibc's own message
"""

__all__ = ["ArgumentError", "CalibError", "MasksError"]

# What each status of enum calib_status (_abi.STATUS spells the names) means to a user; the codes
# are repeated here so this module imports nothing (test_abi.py checks them against the header).
_CALIB_ERR_ARGUMENT = 3
STATUS_TEXT = {
    1: "shape mismatch (tokens, heads or head_dim differ from the compiled shape)",
    2: "no plan for this (step, layer, head)",
    3: "bad argument (null pointer, unknown dtype, or overlapping or overflowing strides)",
    4: "out of memory",
    5: "the CUDA runtime refused the launch",
    6: "the kernel tables are not on the device and the stream is being captured into a CUDA graph "
       "(prepare the library before capture)",
    7: "FP8 needs the wgmma kernel: a library compiled for block 128 and head_dim 64 or 128, with "
       "CALIB_CUDA_KERNEL not set to mma",
}


class CalibError(RuntimeError):
    """A non-zero status of the C ABI (`.status`), or a library that cannot serve the call
    (`.status` -1)."""

    def __init__(self, status, message=None):
        if message is None:
            message = STATUS_TEXT.get(status, f"status {status}")
        super().__init__(message)
        self.status = status

    def __reduce__(self):
        return CalibError, (self.status, str(self))


class ArgumentError(CalibError, ValueError):
    """A bad argument, refused in Python before it reaches C (`.status` is CALIB_ERR_ARGUMENT).
    Also a ValueError, so `except ValueError` keeps working."""

    def __init__(self, message):
        super().__init__(_CALIB_ERR_ARGUMENT, message)

    def __reduce__(self):
        return ArgumentError, (str(self),)


class MasksError(ValueError):
    """masks.json, or masks built in Python, that calibc refuses. From `Masks.read` the message
    is exactly calibc's: `<file>: <JSON path or line, column>: <what was expected>`."""
