"""timm / Hugging Face model folders: data configs, save_pretrained round trips through timm and
gpunet, hf-hub: from huggingface_hub's cache, clear errors for broken folders, `gpunet publish`."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import socket

import pytest
import timm
import torch
from timm.data import resolve_model_data_config

import gpunet
from gpunet.checkpoint import CheckpointError
from gpunet.folders import FolderError, HubError, save_pretrained
from gpunet.registry import get_registry
from gpunet.spec import SpecError

PACKAGED = ["gpunet-0", "gpunet-1", "gpunet-2", "gpunet-p0", "gpunet-p1", "gpunet-d1", "gpunet-d2"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SMALL = 64


def card_transform(name):
    card = get_registry().card(name)
    r = card.resolution
    return dict(input_size=(3, r, r), crop_pct=card.crop_pct, interpolation="bicubic", mean=MEAN, std=STD)


def data_config(model):
    cfg = resolve_model_data_config(model)
    return {k: cfg[k] for k in ("input_size", "crop_pct", "interpolation", "mean", "std")}


def randomize(model):
    """Non-trivial BN statistics, so logits depend on every buffer too."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.9, 1.1)
    return model.eval()


def logits(model, res=SMALL):
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(1)))


def small_spec():
    from gpunet.search.space import SearchSpace

    space = SearchSpace.small()
    return space.decode(space.sample(1, seed=3)[0])


# -- 1. every model carries timm's data config ----------------------------------------------------

@pytest.mark.parametrize("name", PACKAGED)
def test_hub_models_carry_the_cards_data_config(name):
    want = card_transform(name)
    model = gpunet.get_model(name, device="meta")
    assert data_config(model) == want
    assert data_config(gpunet.get_model(name, num_classes=10, device="meta")) == want
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg == timm.create_model(name.replace("-", "_"), device="meta").pretrained_cfg  # one dict, both ways
    assert cfg["num_classes"] == 1000 and cfg["first_conv"] == "stem.0.conv" and cfg["classifier"] == "classifier"
    assert cfg["license"] == "apache-2.0" and "2205.00841" in cfg["paper_ids"] and "NVIDIA" in cfg["origin_url"]
    r = want["input_size"][-1]
    assert cfg["pool_size"] == (model.spec.spatial_sizes(r)[-1],) * 2


def test_spec_file_models_and_features_carry_a_data_config(tmp_path):
    spec = small_spec()
    path = tmp_path / "net.json"
    gpunet.save_spec(spec, path)
    r = spec.resolution
    want = dict(input_size=(3, r, r), crop_pct=1.0, interpolation="bicubic", mean=MEAN, std=STD)
    assert data_config(gpunet.get_model(str(path))) == want
    assert data_config(gpunet.get_model(path, num_classes=10)) == want
    assert data_config(gpunet.build_model(spec)) == want
    feats = gpunet.get_model("gpunet-p1", features_only=True, device="meta")
    assert data_config(feats) == card_transform("gpunet-p1")


def test_user_registered_models_carry_their_registry_transform():
    from gpunet.registry import update_user_registry

    spec = small_spec()

    def add(data):
        data["models"]["tiny-winner"] = {"spec": spec.to_dict(), "crop_pct": 0.9, "interpolation": "bilinear",
                                         "source": "gpunet search /runs/x, candidate 3"}

    update_user_registry(add)
    model = gpunet.get_model("tiny-winner")
    r = spec.resolution
    assert data_config(model) == dict(input_size=(3, r, r), crop_pct=0.9, interpolation="bilinear", mean=MEAN, std=STD)
    assert model.pretrained_cfg["description"] == "gpunet search /runs/x, candidate 3"
    assert "license" not in model.pretrained_cfg and "url" not in model.pretrained_cfg  # nothing published


