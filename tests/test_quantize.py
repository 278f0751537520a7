"""INT8 (NNCF post-training, QDQ ONNX): accuracy on a really fine-tuned model, the file in ONNX
Runtime and OpenVINO, TensorRT's constraints on the graph, the CLI, and bad input.

The model is GPUNet-0 fine-tuned on scikit-learn's digits at 32 px (as in test_train.py), so
fp32 vs INT8 top-1 and their agreement are measured, not assumed.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nncf")
pytest.importorskip("sklearn")

from test_train import FAST, make_digits  # noqa: E402

import gpunet  # noqa: E402
from gpunet.cli import main  # noqa: E402
from gpunet.export.quantize import AccuracyDropError, quantize  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """(digits root, best checkpoint): GPUNet-0 fine-tuned 6 epochs at 32 px, 500 val images."""
    from gpunet.train import train

    torch.set_num_threads(1)
    root = make_digits(tmp_path_factory.mktemp("qdigits"), n_train=40, n_val=50)
    out = tmp_path_factory.mktemp("qrun")
    run = train(data_dir=str(root), output=str(out), epochs=6, **FAST)
    assert run.history[-1]["val_images"] == 500
    return root, out / "best.pth.tar"


def _qdq_facts(path):
    """(QuantizeLinear count, zero-point dtypes, any non-zero zero point, largest activation scale size)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    dtypes, nonzero, act_scale = set(), False, 0
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = init[n.input[2]]
            dtypes.add(zp.dtype.name)
            nonzero |= bool(np.any(zp))
            if n.input[0] not in init and n.op_type == "QuantizeLinear":
                act_scale = max(act_scale, init[n.input[1]].size)
    return sum(n.op_type == "QuantizeLinear" for n in m.graph.node), dtypes, nonzero, act_scale


def test_int8_matches_fp32_on_finetuned_digits_and_runs_in_ort_and_openvino(finetuned, tmp_path):
    root, ckpt = finetuned
    out = tmp_path / "g0-int8.onnx"
    r = gpunet.quantize("gpunet-0", out, calib_data=root / "train", checkpoint_path=str(ckpt), val_data=root)
    assert r.path == str(out) and out.exists()
    assert r.input_shape == (1, 3, 32, 32)  # the checkpoint's training resolution
    assert r.calib_images == 300 and "300 images" in r.calibration
    assert r.val_images == 500
    print(f"\ndigits 32 px: fp32 {r.top1_fp32:.1f}%, int8 {r.top1_int8:.1f}%, agreement {r.agreement:.1f}%",
          file=sys.stderr)
    assert r.top1_fp32 >= 50.0, "the fine-tuned model should be far above 10 % chance"
    assert r.top1_int8 >= r.top1_fp32 - 1.0
    assert r.agreement >= 97.0
    # fp32 figure = gpunet.evaluate on the same folder: same (model card) transform, same images.
    ev = gpunet.evaluate("gpunet-0", str(root), checkpoint=str(ckpt), workers=0, device="cpu", progress=False)
    assert ev["images"] == 500 and ev["top1"] == pytest.approx(r.top1_fp32)

    # What TensorRT's parser needs: int8 Q/DQ only, symmetric (zero points 0), per-tensor activations.
    n_q, dtypes, nonzero, act_scale = _qdq_facts(out)
    assert n_q == r.quantizers > 30 and dtypes == {"int8"} and not nonzero and act_scale == 1

    # The same file, as is, in ONNX Runtime and OpenVINO at several batch sizes.
    import onnxruntime as ort
    import openvino as ov

    from gpunet.train.data import eval_data_config, eval_transform, open_dataset

    ds = open_dataset(str(root), "val")
    ds.transform = eval_transform(eval_data_config("gpunet-0", img_size=32))
    x = torch.stack([ds[i][0] for i in range(0, 500, 50)]).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    a = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(out)), "CPU")
    b = np.concatenate([compiled({0: x[:3]})[compiled.output(0)], compiled({0: x[3:]})[compiled.output(0)]])
    assert a.shape == b.shape == (10, 10)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
    # Without VNNI (or AMX) x86 8-bit dot products can saturate their 16-bit intermediates, each runtime
    # its own way (OpenVINO's "saturation issue"): on an AMD EPYC with AVX2 only the logits agreed to 16 %
    # of their range, the decisions as above; with VNNI they agree to 10 %.
    from gpunet.latency.fingerprint import cpu_info

    vnni = bool({"avx512_vnni", "amx_int8"} & set(cpu_info().get("cpu_flags", [])))
    assert np.abs(a - b).max() <= (0.1 if vnni else 0.25) * np.abs(a).max()

    # CPU runtimes get NNCF's uint8 back on exactly the quantizers the file made signed for TensorRT.
    import onnx
    from onnx import numpy_helper

    from gpunet.export.quantize import NONNEGATIVE_KEY, QuantizationError, cpu_activations

    m = onnx.load(str(out))
    listed = set(json.loads({p.key: p.value for p in m.metadata_props}[NONNEGATIVE_KEY]))
    before = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert cpu_activations(m) == len(listed) > 10
    after = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert {k for k in after if after[k].dtype != before[k].dtype} == listed
    assert all(after[k].dtype == np.uint8 and not after[k].any() for k in listed)
    assert all(np.array_equal(after[k], before[k]) for k in after if k not in listed)  # scales and weights kept
    assert NONNEGATIVE_KEY not in {p.key for p in m.metadata_props} and cpu_activations(m) == 0
    onnx.checker.check_model(m)
    s_cpu = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    c = s_cpu.run(None, {s_cpu.get_inputs()[0].name: x})[0]
    ov_cpu = core.compile_model(core.read_model(m.SerializeToString(), b""), "CPU")
    d = ov_cpu({0: x})[ov_cpu.output(0)]
    for other in (c, d):  # the same grid: only values beyond the calibrated range may differ
        assert (a.argmax(1) == other.argmax(1)).mean() >= 0.9
        assert np.abs(a - other).max() <= 0.1 * np.abs(a).max()
    edited = onnx.load(str(out))
    zp = next(i for i in edited.graph.initializer if i.name in listed)
    zp.CopyFrom(numpy_helper.from_array(np.ones(numpy_helper.to_array(zp).shape, np.int8), zp.name))
    with pytest.raises(QuantizationError, match="edited after quantization"):
        cpu_activations(edited)


