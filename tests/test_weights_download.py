"""Download, verification, cache and offline behaviour of gpunet.weights against a loopback mirror."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import gpunet
from gpunet.weights import (CacheCorruptError, DownloadError, ManifestError, WeightsNotCachedError,
                            cache_root, load_manifest)
from gpunet.weights.download import download_url
from test_weights_support import Mirror, mirror_manifest, ngc_path, ngc_zip_bytes, nvidia_checkpoint_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings("ignore:.*publisher gives no checksum")


@pytest.fixture(scope="module")
def g0():
    """GPUNet-0 in NVIDIA's published format: (reference model, .pth.tar bytes, NGC zip bytes)."""
    model, pth = nvidia_checkpoint_bytes("gpunet-0", ema_differs=False)  # EMA choice: test_weights_convert
    return model, pth, ngc_zip_bytes("gpunet-0", pth, compress=False)


@pytest.fixture
def mirror(g0, tmp_path, monkeypatch):
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = g0[2]
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(m, str(tmp_path / "manifest.json")))
        yield m


def cache_files():
    out = []
    for root, _, files in os.walk(cache_root()):
        out += [os.path.join(root, f) for f in files if not f.endswith(".lock")]
    return sorted(out)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pretrained_from_ngc_zip_downloads_once_and_checks_recorded_hash(g0, mirror):
    with pytest.warns(UserWarning, match="publisher gives no checksum.*recorded") as warned:
        model = gpunet.get_model("gpunet-0", pretrained=True)
    assert warned[0].filename == __file__  # points at the caller, not at gpunet's internals
    assert same_weights(model, g0[0])  # EMA weights, NVIDIA names converted, loaded strictly
    files = cache_files()
    assert [os.path.basename(f) for f in files] == ["0.65ms.pth.tar", "0.65ms.pth.tar.json"]
    rec = json.load(open(files[1]))
    assert rec["verified_by"] == "first-download"
    assert rec["sha256"] == hashlib.sha256(open(files[0], "rb").read()).hexdigest()
    assert rec["archive_sha256"] == hashlib.sha256(g0[2]).hexdigest()
    n = len(mirror.requests)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: no warning on later loads
        again = gpunet.get_model("gpunet-0", pretrained=True, weights="nvidia-ngc")
    assert same_weights(again, g0[0]) and len(mirror.requests) == n
    with open(files[0], "r+b") as f:  # damage the cached file on disk
        f.seek(5000)
        f.write(b"\0" * 8)
    with pytest.raises(CacheCorruptError, match=f"expected {rec['sha256']}, got [0-9a-f]{{64}}"):
        gpunet.get_model("gpunet-0", pretrained=True)


def test_resumes_with_range_after_server_drops_mid_file(g0, mirror):
    mirror.drop_after[ngc_path("gpunet-0")] = len(g0[2]) // 3
    model = gpunet.get_model("gpunet-0", pretrained=True)
    assert same_weights(model, g0[0])
    statuses = [(r[1], r[2]) for r in mirror.requests]
    assert statuses == [(None, 200), (f"bytes={len(g0[2]) // 3}-", 206)]
    assert not [f for f in cache_files() if f.endswith((".part", ".zip"))]


def test_restarts_when_server_ignores_ranges(g0, mirror):
    mirror.ranges = False
    mirror.drop_after[ngc_path("gpunet-0")] = 10_000
    assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0])
    assert [r[2] for r in mirror.requests] == [200, 200]


def test_interrupted_download_keeps_partial_and_next_call_resumes(tmp_path):
    payload = os.urandom(300_000)
    with Mirror() as m:
        m.files["/w.bin"] = payload
        m.drop_after["/w.bin"] = 100_000
        dest = str(tmp_path / "w.bin")
        with pytest.raises(DownloadError, match=r"/w.bin: download failed .* 100000 bytes kept in .*w.bin.part"):
            download_url(m.url("/w.bin"), dest, retries=0)
        assert not os.path.exists(dest) and os.path.getsize(dest + ".part") == 100_000
        sha = download_url(m.url("/w.bin"), dest, sha256=hashlib.sha256(payload).hexdigest())
        assert m.requests[-1][1:] == ("bytes=100000-", 206)
    assert sha == hashlib.sha256(payload).hexdigest() and open(dest, "rb").read() == payload
    assert not os.path.exists(dest + ".part")