def test_timm_lists_the_models_with_published_weights():
    """timm counts a tag as pretrained when its cfg names a weight source: NVIDIA's NGC URL here
    (gpunet fetches and verifies it through gpunet.weights); gpunet_spec has none."""
    from gpunet.weights.manifest import load_manifest, PACKAGED_MANIFEST

    from gpunet.timm_models import USER_NAMES

    listed = [n for n in timm.list_models("gpunet*", pretrained=True) if n not in USER_NAMES]  # search winners
    assert listed == sorted(f"{n.replace('-', '_')}.nvidia_in1k" for n in PACKAGED)
    manifest = load_manifest(PACKAGED_MANIFEST)
    for name in PACKAGED:
        urls = [s.url for v in manifest.model_variants(name) for s in v.sources if s.type == "url"]
        assert timm.models.get_pretrained_cfg(name.replace("-", "_")).url == urls[0]
    assert not timm.models.is_model_pretrained("gpunet_spec")


# -- 2. save_pretrained round trips ---------------------------------------------------------------

@pytest.fixture(scope="module")
def g0_folder(tmp_path_factory):
    model = randomize(gpunet.get_model("gpunet-0", num_classes=10))
    path = str(tmp_path_factory.mktemp("folders") / "g0")
    assert save_pretrained(model, path) == path
    return model, path


def test_round_trip_gpunet_0_through_timm_and_gpunet(g0_folder):
    from huggingface_hub import metadata_load
    from safetensors.torch import load_file

    model, path = g0_folder
    assert sorted(os.listdir(path)) == ["README.md", "config.json", "model.safetensors"]  # no temp files left
    config = json.load(open(os.path.join(path, "config.json")))
    assert config["architecture"] == "gpunet_0" and config["num_classes"] == 10
    assert config["num_features"] == model.num_features and config["global_pool"] == "avg"
    assert config["model_args"]["spec"] == model.spec.replace(num_classes=10).to_dict()
    pcfg = config["pretrained_cfg"]
    assert pcfg["input_size"] == [3, 320, 320] and pcfg["num_classes"] == 10 and pcfg["crop_pct"] == 1.0
    assert "url" not in pcfg and "tag" not in pcfg  # random weights: no weight source, no weights tag
    assert load_file(os.path.join(path, "model.safetensors")).keys() == model.state_dict().keys()
    meta = metadata_load(os.path.join(path, "README.md"))
    assert meta["library_name"] == "timm" and meta["license"] == "apache-2.0"
    assert {"image-classification", "timm", "gpunet"} <= set(meta["tags"])
    assert "model-index" not in meta  # nothing claimed for weights gpunet did not evaluate

    ref = logits(model)
    by_timm = timm.create_model(f"local-dir:{path}", pretrained=True)
    by_gpunet = gpunet.get_model(path)
    assert torch.equal(logits(by_timm), ref) and torch.equal(logits(by_gpunet), ref)
    assert by_gpunet.pretrained_cfg == by_timm.pretrained_cfg
    assert data_config(by_gpunet) == card_transform("gpunet-0")
    assert by_timm.pretrained_cfg["source"] == "local-dir" and by_timm.num_classes == 10
    # fine-tuning from the folder: new classifier, same backbone; a 1-channel stem adapted as timm does
    five = gpunet.get_model(f"local-dir:{path}", num_classes=5, in_chans=1)
    assert five.num_classes == 5 and five.stem[0].conv.in_channels == 1
    assert torch.equal(five.stages[0][0].conv.weight, model.stages[0][0].conv.weight)
    assert gpunet.load_spec(path) == model.spec.replace(num_classes=10)
    feats = gpunet.get_model(path, features_only=True, out_indices=(1, 3))
    assert data_config(feats) == card_transform("gpunet-0") and len(feats(torch.randn(1, 3, SMALL, SMALL))) == 2


