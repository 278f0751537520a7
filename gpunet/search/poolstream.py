"""Pools larger than memory: columns sampled and estimated chunk by chunk into disk-backed arrays,
and the rows of one latency group read back from a pool file without loading the rest.

A pool's vectors take 41 x 8 bytes a network, 33 GB for 100 million: more than the 24 GiB of a
workstation. :func:`sample_columns` appends each chunk to one ``.npy`` file per column (plain
writes: nothing stays mapped, so resident memory stays at a chunk) and :func:`write_npz` copies
those files into the pool ``.npz`` piece by piece. :func:`read_rows` reads one
``.npy`` member of a pool ``.npz`` a chunk at a time and keeps the rows asked for, so
``Pool.load(path, group=g)`` needs memory for group ``g`` only.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from typing import Dict, Optional, Union

import numpy as np

__all__ = ["sample_columns", "write_npz", "read_rows", "ESTIMATE_COLUMNS"]

#: per-network columns a table estimate gives: pool field -> (EstimateResult attribute, dtype)
ESTIMATE_COLUMNS = {"latency_ms": ("latency_ms", np.float64), "table_sum_ms": ("table_sum_ms", np.float64),
                    "n_blocks": ("n_blocks", np.int64), "estimated": ("estimated", bool),
                    "missing": ("missing", bool)}


def sample_columns(directory: str, space, n: int, seed: int, estimator=None,
                   chunk: int = 1 << 20) -> Dict[str, str]:
    """``vectors`` (and with an ``estimator``, a :class:`~gpunet.search.lut.LatencyEstimator`, the
    :data:`ESTIMATE_COLUMNS`) of ``n`` Sobol-sampled networks, written ``chunk`` networks at a time
    as ``.npy`` files in ``directory`` (plain appends, so nothing stays mapped in this process):
    the same networks and estimates ``Pool.sample`` gives. Returns ``{field: .npy path}``."""
    columns = {"vectors": (np.int64, (n, space.num_genes))}
    if estimator is not None:
        columns.update({name: (dtype, (n,)) for name, (_, dtype) in ESTIMATE_COLUMNS.items()})
    paths = {name: os.path.join(directory, f"{name}.npy") for name in columns}
    files = {name: _npy_writer(paths[name], *columns[name]) for name in columns}
    try:
        for vectors in space.iter_sample(n, seed=seed, chunk=chunk):
            files["vectors"].write(vectors.tobytes())
            if estimator is not None:
                result = estimator.estimate(vectors, check=False)
                for name, (attr, dtype) in ESTIMATE_COLUMNS.items():
                    files[name].write(np.ascontiguousarray(getattr(result, attr), dtype=dtype).tobytes())
    finally:
        for f in files.values():
            f.close()
    return paths


def _npy_writer(path: str, dtype, shape):
    """An open file holding an ``.npy`` header for ``shape``; the rows are appended after it."""
    from numpy.lib import format as npy

    f = open(path, "wb")
    npy.write_array_header_2_0(f, {"descr": npy.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                                   "shape": tuple(shape)})
    return f


def write_npz(path: str, fields: Dict[str, Union[np.ndarray, str]], chunk_bytes: int = 64 << 20) -> None:
    """A compressed ``.npz`` at ``path`` (a temp file: the caller renames it): array fields written
    with ``np.lib.format``, and fields given as the path of an ``.npy`` file copied into the archive
    ``chunk_bytes`` at a time. Deflate at level 1: for a million pool vectors 1.5 s and 45 MB where
    ``np.savez_compressed``'s level 6 takes 7.8 s for 30 MB (``np.load`` reads either)."""
    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
        for name, value in fields.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                if isinstance(value, str):
                    with open(value, "rb") as src:
                        shutil.copyfileobj(src, member, chunk_bytes)
                else:
                    npy.write_array(member, np.asanyarray(value), allow_pickle=False)


def read_rows(path: str, name: str, keep: np.ndarray, chunk_bytes: int = 64 << 20) -> Optional[np.ndarray]:
    """Rows of member ``name`` (an ``.npy`` in the ``.npz`` at ``path``) where ``keep`` is True,
    read ``chunk_bytes`` at a time; None when the file has no such member. ``ValueError`` when the
    member is not a C-ordered array of ``len(keep)`` rows."""
    from numpy.lib import format as npy

    with zipfile.ZipFile(path) as zf:
        if f"{name}.npy" not in zf.namelist():
            return None
        with zf.open(f"{name}.npy") as f:
            version = npy.read_magic(f)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if fortran or not shape or shape[0] != len(keep) or dtype.hasobject:
                raise ValueError(f"{path}: field {name!r} must be a C-ordered array of {len(keep)} rows, got "
                                 f"shape {shape}{' (Fortran order)' if fortran else ''} of {dtype}")
            row = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
            step = max(1, chunk_bytes // max(row, 1))
            out = np.empty((int(keep.sum()),) + tuple(shape[1:]), dtype=dtype)
            filled = 0
            for start in range(0, len(keep), step):
                rows = min(step, len(keep) - start)
                data = f.read(rows * row)
                if len(data) != rows * row:
                    raise ValueError(f"{path}: field {name!r} is truncated (row {start + len(data) // max(row, 1)} "
                                     f"of {len(keep)})")
                part = np.frombuffer(data, dtype=dtype).reshape((rows,) + tuple(shape[1:]))[keep[start:start + rows]]
                out[filled:filled + len(part)] = part
                filled += len(part)
    return out