def test_corrupted_bytes_against_known_checksum(g0, tmp_path, monkeypatch):
    bad = bytearray(g0[2])
    bad[len(bad) // 2] ^= 0xFF
    good_sha = hashlib.sha256(g0[2]).hexdigest()
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = bytes(bad)
        path = mirror_manifest(m, str(tmp_path / "m.json"))
        data = json.load(open(path))
        data["models"]["gpunet-0"]["variants"]["nvidia-ngc"]["sources"][0]["archive_sha256"] = good_sha
        json.dump(data, open(path, "w"))
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", path)
        with pytest.raises(DownloadError) as e:
            gpunet.get_model("gpunet-0", pretrained=True)
    msg = str(e.value)
    assert m.url(ngc_path("gpunet-0")) in msg and f"expected {good_sha}" in msg
    assert f"got {hashlib.sha256(bytes(bad)).hexdigest()}" in msg
    assert cache_files() == []  # no weight file, no partial, no archive


def test_corrupted_member_without_checksum_is_caught_by_zip_crc(g0, tmp_path, monkeypatch):
    bad = bytearray(ngc_zip_bytes("gpunet-0", g0[1], compress=False))
    bad[len(bad) // 2] ^= 0xFF  # inside the stored member's data
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = bytes(bad)
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(m, str(tmp_path / "m.json")))
        with pytest.raises(DownloadError, match=r"127\.0\.0\.1.*(CRC|corrupt)"):
            gpunet.get_model("gpunet-0", pretrained=True)
    assert cache_files() == []


def test_truncated_file_is_rejected_and_nothing_kept(g0, tmp_path, monkeypatch):
    with Mirror() as m:  # the mirror itself holds a truncated copy (the server says it is complete)
        m.files[ngc_path("gpunet-0")] = g0[2][: len(g0[2]) * 2 // 3]
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(m, str(tmp_path / "m.json")))
        with pytest.raises(DownloadError, match="not a valid zip"):
            gpunet.get_model("gpunet-0", pretrained=True)
    assert cache_files() == []


def test_missing_file_on_mirror_names_the_url(tmp_path, monkeypatch):
    with Mirror() as m:
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(m, str(tmp_path / "m.json")))
        with pytest.raises(DownloadError, match=r"(?s)could not fetch .*gpunet-0.*HTTP 404"):
            gpunet.get_model("gpunet-0", pretrained=True)
    assert cache_files() == []


@pytest.mark.slow
def test_two_processes_download_the_same_file_once(g0, mirror):
    mirror.delay = 0.003  # ~2 s transfer (45 MB in 64 KiB chunks) so the two processes overlap
    code = textwrap.dedent("""
        import sys, warnings
        warnings.simplefilter("ignore")
        from gpunet.weights import fetch_weights
        from gpunet.weights.download import sha256_file
        path, _ = fetch_weights("gpunet-0")
        print(path, sha256_file(path))
    """)
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]  # same path, same hash
    assert [r for r in mirror.requests if r[2] in (200, 206)] == [(ngc_path("gpunet-0"), None, 200)]
    path, sha = outs[0][0].split()
    assert [os.path.basename(f) for f in cache_files()] == ["0.65ms.pth.tar", "0.65ms.pth.tar.json"]
    assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0])


@pytest.mark.parametrize("var", ["GPUNET_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_with_empty_cache_says_what_to_download_and_where(var, g0, tmp_path, monkeypatch):
    monkeypatch.setenv(var, "1")
    with pytest.raises(WeightsNotCachedError) as e:
        gpunet.get_model("gpunet-0", pretrained=True)
    msg = str(e.value)
    dest = os.path.join(cache_root(), "gpunet-0", "nvidia-ngc", "0.65ms.pth.tar")
    assert "downloads are off" in msg
    assert "https://api.ngc.nvidia.com/v2/models/nvidia/dle/gpunet_0_pyt_ckpt/versions/21.12.0_amp/zip" in msg
    assert "gpunet weights import gpunet-0" in msg and dest in msg and "0.65ms.pth.tar" in msg
    assert cache_files() == []
    # following the advice works offline: put the file where the message says
    os.makedirs(os.path.dirname(dest))
    open(dest, "wb").write(g0[1])
    with pytest.warns(UserWarning, match="no checksum"):
        assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0])