def test_round_trip_custom_spec(tmp_path):
    spec = small_spec()
    assert gpunet.folders.timm_architecture(spec) == "gpunet_spec"
    model = randomize(gpunet.build_model(spec, num_classes=7))
    save_pretrained(model, tmp_path / "net")
    config = json.load(open(tmp_path / "net" / "config.json"))
    assert config["architecture"] == "gpunet_spec"
    r = spec.resolution
    ref = logits(model, r)
    by_timm = timm.create_model(f"local-dir:{tmp_path / 'net'}", pretrained=True)
    by_gpunet = gpunet.get_model(tmp_path / "net")
    assert torch.equal(logits(by_timm, r), ref) and torch.equal(logits(by_gpunet, r), ref)
    assert data_config(by_timm)["input_size"] == (3, r, r)
    # the generic entry point takes the spec itself, and timm's weight sources
    sd = model.state_dict()
    direct = timm.create_model("gpunet_spec", spec=spec.to_dict(), num_classes=7, pretrained=True,
                               pretrained_cfg_overlay=dict(state_dict=sd))
    assert torch.equal(logits(direct, r), ref) and direct.pretrained_cfg["input_size"] == (3, r, r)
    by_file = timm.create_model("gpunet_spec", spec=spec, num_classes=7, pretrained=True,
                                pretrained_cfg_overlay=dict(file=str(tmp_path / "net" / "model.safetensors")))
    assert torch.equal(logits(by_file, r), ref)
    with pytest.raises(FolderError, match="gpunet_spec has no published weights"):
        timm.create_model("gpunet_spec", spec=spec, pretrained=True)


def test_save_refuses_what_it_cannot_rebuild(tmp_path):
    feats = gpunet.get_model("gpunet-p0", features_only=True)
    with pytest.raises(TypeError, match="features_only"):
        save_pretrained(feats, tmp_path / "f")
    pruned = gpunet.get_model("gpunet-p0")
    pruned.prune_intermediate_layers(indices=2)
    with pytest.raises(ValueError, match="no longer matches its spec"):
        save_pretrained(pruned, tmp_path / "p")
    assert not (tmp_path / "f").exists() and not (tmp_path / "p").exists()


def test_folder_sources_for_nvidias_names_and_hub_name_precedence(g0_folder, tmp_path, monkeypatch):
    model, path = g0_folder
    weights = os.path.join(path, "model.safetensors")
    by_overlay = timm.create_model("gpunet_0", num_classes=10, pretrained=True,
                                   pretrained_cfg_overlay=dict(file=weights))
    assert torch.equal(logits(by_overlay), logits(model))
    by_dir = timm.create_model("gpunet_0", num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(file=path))
    assert torch.equal(logits(by_dir), logits(model))
    # a folder named like a hub model does not shadow the hub model; a path to it names the folder
    monkeypatch.chdir(tmp_path)
    shutil.copytree(path, tmp_path / "gpunet-p0")
    assert gpunet.get_model("gpunet-p0", device="meta").spec.name == "gpunet-p0"
    assert gpunet.get_model("./gpunet-p0").spec.name == "gpunet-0"
    assert gpunet.get_model("local-dir:gpunet-p0").num_classes == 10


# -- clear errors -----------------------------------------------------------------------------------

def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_bad_spec_in_config_is_an_error_naming_file_and_field(g0_folder, tmp_path):
    path = copy_folder(g0_folder[1], tmp_path / "bad")
    cfg_file = os.path.join(path, "config.json")
    config = json.load(open(cfg_file))
    config["architecture"] = "gpunet_spec"
    config["model_args"]["spec"]["layers"][3]["stride"] = 3
    json.dump(config, open(cfg_file, "w"))
    with pytest.raises(SpecError, match=r"bad/config\.json.*entry 3, field 'stride'"):
        gpunet.get_model(path)
    with pytest.raises(SpecError, match=r"bad/config\.json.*entry 3, field 'stride'"):
        timm.create_model(f"local-dir:{path}", pretrained=True)
    config["model_args"]["spec"]["layers"][3]["stride"] = 2
    config["architecture"] = "gpunet_1"  # the spec is GPUNet-0's: a contradiction, not a silent choice
    json.dump(config, open(cfg_file, "w"))
    with pytest.raises(FolderError, match="config.json: model_args.spec is not gpunet_1's network"):
        gpunet.get_model(path)
    config["architecture"] = "resnet50"
    json.dump(config, open(cfg_file, "w"))
    with pytest.raises(FolderError, match="field 'architecture' is 'resnet50', not a gpunet model"):
        gpunet.get_model(path)
    open(cfg_file, "w").write("{not json")
    with pytest.raises(FolderError, match="config.json: not valid JSON"):
        gpunet.get_model(path)
    os.unlink(cfg_file)
    with pytest.raises(FolderError, match="no config.json"):
        gpunet.get_model(path)


