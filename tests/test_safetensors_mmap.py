"""Our safetensors reader against the safetensors library: the same tensors and metadata for
every file the library writes, and a refusal (naming what is wrong) wherever the library refuses."""
from __future__ import annotations

import json
import re
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import gpunet
from gpunet.checkpoint import CheckpointError, read_safetensors
from gpunet.safetensors_mmap import SafetensorsFormatError, read_views


def _same(ours, theirs):
    assert ours.keys() == theirs.keys()
    for k, t in theirs.items():
        o = ours[k]
        assert (o.dtype, o.shape) == (t.dtype, t.shape), k
        assert torch.equal(o.reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), k  # bit for bit


def _library(path):
    with safe_open(str(path), "pt") as f:
        return load_file(str(path)), dict(f.metadata() or {})


def test_every_dtype_and_shape_reads_as_the_library_reads_it(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g), "f64": torch.randn(7, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, 4, generator=g).half(), "bf16": torch.randn(9, generator=g).bfloat16(),
        "i64": torch.randint(-2**40, 2**40, (4,), generator=g), "i32": torch.randint(-9, 9, (3, 3), generator=g,
                                                                                      dtype=torch.int32),
        "i16": torch.arange(5, dtype=torch.int16), "i8": torch.arange(-3, 3, dtype=torch.int8),
        "u8": torch.arange(250, 256, dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4), "odd": torch.arange(3, dtype=torch.int8),
        "f8": torch.randn(6, generator=g).to(torch.float8_e4m3fn),
    }
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"gpunet_model": "x", "note": "ü"})
    (ours, meta), (theirs, their_meta) = read_views(str(path)), _library(path)
    _same(ours, theirs)
    assert meta == their_meta == {"gpunet_model": "x", "note": "ü"}
    ours["f32"].add_(1.0)  # a private map: the tensor changes, the file does not
    _same(load_file(str(path)), theirs)


def test_a_gpunet_state_dict_loads_identically(tmp_path):
    model = gpunet.get_model("gpunet-0")
    path = tmp_path / "g0.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    sd, meta = read_safetensors(str(path))
    _same(sd, load_file(str(path)))
    assert meta == {} and all(t.is_contiguous() for t in sd.values())


def _raw(path, header, data=b"", length=None):
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return str(path)


@pytest.mark.parametrize("header, data, length, words", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None, "cover 8 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12, None, "the file holds 12"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "12 expected"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, b"\0" * 6, None, "overlap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "hole"),
    ({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, b"\0", None, "dtype 'Q7'"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "shape [-1]"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, None, "data_offsets [4, 0]"),
    ({"__metadata__": {"k": 1}}, b"", None, "__metadata__"),
    ({}, b"", 10**6, "header length 1000000"),
])
def test_files_the_library_refuses_are_refused_saying_why(tmp_path, header, data, length, words):
    path = _raw(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(Exception):
        load_file(path)  # the library refuses it too
    with pytest.raises(SafetensorsFormatError, match=re.escape(words)):
        read_views(path)
    with pytest.raises(CheckpointError, match=f"bad.safetensors: not a valid safetensors file.*{re.escape(words)}"):
        read_safetensors(path)


def test_not_json_and_too_short(tmp_path):
    bad = tmp_path / "b.safetensors"
    bad.write_bytes(struct.pack("<Q", 4) + b"{no}")
    with pytest.raises(SafetensorsFormatError, match="not valid JSON"):
        read_views(str(bad))
    bad.write_bytes(b"\1\2")
    with pytest.raises(SafetensorsFormatError, match="too short"):
        read_views(str(bad))


def test_data_not_aligned_to_its_element_size_goes_through_the_library(tmp_path):
    data = torch.arange(3, dtype=torch.int8).numpy().tobytes() + torch.ones(2).numpy().tobytes()
    path = _raw(tmp_path / "unaligned.safetensors", {"a": {"dtype": "I8", "shape": [3], "data_offsets": [0, 3]},
                                                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]}},
                data)
    assert read_views(path) is None
    try:
        theirs = load_file(path)
    except Exception as e:  # the library may refuse misaligned data: then so do we, naming the file
        with pytest.raises(CheckpointError, match="unaligned.safetensors"):
            read_safetensors(path)
        pytest.skip(f"this safetensors version refuses unaligned data ({type(e).__name__})")
    _same(read_safetensors(path)[0], theirs)


def test_each_tensor_has_a_storage_of_its_own_size(tmp_path):
    """As with the library's reader: saving or copying one tensor takes its bytes, not the file's."""
    import copy
    import io

    path = tmp_path / "two.safetensors"
    save_file({"big": torch.zeros(100_000), "small": torch.ones(3)}, str(path))
    sd, _ = read_views(str(path))
    assert sd["small"].untyped_storage().nbytes() == 12
    buf = io.BytesIO()
    torch.save(sd["small"], buf)
    assert len(buf.getvalue()) < 2000 and torch.equal(copy.deepcopy(sd["small"]), torch.ones(3))