def test_local_hugging_face_cache_offline(g0, tmp_path, monkeypatch):
    """A safetensors variant served from a Hugging Face cache with HF_HUB_OFFLINE=1."""
    import huggingface_hub
    from huggingface_hub import constants, scan_cache_dir

    from gpunet.weights import convert_to_safetensors

    st = tmp_path / "gpunet-0.safetensors"
    pth = tmp_path / "0.65ms.pth.tar"
    pth.write_bytes(g0[1])
    res = convert_to_safetensors("gpunet-0", str(pth), str(st))
    # the Hugging Face cache layout: blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main
    hf_cache, repo, commit = tmp_path / "hf", "nvidia-gpunet/gpunet-0", "0123456789abcdef0123456789abcdef01234567"
    rdir = hf_cache / ("models--" + repo.replace("/", "--"))
    (rdir / "blobs").mkdir(parents=True)
    (rdir / "blobs" / res["sha256"]).write_bytes(st.read_bytes())
    (rdir / "snapshots" / commit).mkdir(parents=True)
    os.symlink(f"../../blobs/{res['sha256']}", rdir / "snapshots" / commit / "gpunet-0.safetensors")
    (rdir / "refs").mkdir()
    (rdir / "refs" / "main").write_text(commit)
    info = scan_cache_dir(hf_cache)  # huggingface_hub recognises the layout
    assert [r.repo_id for r in info.repos] == [repo] and not info.warnings

    manifest = load_manifest()
    from gpunet.weights.convert import variant_for_conversion

    var = variant_for_conversion(manifest, "gpunet-0", res, hf_repo=repo, hf_revision=commit)
    path = tmp_path / "m.json"
    path.write_text(manifest.with_variant(var, prefer=True).to_json())
    monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    model = gpunet.get_model("gpunet-0", pretrained=True)  # default: safetensors preferred, cached in HF
    assert same_weights(model, g0[0])
    assert huggingface_hub.__version__
    recs = [json.load(open(f)) for f in cache_files() if f.endswith(".json")]
    assert len(recs) == 1 and recs[0]["variant"] == "safetensors" and recs[0]["verified_by"] == "manifest"
    assert recs[0]["path"].startswith(str(hf_cache))  # HF's cache is used in place, not copied
    # the published upload is timm's hf_hub_id (pinned: timm's ORG/NAME@COMMIT); timm's pretrained=True
    # with it goes through gpunet.weights (the manifest's sha256 checked), not an unchecked Hub file
    import timm

    cfg = model.pretrained_cfg
    assert (cfg["hf_hub_id"], cfg["hf_hub_filename"]) == (f"{repo}@{commit}", "gpunet-0.safetensors")
    assert timm.models.PretrainedCfg(**{k: cfg[k] for k in ("hf_hub_id", "hf_hub_filename")}).has_weights
    uploaded = timm.create_model("gpunet_0", pretrained=True, pretrained_cfg_overlay=dict(
        hf_hub_id=cfg["hf_hub_id"], hf_hub_filename=cfg["hf_hub_filename"]))
    assert same_weights(uploaded, g0[0]) and uploaded.hub_weights == "gpunet-0"
    # a revision that is not cached: clear error, nothing recorded
    var2 = variant_for_conversion(manifest, "gpunet-0", res, hf_repo=repo, hf_revision="f" * 40)
    path.write_text(manifest.with_variant(var2, prefer=True).to_json())
    monkeypatch.setenv("GPUNET_HOME", str(tmp_path / "home2"))
    with pytest.raises(WeightsNotCachedError, match=f"hf://{repo}/gpunet-0.safetensors@f{{40}}"):
        gpunet.get_model("gpunet-0", pretrained=True, weights="safetensors")


def test_variant_selection_errors(mirror):
    with pytest.raises(ManifestError, match="no weight variant 'fp16'.*variants: safetensors, nvidia-ngc"):
        gpunet.get_model("gpunet-0", pretrained=True, weights="fp16")
    with pytest.raises(WeightsNotCachedError, match="no download source.*gpunet weights convert"):
        gpunet.get_model("gpunet-0", pretrained=True, weights="safetensors")
    assert mirror.requests == []


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    payload = os.urandom(3 << 20)
    with Mirror() as m:
        m.files["/p.bin"] = payload
        download_url(m.url("/p.bin"), str(tmp_path / "quiet.bin"))  # stderr is not a terminal here
        assert capsys.readouterr().err == ""
        download_url(m.url("/p.bin"), str(tmp_path / "bar.bin"), progress=True)
    err = capsys.readouterr().err
    assert "bar.bin" in err and "3.00M" in err