def test_truncated_or_missing_weights_are_errors_naming_the_file(g0_folder, tmp_path):
    path = copy_folder(g0_folder[1], tmp_path / "cut")
    weights = os.path.join(path, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    for build in (lambda: gpunet.get_model(path), lambda: timm.create_model(f"local-dir:{path}", pretrained=True)):
        with pytest.raises(CheckpointError, match=r"cut/model\.safetensors: not a valid safetensors file"):
            build()
    os.unlink(weights)
    with pytest.raises(FolderError, match=r"cut: no weight file \(model\.safetensors"):
        gpunet.get_model(path)


def test_weights_of_another_architecture_are_refused(g0_folder, tmp_path):
    path = copy_folder(g0_folder[1], tmp_path / "swap")
    config = json.load(open(os.path.join(path, "config.json")))
    # same tensor shapes, different network: the activation of one block changes
    layer = next(entry for entry in config["model_args"]["spec"]["layers"] if entry.get("act") == "relu")
    layer["act"] = "swish"
    config["architecture"] = "gpunet_spec"
    json.dump(config, open(os.path.join(path, "config.json"), "w"))
    with pytest.raises(FolderError, match="weights saved for another architecture"):
        gpunet.get_model(path)


# -- 3. hf-hub: through huggingface_hub's cache -------------------------------------------------------

def populate_hf_cache(cache, repo, commit, folder):
    """huggingface_hub's cache layout: blobs/<hash>, snapshots/<commit>/<file> -> blob, refs/main."""
    import hashlib

    rdir = cache / ("models--" + repo.replace("/", "--"))
    (rdir / "blobs").mkdir(parents=True)
    (rdir / "snapshots" / commit).mkdir(parents=True)
    for name in os.listdir(folder):
        data = open(os.path.join(folder, name), "rb").read()
        blob = hashlib.sha256(data).hexdigest()
        (rdir / "blobs" / blob).write_bytes(data)
        os.symlink(f"../../blobs/{blob}", rdir / "snapshots" / commit / name)
    (rdir / "refs").mkdir()
    (rdir / "refs" / "main").write_text(commit)


def test_hf_hub_from_the_cache_offline(g0_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants, scan_cache_dir

    model, path = g0_folder
    repo, commit = "someone/gpunet-0-ft10", "0123456789abcdef0123456789abcdef01234567"
    populate_hf_cache(tmp_path / "hf", repo, commit, path)
    assert [r.repo_id for r in scan_cache_dir(tmp_path / "hf").repos] == [repo]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = logits(model)
    by_timm = timm.create_model(f"hf-hub:{repo}", pretrained=True)
    assert torch.equal(logits(by_timm), ref) and by_timm.pretrained_cfg["hf_hub_id"] == repo
    for name in (f"hf-hub:{repo}", f"hf-hub:{repo}@{commit}"):
        by_gpunet = gpunet.get_model(name)
        assert torch.equal(logits(by_gpunet), ref) and data_config(by_gpunet) == card_transform("gpunet-0")
    by_id = timm.create_model("gpunet_0", num_classes=10, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=repo))
    assert torch.equal(logits(by_id), ref)
    with pytest.raises(FolderError, match="hf-hub:someone/other/config.json is not in huggingface_hub's cache"):
        gpunet.get_model("hf-hub:someone/other")


# -- 4. gpunet publish ----------------------------------------------------------------------------------

def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.filterwarnings("ignore:.*publisher gives no checksum")
def test_publish_a_hub_model_with_its_published_weights(tmp_path, monkeypatch, capsys):
    from huggingface_hub import metadata_load
    from test_weights_support import Mirror, mirror_manifest, ngc_path, ngc_zip_bytes, nvidia_checkpoint_bytes

    from gpunet.cli import main

    with Mirror() as mirror:
        monkeypatch.setenv("GPUNET_WEIGHTS_MANIFEST", mirror_manifest(mirror, str(tmp_path / "m.json")))
        ref, pth = nvidia_checkpoint_bytes("gpunet-p0", seed=5)
        mirror.files[ngc_path("gpunet-p0")] = ngc_zip_bytes("gpunet-p0", pth, compress=False)
        assert main(["publish", "gpunet-p0", str(tmp_path / "p0"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["architecture"] == "gpunet_p0" and "NVIDIA's published weights of `gpunet-p0`" in out["weights"]
    meta = metadata_load(tmp_path / "p0" / "README.md")
    result = meta["model-index"][0]["results"][0]
    assert meta["datasets"] == ["imagenet-1k"] and result["dataset"]["type"] == "imagenet-1k"
    assert result["metrics"][0]["value"] == get_registry().model_info("gpunet-p0")["top1"]
    config = json.load(open(tmp_path / "p0" / "config.json"))
    assert config["pretrained_cfg"]["tag"] == "nvidia_in1k" and config["gpunet"]["hub_weights"] == "gpunet-p0"
    assert torch.equal(logits(timm.create_model(f"local-dir:{tmp_path / 'p0'}", pretrained=True)), logits(ref))


def test_publish_checks_its_arguments(g0_folder, tmp_path, capsys):
    from gpunet.cli import main

    spec = tmp_path / "net.json"
    gpunet.save_spec(small_spec(), spec)
    assert main(["publish", str(spec), str(tmp_path / "a")]) == 1
    assert "a spec file has no weights; pass --checkpoint FILE" in capsys.readouterr().err
    ckpt = os.path.join(g0_folder[1], "model.safetensors")
    assert main(["publish", "gpunet-0", str(tmp_path / "b"), "--checkpoint", ckpt, "--num-classes", "1000"]) == 1
    assert "differs from the weights' classifier (10 classes)" in capsys.readouterr().err
    assert main(["publish", "gpunet-0", str(tmp_path / "c"), "--checkpoint", ckpt]) == 0  # 10 classes, from the file
    assert torch.equal(logits(gpunet.get_model(tmp_path / "c")), logits(g0_folder[0]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_push_to_an_unreachable_hub_is_a_clear_error_and_no_token_is_written(g0_folder, tmp_path, monkeypatch,
                                                                            capsys):
    from gpunet.cli import main

    token = "hf_gpunetTestTokenThatMustNeverBeWritten"
    monkeypatch.setenv("HF_TOKEN", token)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    code = main(["publish", g0_folder[1], str(tmp_path / "out"), "--push", "org/gpunet-test", "--endpoint", endpoint])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot push org/gpunet-test to the Hugging Face Hub at {endpoint}" in err
    assert token not in err
    assert sorted(os.listdir(tmp_path / "out")) == ["README.md", "config.json", "model.safetensors"]
    for name in os.listdir(tmp_path / "out"):
        assert token.encode() not in open(tmp_path / "out" / name, "rb").read()
    assert 'timm.create_model("hf-hub:org/gpunet-test", pretrained=True)' in open(tmp_path / "out" / "README.md").read()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="offline mode is on"):
        gpunet.folders.push_folder(tmp_path / "out", "org/gpunet-test", endpoint=endpoint)


class FakeHub:
    """A loopback Hugging Face Hub answering the calls a push makes (create the repo, validate the
    README's metadata, ask how to upload each file, commit them inline), keeping what was sent; and
    huggingface_hub's downloads (HEAD / GET ``/ORG/NAME/resolve/REV/FILE``) of the files in ``repos``
    (repo -> {filename: bytes}), all at commit ``COMMIT``. ``requests``: every (method, path) received."""

    COMMIT = "c0ffee" + "0" * 34

    def __init__(self, repos=None):
        import http.server
        import threading

        self.commits, self.auth, self.validated, self.requests = [], [], [], []
        self.repos = repos or {}
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _resolve(self, body):
                """What the Hub answers: X-Repo-Commit, ETag (a blob's sha256), Content-Length; a 404
                with X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound otherwise."""
                import hashlib
                import re
                from urllib.parse import unquote

                hub.requests.append((self.command, self.path))
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path)
                repo, rev, name = (unquote(g) for g in m.groups()) if m else (None, None, None)
                data = hub.repos.get(repo, {}).get(name)
                error = ("RepoNotFound" if repo not in hub.repos else "RevisionNotFound"
                         if rev not in ("main", hub.COMMIT) else "EntryNotFound" if data is None else None)
                self.send_response(404 if error else 200)
                if error != "RepoNotFound":
                    self.send_header("X-Repo-Commit", hub.COMMIT)
                if error:
                    self.send_header("X-Error-Code", error)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                self.send_header("ETag", '"%s"' % hashlib.sha256(data).hexdigest())
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._resolve(body=False)

            def do_GET(self):
                self._resolve(body=True)

            def _send(self, obj, code=200):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                import gzip

                hub.requests.append((self.command, self.path))
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                hub.auth.append(self.headers.get("Authorization"))
                if self.path == "/api/repos/create":
                    req = json.loads(data)
                    repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    return self._send({"url": hub.url(repo), "name": repo, "id": "1"})
                if self.path == "/api/validate-yaml":  # the Hub checks a README's metadata before a commit
                    hub.validated.append(json.loads(data))
                    return self._send({"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    return self._send({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in json.loads(data)["files"]]})
                if "/commit/" in self.path:
                    repo = self.path[len("/api/models/"):].split("/commit/")[0]
                    hub.commits.append((self.path, [json.loads(line) for line in data.splitlines() if line.strip()]))
                    oid = f"{len(hub.commits):040x}"
                    return self._send({"commitUrl": hub.url(f"{repo}/commit/{oid}"), "commitOid": oid,
                                       "pullRequestUrl": None})
                self._send({"error": "not found"}, 404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path=""):
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}".rstrip("/")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_push_to_a_loopback_hub_records_the_commit(g0_folder, tmp_path, monkeypatch, capsys):
    import base64

    from gpunet.cli import main

    token = "hf_gpunetTestTokenThatMustNeverBeWritten"
    monkeypatch.setenv("HF_TOKEN", token)
    with FakeHub() as hub:
        code = main(["publish", g0_folder[1], str(tmp_path / "out"), "--push", "org/gpunet-test",
                     "--endpoint", hub.url(), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    push = json.loads(out.out)["push"]
    assert push["repo_id"] == "org/gpunet-test" and push["revision"] == "main" and push["commit"] == "0" * 39 + "1"
    path, lines = hub.commits[0]
    assert path == "/api/models/org/gpunet-test/commit/main"
    sent = {line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"}
    assert sent.keys() == {"config.json", "model.safetensors", "README.md"}
    for name, data in sent.items():
        assert data == open(tmp_path / "out" / name, "rb").read()
        assert token.encode() not in data
    assert [v.get("content") for v in hub.validated] == [sent["README.md"].decode()]
    assert set(hub.auth) == {f"Bearer {token}"}  # huggingface_hub's own token handling, gpunet never touches it
    assert token not in out.out + out.err


def serve_from_fake_hub(monkeypatch, hub, cache):
    """Point huggingface_hub at ``hub`` as HF_ENDPOINT does at import, with ``cache`` as HF_HUB_CACHE.
    Neither timm nor huggingface_hub's download path copies these constants at import (only
    huggingface_hub.utils._cache_manager copies HF_HUB_CACHE, for scan_cache_dir's default: the
    test passes the folder; and its set of Hub hosts, used only on redirects, which this Hub never sends)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url())
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.url() + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_hf_hub_from_a_loopback_hub_then_cache_only_with_gpunet_offline(g0_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants, scan_cache_dir

    model, path = g0_folder
    repo = "org/gpunet-0-ft10"
    files = {name: open(os.path.join(path, name), "rb").read() for name in os.listdir(path)}
    ref = logits(model)
    with FakeHub({repo: files}) as hub:
        serve_from_fake_hub(monkeypatch, hub, tmp_path / "hf")
        by_timm = timm.create_model(f"hf-hub:{repo}", pretrained=True)
        by_gpunet = gpunet.get_model(f"hf-hub:{repo}")
        assert torch.equal(logits(by_timm), ref) and torch.equal(logits(by_gpunet), ref)
        assert data_config(by_gpunet) == card_transform("gpunet-0")
        assert {p for m, p in hub.requests if m == "GET" and "/resolve/" in p} == {
            f"/{repo}/resolve/main/{n}" for n in ("config.json", "model.safetensors")}
        cached = {r.repo_id: r for r in scan_cache_dir(tmp_path / "hf").repos}
        assert list(cached) == [repo]
        [revision] = cached[repo].revisions
        assert revision.commit_hash == hub.COMMIT and cached[repo].refs["main"] == revision
        assert {f.file_name for f in revision.files} == {"config.json", "model.safetensors"}
        for f in revision.files:
            assert f.file_path.read_bytes() == files[f.file_name]

        # GPUNET_OFFLINE only: gpunet's reads and timm's own fetches are cache-only, the Hub is never asked
        monkeypatch.setenv("GPUNET_OFFLINE", "1")
        assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ
        # as in a fresh process: huggingface_hub's headers look up {ENDPOINT}/api/agent-harnesses once a
        # process (telemetry, unless HF_HUB_OFFLINE), cached a day under HF_HOME; that must not go out either
        monkeypatch.setattr(importlib.import_module("huggingface_hub.utils._detect_agent"), "_registry", None)
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
        before = len(hub.requests)
        offline = gpunet.get_model(f"hf-hub:{repo}")
        assert hub.requests[before:] == [] and torch.equal(logits(offline), ref)
        assert constants.HF_HUB_OFFLINE is False  # restored after the call

        monkeypatch.delenv("GPUNET_OFFLINE")
        with pytest.raises((FolderError, HubError), match="hf-hub:org/missing"):
            gpunet.get_model("hf-hub:org/missing")
        assert hub.requests[-1] == ("HEAD", "/org/missing/resolve/main/config.json")
    with pytest.raises(OSError):  # the server is down
        socket.create_connection(("127.0.0.1", hub.server.server_address[1]), timeout=1)


def test_a_model_fine_tuned_by_gpunet_train_publishes_as_a_folder(tmp_path, capsys):
    """`gpunet train` (a 10-class fine-tune) -> `gpunet publish gpunet-0 DIR --checkpoint best.pth.tar`:
    timm and gpunet rebuild the trained network with its 10-class classifier."""
    from test_train import FAST_FLAGS, make_digits

    from gpunet.cli import main

    root = make_digits(tmp_path / "digits", n_train=6, n_val=2)
    assert main(["train", "--data-dir", str(root), "--output", str(tmp_path / "run"), "--epochs", "1",
                 *FAST_FLAGS]) == 0
    capsys.readouterr()
    best = str(tmp_path / "run" / "best.pth.tar")
    assert main(["publish", "gpunet-0", str(tmp_path / "pub"), "--checkpoint", best, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_classes"] == 10 and out["architecture"] == "gpunet_0"
    trained = gpunet.get_model("gpunet-0", checkpoint_path=best, num_classes=10)
    for rebuilt in (timm.create_model(f"local-dir:{tmp_path / 'pub'}", pretrained=True),
                    gpunet.get_model(tmp_path / "pub")):
        assert rebuilt.num_classes == 10 and torch.equal(logits(rebuilt), logits(trained))
