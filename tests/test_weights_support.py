"""Shared helpers for the weights tests: a loopback mirror with real Range support and fault
injection, and NVIDIA-style checkpoint fixtures (their key names, their zip layout)."""
from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import threading
import time
import urllib.request
import zipfile
from typing import Dict, List

import torch

import gpunet
from gpunet.nvidia import state_dict_to_nvidia
from gpunet.registry import get_registry

NGC_URL = "https://api.ngc.nvidia.com/v2/models/nvidia/dle/{ngc_id}/versions/21.12.0_amp/zip"


class Mirror:
    """An HTTP server on 127.0.0.1 serving in-memory files.

    ``drop_after[path] = n``: the next request for ``path`` sends n bytes then closes the
    connection. ``ranges=False`` ignores Range headers; ``bad_206=True`` answers a Range with 206
    and the whole body (``Content-Range: bytes 0-...``). ``delay`` sleeps per 64 KiB chunk.
    Every request is logged as ``(path, range_header, status)``. ``hub(...)`` also serves a file
    the way the Hugging Face Hub does (``/<repo>/resolve/<revision>/<file>`` with commit and ETag
    headers), for ``hf_hub_download(endpoint=...)``.
    """

    def __init__(self):
        self.files: Dict[str, bytes] = {}
        self.hub_headers: Dict[str, Dict[str, str]] = {}
        self.drop_after: Dict[str, int] = {}
        self.ranges = True
        self.bad_206 = False
        self.delay = 0.0
        self.requests: List[tuple] = []
        self._lock = threading.Lock()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 20

            def log_message(self, *args):
                pass

            def end_headers(self):
                for k, v in mirror.hub_headers.get(self.path.split("?")[0], {}).items():
                    self.send_header(k, v)
                super().end_headers()

            def do_HEAD(self):
                path = self.path.split("?")[0]
                data = mirror.files.get(path)
                mirror._log(path, "HEAD", 200 if data is not None else 404)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()

            def do_GET(self):
                path = self.path.split("?")[0]
                rng = self.headers.get("Range")
                data = mirror.files.get(path)
                if data is None:
                    mirror._log(path, rng, 404)
                    self.send_error(404)
                    return
                start = 0
                if rng and mirror.bad_206:  # claims a partial answer but sends the whole body
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
                    status = 206
                elif rng and mirror.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        mirror._log(path, rng, 416)
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    status = 206
                else:
                    self.send_response(200)
                    status = 200
                self.send_header("Accept-Ranges", "bytes" if mirror.ranges else "none")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                mirror._log(path, rng, status)
                with mirror._lock:
                    limit = mirror.drop_after.pop(path, None)
                body = data[start:] if limit is None else data[start:start + limit]
                try:
                    for i in range(0, len(body), 1 << 16):
                        self.wfile.write(body[i:i + (1 << 16)])
                        if mirror.delay:
                            time.sleep(mirror.delay)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if limit is not None:
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def _log(self, path, rng, status):
        with self._lock:
            self.requests.append((path, rng, status))

    def hub(self, repo_id: str, revision: str, filename: str, data: bytes, etag: str) -> str:
        """Serve ``data`` as the Hub would; returns the endpoint URL."""
        path = f"/{repo_id}/resolve/{revision}/{filename}"
        self.files[path] = data
        self.hub_headers[path] = {"X-Repo-Commit": revision, "ETag": f'"{etag}"', "X-Linked-Etag": f'"{etag}"',
                                  "X-Linked-Size": str(len(data))}
        return self.url("")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> "Mirror":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def nvidia_checkpoint_bytes(name: str, seed: int = 0, ema_differs: bool = True) -> tuple:
    """``(model, bytes of <stem>.pth.tar)`` in NVIDIA's format: their key names; a timm training
    checkpoint with ``state_dict_ema`` and ``args`` (a Namespace), or a bare state_dict for P0/P1."""
    torch.manual_seed(seed)
    model = gpunet.get_model(name).eval()
    with torch.no_grad():  # non-trivial BN statistics so logits depend on every tensor
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.9, 1.1)
    ema = state_dict_to_nvidia(model.state_dict(), model.spec)
    info = get_registry().model_info(name)
    if name in ("gpunet-p0", "gpunet-p1"):
        obj = ema
    else:
        raw = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in ema.items()} if ema_differs else ema
        obj = {"epoch": 449, "arch": info["nvidia_config"], "state_dict": raw, "state_dict_ema": ema,
               "metric": info["top1"], "version": 2,
               "args": argparse.Namespace(model=info["nvidia_name"], lr=0.08, amp=True, model_ema=True)}
    buf = io.BytesIO()
    torch.save(obj, buf)
    return model, buf.getvalue()


def ngc_zip_bytes(name: str, pth_tar: bytes, compress: bool = True) -> bytes:
    """NGC's download: a zip holding ``<config stem>.pth.tar``."""
    stem = get_registry().model_info(name)["nvidia_config"][:-len(".json")]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED, compresslevel=1) as zf:
        zf.writestr(f"{stem}.pth.tar", pth_tar)
    return buf.getvalue()


def ngc_path(name: str) -> str:
    return f"/v2/models/nvidia/dle/{get_registry().model_info(name)['ngc_id']}/versions/21.12.0_amp/zip"


def mirror_manifest(mirror: Mirror, path: str, models=None, **overrides) -> str:
    """The packaged manifest with NGC URLs pointed at ``mirror``; writes it to ``path``."""
    from gpunet.weights.manifest import PACKAGED_MANIFEST

    data = json.load(open(PACKAGED_MANIFEST))
    for name, entry in list(data["models"].items()):
        if models is not None and name not in models:
            del data["models"][name]
            continue
        src = entry["variants"]["nvidia-ngc"]["sources"][0]
        assert src["url"] == NGC_URL.format(ngc_id=get_registry().model_info(name)["ngc_id"])
        src["url"] = mirror.url(ngc_path(name))
        for k, v in overrides.items():
            entry["variants"]["nvidia-ngc"][k] = v
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def test_mirror_serves_byte_ranges():
    payload = os.urandom(200_000)
    with Mirror() as m:
        m.files["/f"] = payload
        req = urllib.request.Request(m.url("/f"), headers={"Range": "bytes=150000-"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 206 and r.read() == payload[150000:]
        m.ranges = False
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200 and hashlib.sha256(r.read()).digest() == hashlib.sha256(payload).digest()