def test_hugging_face_source_downloads_into_hf_cache_and_verifies(g0, tmp_path, monkeypatch):
    """A pinned Hub file fetched through ``hf_hub_download`` from a loopback Hub endpoint."""
    from huggingface_hub import constants

    from gpunet.weights import convert_to_safetensors
    from gpunet.weights.convert import variant_for_conversion

    (tmp_path / "0.65ms.pth.tar").write_bytes(g0[1])
    res = convert_to_safetensors("gpunet-0", str(tmp_path / "0.65ms.pth.tar"), str(tmp_path / "g0.safetensors"))
    data, repo, commit = (tmp_path / "g0.safetensors").read_bytes(), "nvidia-gpunet/gpunet-0", "c" * 40
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    manifest = load_manifest()
    with Mirror() as m:
        endpoint = m.hub(repo, commit, "g0.safetensors", data, etag=res["sha256"])
        var = variant_for_conversion(manifest, "gpunet-0", res, hf_repo=repo, hf_revision=commit,
                                     hf_filename="g0.safetensors")
        var = type(var)(**{**vars(var), "sources": [type(var.sources[0])(**{**vars(var.sources[0]),
                                                                              "endpoint": endpoint})]})
        (tmp_path / "m.json").write_text(manifest.with_variant(var, prefer=True).to_json())
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", str(tmp_path / "m.json"))
        model = gpunet.get_model("gpunet-0", pretrained=True)
        gets = [r for r in m.requests if r[2] == 200 and r[1] != "HEAD"]
        assert same_weights(model, g0[0]) and len(gets) == 1
        rec = json.load(open(cache_files()[0]))
        assert rec["path"].startswith(str(tmp_path / "hf")) and rec["verified_by"] == "manifest"
        # corrupted bytes from the Hub: error with both hashes, the bad file is not kept anywhere
        monkeypatch.setenv("GPUNET_HOME", str(tmp_path / "home2"))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf2"))
        bad = bytearray(data)
        bad[-100] ^= 0xFF
        m.hub(repo, commit, "g0.safetensors", bytes(bad), etag=res["sha256"])
        with pytest.raises(DownloadError, match=f"expected {res['sha256']}, got "
                                                f"{hashlib.sha256(bytes(bad)).hexdigest()}"):
            gpunet.get_model("gpunet-0", pretrained=True)
    left = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "hf2") for f in fs]
    assert not [f for f in left if "blobs" in f or "snapshots" in f] and cache_files() == []


def test_a_verified_file_is_trusted_by_its_stat_signature_and_any_change_is_hashed_again(g0, mirror, monkeypatch):
    import time

    import gpunet.weights.cache as cache
    import gpunet.weights.verify as verify
    from gpunet.weights import verify_cached

    hashed = []

    def counting(real):
        return lambda path, *a, **k: hashed.append(path) or real(path, *a, **k)

    monkeypatch.setattr(cache, "sha256_file", counting(cache.sha256_file))
    monkeypatch.setattr(verify, "sha256_file", counting(verify.sha256_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpunet.get_model("gpunet-0", pretrained=True)  # downloaded, hashed as it came in
    path, record = cache_files()
    rec = json.load(open(record))
    assert rec["stat"] == cache.stat_signature(path)
    hashed.clear()
    assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0]) and hashed == []  # trusted

    original, st = open(path, "rb").read(), os.stat(path)
    time.sleep(0.05)  # past the file system's timestamp tick, so the rewrite gets a new ctime
    with open(path, "r+b") as f:  # same size, and the mtime put back: only the ctime tells
        f.seek(5000)
        f.write(b"\0" * 8)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(path) == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    with pytest.raises(CacheCorruptError, match="do not match"):
        gpunet.get_model("gpunet-0", pretrained=True)
    assert hashed == [path]

    with open(path, "wb") as f:  # the right bytes again: hashed once, then trusted again
        f.write(original)
    hashed.clear()
    assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0]) and hashed == [path]
    assert json.load(open(record))["stat"] == cache.stat_signature(path)
    hashed.clear()
    gpunet.get_model("gpunet-0", pretrained=True)
    assert hashed == []
    assert [r["ok"] for r in verify_cached()] == [True] and hashed == [path]  # verify always hashes


def test_a_verified_file_loads_while_another_process_holds_the_cache_lock(g0, mirror):
    """The trusted path takes no lock (a record is replaced atomically); one that needs anything
    done (here: an interrupted commit's ``pending``) is left to the locked path."""
    import gpunet.weights.cache as cache
    from gpunet.weights import fetch_weights

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path, variant = fetch_weights("gpunet-0")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from filelock import FileLock
        with FileLock({path + '.lock'!r}):
            print("held", flush=True)
            sys.stdin.read()  # until the test closes our stdin
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert fetch_weights("gpunet-0") == (path, variant)
        assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0])
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    rec = cache.read_record(variant)
    assert cache.trusted_path(variant) == path
    mirror_manifest(mirror, os.environ["GPUNET_WEIGHTS_MANIFEST"], sha256=rec["sha256"])  # now published
    _, variant = fetch_weights("gpunet-0")  # the rewritten manifest is read again
    assert variant.sha256 == rec["sha256"] and cache.trusted_path(variant) == path
    announced = {k: v for k, v in rec.items() if k != "stat"}  # what an interrupted commit leaves
    for changed in (dict(rec, pending={"sha256": rec["sha256"], "record": announced}), dict(rec, sha256="0" * 64),
                    dict(rec, stat=dict(rec["stat"], ino=rec["stat"]["ino"] + 1))):
        with open(path + ".json", "w") as f:
            json.dump(changed, f)
        assert cache.trusted_path(variant) is None
        assert fetch_weights("gpunet-0")[0] == path  # the locked path re-verifies and repairs ...
        assert cache.trusted_path(variant) == path  # ... so the next load is trusted again
