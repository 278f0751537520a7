"""Read a safetensors file as tensors over one private memory map of it.

``safetensors.torch.load_file`` maps the file too, but makes each tensor through its own call
(~14 us each: 8 ms for GPUNet-2's 566); here the header is parsed and checked once and each
tensor is ``torch.frombuffer`` over its bytes of one copy-on-write ``mmap``: its own storage of
exactly its size (saving or copying one tensor takes only its bytes), nothing read until used,
and writing to a tensor copies its pages (the file never changes). The map (and the file
descriptor Python's ``mmap`` keeps) closes when the last of its tensors goes. The checks are the format's own
(https://github.com/huggingface/safetensors#format): an 8-byte little-endian header length, a
JSON object of name -> dtype / shape / data_offsets plus an optional ``__metadata__`` of
strings, and offsets that cover the data after the header exactly, in any order, without holes
or overlaps. A file that breaks them raises :class:`SafetensorsFormatError` saying what is
wrong. What this reader does not handle (a dtype torch lacks, data not aligned to its element
size, a big-endian machine) returns None: the caller falls back to the safetensors library.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import struct
import sys
from typing import Any, Dict, Optional, Tuple

import torch

__all__ = ["SafetensorsFormatError", "read_views"]

#: safetensors dtype -> (torch dtype name, bytes per element); looked up on torch at read time
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
          "BOOL": ("bool", 1), "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8),
          "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1)}
MAX_HEADER = 100_000_000  # the safetensors library's own limit


class SafetensorsFormatError(ValueError):
    """The file is not a valid safetensors file; the message says where it breaks the format."""


def _header(path: str, size: int) -> Tuple[int, Dict[str, Any]]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsFormatError(f"{size} bytes: too short for the 8-byte header length")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER or 8 + n > size:
            raise SafetensorsFormatError(f"header length {n} does not fit a {size}-byte file")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsFormatError(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError("header is not a JSON object")
    return 8 + n, header


def _entry(name: str, e: Any) -> Tuple[Optional[torch.dtype], Tuple[int, ...], int, int]:
    """(torch dtype or None when torch lacks it, shape, start, end) of one checked header entry."""
    if not isinstance(e, dict) or e.get("dtype") not in DTYPES:
        raise SafetensorsFormatError(f"tensor {name!r}: dtype {e.get('dtype') if isinstance(e, dict) else e!r} "
                                     f"is not one of {', '.join(DTYPES)}")
    shape, offsets = e.get("shape"), e.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise SafetensorsFormatError(f"tensor {name!r}: shape {shape!r} is not a list of integers >= 0")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(
            isinstance(o, int) and not isinstance(o, bool) for o in offsets) or not 0 <= offsets[0] <= offsets[1]:
        raise SafetensorsFormatError(f"tensor {name!r}: data_offsets {offsets!r} is not [start, end] with "
                                     f"0 <= start <= end")
    torch_name, itemsize = DTYPES[e["dtype"]]
    if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
        raise SafetensorsFormatError(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} of "
                                     f"{e['dtype']} ({math.prod(shape) * itemsize} expected)")
    return getattr(torch, torch_name, None), tuple(shape), offsets[0], offsets[1]


def _check_coverage(entries: Dict[str, Tuple[Any, Any, int, int]], data_bytes: int) -> None:
    end = 0
    for name, (_, _, a, b) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if a != end:
            raise SafetensorsFormatError(f"tensor {name!r} starts at byte {a} of the data, expected {end} "
                                         f"({'overlap' if a < end else 'hole'})")
        end = b
    if end != data_bytes:
        raise SafetensorsFormatError(f"the tensors cover {end} bytes of data, the file holds {data_bytes}")


def read_views(path: str) -> Optional[Tuple[Dict[str, torch.Tensor], Dict[str, str]]]:
    """``path``'s tensors (over one private map, in the header's order) and metadata, or
    None when this reader cannot view them (see the module docstring). Raises
    :class:`SafetensorsFormatError` for a file that breaks the format."""
    size = os.path.getsize(path)
    start, header = _header(path, size)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise SafetensorsFormatError("__metadata__ is not an object of strings")
    entries = {name: _entry(name, e) for name, e in header.items()}
    _check_coverage(entries, size - start)
    if sys.byteorder != "little" or any(dt is None or (start + a) % dt.itemsize
                                        for dt, _, a, _ in entries.values()):
        return None
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
    tensors = {name: torch.frombuffer(mm, dtype=dt, count=(b - a) // dt.itemsize, offset=start + a).view(shape)
               if b > a else torch.empty(shape, dtype=dt) for name, (dt, shape, a, b) in entries.items()}
    return tensors, dict(meta)