def test_bad_calibration_is_caught_and_nothing_is_written(finetuned, tmp_path):
    root, ckpt = finetuned
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "bad.onnx"
    # Calibrating on inputs 200x too large stretches every range: most activations round to zero.
    huge = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) * 200 for i in range(4)]
    with pytest.raises(AccuracyDropError, match="below fp32") as e:
        quantize("gpunet-0", out, calib_data=huge, checkpoint_path=str(ckpt), val_data=root, calib_size=16)
    assert e.value.report.drop > 1.0 and e.value.report.path is None
    assert not list(out.parent.iterdir()), "nothing (not even a temp file) may be left"
    kept = quantize("gpunet-0", out, calib_data=huge, checkpoint_path=str(ckpt), val_data=root, calib_size=16,
                    allow_drop=True)
    assert out.exists() and kept.drop > 1.0 and kept.calibration == "16 given tensors"


def test_any_module_with_tensor_batches_and_static_batch(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    batches = [(torch.rand(5, 3, 16, 16), torch.zeros(5)) for _ in range(3)]  # DataLoader-style pairs
    r = quantize(model, tmp_path / "m.onnx", calib_data=batches, input_shape=(3, 16, 16), calib_size=12,
                 dynamic_batch=False)
    assert r.calib_images == 12 and r.top1_fp32 is None and r.input_shape == (1, 3, 16, 16)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 16, 16]
    x = batches[0][0][:1]
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max() + 1e-3


def test_errors_name_the_problem(tmp_path, monkeypatch):
    model = gpunet.get_model("gpunet-0", num_classes=10)
    out = tmp_path / "x.onnx"
    with pytest.raises(FileNotFoundError, match="calib_data: image folder not found: .*nowhere"):
        quantize(model, out, calib_data=tmp_path / "nowhere", resolution=32)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"calib_data: no images .* in .*empty"):
        quantize(model, out, calib_data=tmp_path / "empty", resolution=32)
    with pytest.raises(ValueError, match=r"calib_data item 1: shape \(2, 3, 64, 64\) does not match .*\(3, 32, 32\)"):
        quantize(model, out, calib_data=[torch.rand(3, 32, 32), torch.rand(2, 3, 64, 64)], resolution=32)
    with pytest.raises(ValueError, match="calib_data is required"):
        quantize(model, out, resolution=32)
    with pytest.raises(FileNotFoundError, match="val_data: image folder not found"):
        quantize(model, out, calib_data=[torch.rand(3, 32, 32)], resolution=32, val_data=tmp_path / "nope")
    with pytest.raises(ValueError, match="calib_size must be a positive integer"):
        quantize(model, out, calib_data=[torch.rand(3, 32, 32)], resolution=32, calib_size=0)
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'gpunet\[quant\]'"):
        quantize(model, out, calib_data=[torch.rand(3, 32, 32)], resolution=32)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


def test_cli_quantize_json_and_errors(finetuned, tmp_path, capsys):
    root, ckpt = finetuned
    out = tmp_path / "cli-int8.onnx"
    rc = main(["quantize", "gpunet-0", "--out", str(out), "--calib-dir", str(root / "train"), "--checkpoint",
               str(ckpt), "--calib-size", "60", "--val-dir", str(root), "--json"])
    got = json.loads(capsys.readouterr().out)
    assert rc == 0 and out.exists() and got["path"] == str(out) and got["calib_images"] == 60
    assert set(got) >= {"top1_fp32", "top1_int8", "agreement"} and got["val_images"] == 500
    assert got["top1_int8"] >= got["top1_fp32"] - 1.0 - 1e-9

    rc = main(["quantize", "gpunet-0", "--out", str(tmp_path / "y.onnx"), "--calib-dir", str(tmp_path / "missing"),
               "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err
    assert rc == 1 and "calib_data: image folder not found" in err and "missing" in err
    assert not (tmp_path / "y.onnx").exists()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cli_bench_int8_says_how_it_was_calibrated(backend, finetuned, capsys):
    root, _ = finetuned
    base = ["bench", "--model", "gpunet-0", "--backend", backend, "--precision", "int8", "--img-size", "32",
            "--iters", "3", "--warmup", "1", "--threads", "1"]
    assert main(base + ["--save", "--gpu", "int8-box"]) == 0
    text = capsys.readouterr().out
    assert "random inputs (speed only" in text and f"{backend} int8" in text
    data = json.loads((Path(os.environ["GPUNET_HOME"]) / "registry.json").read_text())
    entry = data["latency"]["int8-box"]["gpunet-0"][0]
    assert entry["precision"] == "int8" and entry["calibration"].startswith("random inputs (speed only")

    assert main(base + ["--calib-dir", str(root / "train"), "--calib-size", "20", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"][0]
    assert res["precision"] == "int8" and res["calibration"] == f"20 images from {root / 'train'}"
    assert main(["bench", "--model", "gpunet-0", "--backend", backend, "--precision", "fp32",
                 "--calib-dir", str(root / "train")]) == 1
    assert "--calib-dir applies to --precision int8 only" in capsys.readouterr().err
