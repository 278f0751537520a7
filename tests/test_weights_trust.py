"""Nothing untrusted enters the weights cache: every check (size, hash, strict fit) before the
rename, file and record committed together, misbehaving servers, corrupt files with clear errors."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

import gpunet
from gpunet.checkpoint import CheckpointError, read_checkpoint
from gpunet.weights import DownloadError, ManifestError, fetch_weights, import_weights, load_manifest, verify_cached
from gpunet.weights.download import download_url
from test_weights_download import cache_files, same_weights
from test_weights_support import Mirror, mirror_manifest, ngc_path, ngc_zip_bytes, nvidia_checkpoint_bytes

pytestmark = pytest.mark.filterwarnings("ignore:.*publisher gives no checksum")


@pytest.fixture(scope="module")
def g0():
    model, pth = nvidia_checkpoint_bytes("gpunet-0", ema_differs=False)
    return model, pth, ngc_zip_bytes("gpunet-0", pth, compress=False)


@pytest.fixture(scope="module")
def g1_as_g0():
    """GPUNet-1's weights in a zip laid out exactly like gpunet-0's download (same member name)."""
    _, pth = nvidia_checkpoint_bytes("gpunet-1", ema_differs=False)
    return ngc_zip_bytes("gpunet-0", pth, compress=False)


def _manifest(m, tmp_path, extra_urls=(), **overrides):
    path = mirror_manifest(m, str(tmp_path / "m.json"), models=["gpunet-0"], **overrides)
    data = json.load(open(path))
    var = data["models"]["gpunet-0"]["variants"]["nvidia-ngc"]
    for url in extra_urls:
        var["sources"].append(dict(var["sources"][0], url=url))
    json.dump(data, open(path, "w"))
    return path


def test_download_that_does_not_fit_is_never_cached_and_the_next_source_is_tried(g0, g1_as_g0, tmp_path,
                                                                                  monkeypatch):
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = g1_as_g0
        m.files["/good/zip"] = g0[2]
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", _manifest(m, tmp_path))
        with pytest.raises(DownloadError, match=r"(?s)127\.0\.0\.1.*(does not fit|no counterpart)"):
            gpunet.get_model("gpunet-0", pretrained=True)
        assert cache_files() == []  # nothing recorded, nothing renamed into the cache
        # the mirror is fixed: the next call downloads again and succeeds
        m.files[ngc_path("gpunet-0")] = g0[2]
        assert same_weights(gpunet.get_model("gpunet-0", pretrained=True), g0[0])
        # a poisoned first mirror falls through to the next source
        monkeypatch.setenv("GPUNET_HOME", str(tmp_path / "home2"))
        m.files[ngc_path("gpunet-0")] = g1_as_g0
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", _manifest(m, tmp_path, extra_urls=[m.url("/good/zip")]))
        path, _ = fetch_weights("gpunet-0")
        rec = json.load(open(path + ".json"))
        assert rec["source"].startswith(m.url("/good/zip"))
        assert [os.path.basename(f) for f in cache_files()] == ["0.65ms.pth.tar", "0.65ms.pth.tar.json"]


def test_file_placed_by_hand_must_fit_before_it_is_recorded(g1_as_g0, tmp_path, monkeypatch):
    import zipfile
    import io

    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    dest = os.path.join(gpunet.weights.cache_root(), "gpunet-0", "nvidia-ngc", "0.65ms.pth.tar")
    os.makedirs(os.path.dirname(dest))
    with zipfile.ZipFile(io.BytesIO(g1_as_g0)) as zf:
        open(dest, "wb").write(zf.read(zf.namelist()[0]))
    with pytest.raises(CheckpointError, match="0.65ms.pth.tar.*(does not fit|no counterpart).*remove it"):
        fetch_weights("gpunet-0")
    assert not os.path.exists(dest + ".json")


def test_manifest_size_is_checked(g0, tmp_path, monkeypatch):
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = g0[2]
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", _manifest(m, tmp_path, size=len(g0[1]) + 1))
        with pytest.raises(DownloadError, match=f"size.*{len(g0[1]) + 1}.*{len(g0[1])}"):
            fetch_weights("gpunet-0")
        assert cache_files() == []
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", _manifest(m, tmp_path, size=len(g0[1])))
        path, _ = fetch_weights("gpunet-0")
        assert os.path.getsize(path) == len(g0[1])


def test_206_whose_content_range_starts_at_zero_is_not_appended(tmp_path):
    payload = os.urandom(300_000)
    with Mirror() as m:
        m.files["/w.bin"] = payload
        m.bad_206 = True
        dest = str(tmp_path / "w.bin")
        open(dest + ".part", "wb").write(payload[:100_000])  # an earlier interrupted attempt
        sha = download_url(m.url("/w.bin"), dest)
    assert sha == hashlib.sha256(payload).hexdigest() and open(dest, "rb").read() == payload


def test_416_with_a_stale_longer_part_starts_over(tmp_path):
    payload = os.urandom(200_000)
    with Mirror() as m:
        m.files["/w.bin"] = payload
        dest = str(tmp_path / "w.bin")
        open(dest + ".part", "wb").write(os.urandom(250_000))  # left by another version of the file
        sha = download_url(m.url("/w.bin"), dest)
        assert [r[2] for r in m.requests] == [416, 200]
        assert sha == hashlib.sha256(payload).hexdigest() and open(dest, "rb").read() == payload
        # a complete .part: 416 with the same total means nothing is left to fetch
        os.unlink(dest)
        open(dest + ".part", "wb").write(payload)
        assert download_url(m.url("/w.bin"), dest) == hashlib.sha256(payload).hexdigest()
        assert [r[2] for r in m.requests] == [416, 200, 416]


def test_hugging_face_revision_must_be_a_commit_hash(tmp_path):
    data = json.load(open(load_manifest().path))
    var = data["models"]["gpunet-0"]["variants"]["safetensors"]
    for rev in ("main", None, "v1.0", "a" * 39):
        var["sources"] = [{"type": "hf", "repo_id": "o/r", "filename": "g.safetensors"}]
        if rev is not None:
            var["sources"][0]["revision"] = rev
        (tmp_path / "m.json").write_text(json.dumps(data))
        with pytest.raises(ManifestError, match=r"m\.json: models\.gpunet-0\.variants\.safetensors\.sources\[0\]"
                                                r"\.revision: .*40-hex commit hash"):
            load_manifest(str(tmp_path / "m.json"))
    var["sources"][0]["revision"] = "0123456789abcdef0123456789ABCDEF01234567"
    (tmp_path / "m.json").write_text(json.dumps(data))
    load_manifest(str(tmp_path / "m.json"))


# --- the cached file and its record change together -------------------------------------------------

def _crash_on_final_record(monkeypatch):
    """Make the commit die right after the file rename, before the record is finalised."""
    import gpunet.weights.cache as cache

    real = cache.atomic_write_text

    def write(path, text):
        if not json.loads(text).get("pending"):
            raise KeyboardInterrupt("simulated crash")
        return real(path, text)

    monkeypatch.setattr(cache, "atomic_write_text", write)
    return lambda: monkeypatch.setattr(cache, "atomic_write_text", real)


def test_crash_between_file_and_record_is_repaired_by_reverifying(g0, tmp_path, monkeypatch):
    model_b, pth_b = nvidia_checkpoint_bytes("gpunet-0", seed=1, ema_differs=False)
    (tmp_path / "a.pth.tar").write_bytes(g0[1])
    (tmp_path / "b.pth.tar").write_bytes(pth_b)
    import_weights("gpunet-0", str(tmp_path / "a.pth.tar"))
    restore = _crash_on_final_record(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        import_weights("gpunet-0", str(tmp_path / "b.pth.tar"))
    restore()
    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    path, _ = fetch_weights("gpunet-0", "nvidia-ngc")  # a good file, not "fails its hash forever"
    rec = json.load(open(path + ".json"))
    assert rec["sha256"] == hashlib.sha256(pth_b).hexdigest() and "pending" not in rec
    assert same_weights(gpunet.get_model("gpunet-0", pretrained=True, weights="nvidia-ngc"), model_b)
    assert all(r["ok"] for r in verify_cached())
    # the repair is not blind: damage the file and it is reported, not re-recorded
    with open(path, "r+b") as f:
        f.seek(4000)
        f.write(b"\1" * 8)
    with pytest.raises(gpunet.weights.CacheCorruptError):
        fetch_weights("gpunet-0", "nvidia-ngc")


def test_stale_record_is_rewritten_when_the_file_matches_the_manifest(g0, tmp_path, monkeypatch):
    sha = hashlib.sha256(g0[1]).hexdigest()
    with Mirror() as m:
        m.files[ngc_path("gpunet-0")] = g0[2]
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", _manifest(m, tmp_path, sha256=sha))
        path, _ = fetch_weights("gpunet-0")
    rec = json.load(open(path + ".json"))
    rec["sha256"] = "0" * 64  # a record that no longer matches its (good) file
    json.dump(rec, open(path + ".json", "w"))
    fetch_weights("gpunet-0")
    assert json.load(open(path + ".json"))["sha256"] == sha
    assert all(r["ok"] for r in verify_cached())


def test_unreadable_record_is_replaced_after_reverifying_the_file(g0, tmp_path, monkeypatch):
    (tmp_path / "a.pth.tar").write_bytes(g0[1])
    rec = import_weights("gpunet-0", str(tmp_path / "a.pth.tar"))
    open(rec["record"], "w").write("{not json")
    monkeypatch.setenv("GPUNET_OFFLINE", "1")
    path, _ = fetch_weights("gpunet-0", "nvidia-ngc")
    assert json.load(open(path + ".json"))["sha256"] == hashlib.sha256(g0[1]).hexdigest()


# --- corrupt files: one clear error naming the file ---------------------------------------------------

def _corrupt_safetensors(path):
    with open(path, "wb") as f:
        f.write((200).to_bytes(8, "little") + b'{"a": not json' + b"\0" * 50)


def test_corrupt_safetensors_raises_checkpoint_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    _corrupt_safetensors(bad)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*safetensors"):
        read_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match=r"bad\.safetensors"):
        gpunet.get_model("gpunet-0", checkpoint_path=str(bad))


def _cli(capsys, *args):
    """The ``gpunet`` command in-process: (exit code, stdout, stderr); a traceback would raise here."""
    from gpunet.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_corrupt_safetensors_and_manifest_give_one_line_errors(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.safetensors"
    _corrupt_safetensors(bad)
    rc, _, err = _cli(capsys, "weights", "import", "gpunet-0", str(bad))
    assert rc == 3 and len(err.strip().splitlines()) == 1 and str(bad) in err, err
    (tmp_path / "m.json").write_text('{"schema": "gpunet-weights/1", "models": {')
    monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", str(tmp_path / "m.json"))
    rc, _, err = _cli(capsys, "weights", "download", "gpunet-0")
    assert rc == 3 and len(err.strip().splitlines()) == 1 and "m.json: not valid JSON" in err, err


def test_verify_deep_reports_a_corrupt_file_and_goes_on(g0, tmp_path, capsys):
    from gpunet.weights import convert_to_safetensors
    from gpunet.weights.cache import write_record
    from gpunet.weights.manifest import Variant

    (tmp_path / "a.pth.tar").write_bytes(g0[1])
    import_weights("gpunet-0", str(tmp_path / "a.pth.tar"))
    res = convert_to_safetensors("gpunet-0", str(tmp_path / "a.pth.tar"), str(tmp_path / "g.safetensors"))
    st = import_weights("gpunet-0", res["path"], variant="safetensors")
    _corrupt_safetensors(st["path"])  # damaged, and its record updated to match (a hash check passes)
    var = Variant(model="gpunet-0", name="safetensors", format="safetensors", file=os.path.basename(st["path"]),
                  sha256=None, size=None, license="-", source="-")
    write_record(var, st["path"], hashlib.sha256(open(st["path"], "rb").read()).hexdigest(), "import", "test")
    out = {r["variant"]: r for r in verify_cached(deep=True)}
    assert out["nvidia-ngc"]["ok"]
    assert not out["safetensors"]["ok"] and st["path"] in out["safetensors"]["problem"]
    rc, out, _ = _cli(capsys, "weights", "verify", "--deep")
    assert rc == 1 and "FAIL" in out and "does not load" in out
    assert [line.split()[1:3] for line in out.splitlines() if line.startswith("gpunet-0")] == \
        [["nvidia-ngc", "ok"], ["safetensors", "FAIL"]]


def test_cli_convert_refuses_an_unpinned_hugging_face_revision(g0, tmp_path, capsys):
    (tmp_path / "a.pth.tar").write_bytes(g0[1])
    for extra in ([], ["--hf-revision", "main"]):
        rc, _, err = _cli(capsys, "weights", "convert", "gpunet-0", str(tmp_path / "a.pth.tar"),
                          str(tmp_path / "o.safetensors"), "--manifest", str(tmp_path / "m.json"), "--hf-repo",
                          "me/gpunet", *extra)
        assert rc != 0 and "40-hex commit" in err, err
    assert not (tmp_path / "o.safetensors").exists() and not (tmp_path / "m.json").exists()


def test_hugging_face_file_that_does_not_fit_is_removed_and_not_recorded(g0, tmp_path, monkeypatch):
    """A pinned Hub file with the manifest's sha256 but missing a tensor: the strict load refuses it."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from gpunet.weights.manifest import Source, Variant

    sd = {k: v.contiguous() for k, v in g0[0].state_dict().items() if k != "classifier.bias"}
    save_file(sd, str(tmp_path / "g0.safetensors"), metadata={"format": "pt"})
    data = (tmp_path / "g0.safetensors").read_bytes()
    sha, repo, commit = hashlib.sha256(data).hexdigest(), "nvidia-gpunet/gpunet-0", "d" * 40
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    manifest = load_manifest()
    with Mirror() as m:
        endpoint = m.hub(repo, commit, "g0.safetensors", data, etag=sha)
        var = Variant(model="gpunet-0", name="safetensors", format="safetensors", file="g0.safetensors", sha256=sha,
                      size=len(data), license="-", source="-",
                      sources=[Source(type="hf", repo_id=repo, filename="g0.safetensors", revision=commit,
                                      endpoint=endpoint)])
        (tmp_path / "m.json").write_text(manifest.with_variant(var, prefer=True).to_json())
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", str(tmp_path / "m.json"))
        with pytest.raises(DownloadError, match=r"(?s)hf://nvidia-gpunet/gpunet-0.*1 missing.*classifier\.bias"):
            fetch_weights("gpunet-0", "safetensors")
    left = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path / "hf") for f in fs]
    assert not [f for f in left if "blobs" in f or "snapshots" in f] and cache_files() == []
