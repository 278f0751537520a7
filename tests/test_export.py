"""ONNX export (checked in ONNX Runtime), OpenVINO IR, TensorRT option/version handling.

Hub models are exported at 64 px: they are fully convolutional (global pooling before the
classifier), so the graph, BN folding and numerics checked here do not depend on input size.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gpunet
from gpunet.export import tensorrt as trt_mod
from gpunet.export.onnx import ExportError



def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# only the tests that export need the onnx extra; TensorRT option/version checks do not
onnx, ort = _optional("onnx"), _optional("onnxruntime")
needs_onnx = pytest.mark.skipif(onnx is None or ort is None or importlib.util.find_spec("onnxscript") is None,
                                reason="needs gpunet[onnx] (onnx, onnxruntime, onnxscript)")

RES = 64


def with_bn_stats(model, seed=0):
    """Give every BatchNorm trained-looking statistics and affine terms. A random-init model's BN
    is the identity (mean 0, var 1, weight 1, bias 0), so a wrong fold would go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model


@pytest.fixture
def out(tmp_path):
    """An empty output folder (tmp_path also holds the test's GPUNET_HOME)."""
    d = tmp_path / "out"
    d.mkdir()
    return d


def _run_ort(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


@needs_onnx
@pytest.mark.parametrize("name", ["gpunet-0", "gpunet-1", "gpunet-p0"] + [
    pytest.param(n, marks=pytest.mark.slow) for n in ("gpunet-2", "gpunet-p1", "gpunet-d1", "gpunet-d2")])
def test_export_all_hub_models_checked_in_onnxruntime(name, out):
    model = with_bn_stats(gpunet.get_model(name)).eval()
    path = out / f"{name}.onnx"
    report = gpunet.export_onnx(model, path, dynamic_batch=True, resolution=RES)
    assert report.checked and report.checked_batches == (1, 3)
    assert report.max_rel_err <= 1e-4, report
    assert os.listdir(out) == [path.name]  # one self-contained file, no external data, no temp left
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # BN folded into the convolutions
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # symbolic batch axis
    # the file on disk, independently of the exporter's own check: batch 3 runs and matches PyTorch
    x = torch.randn(3, 3, RES, RES)
    got = _run_ort(str(path), x)
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (3, 1000)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _small_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net[1].running_mean.uniform_(-1, 1)  # non-trivial statistics, so a wrong fold would show
    net[1].running_var.uniform_(0.5, 2)
    return net.eval()


@needs_onnx
def test_static_batch_is_fixed(out):
    path = out / "m.onnx"
    report = gpunet.export_onnx(_small_net(), path, batch_size=2, input_shape=(3, 16, 16))
    assert report.checked_batches == (2,) and report.input_shape == (2, 3, 16, 16)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [2, 3, 16, 16]
    assert trt_mod._onnx_compute_dtype(str(path)) == "float32"
    with pytest.raises(Exception, match="dimension"):
        sess.run(None, {sess.get_inputs()[0].name: np.zeros((3, 3, 16, 16), np.float32)})


@needs_onnx
def test_half_export_is_fp16_and_close(out):
    model = with_bn_stats(gpunet.get_model("gpunet-p0")).eval()
    report = gpunet.export_onnx(model, out / "h.onnx", resolution=RES, half=True)
    proto = onnx.load(str(out / "h.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert 0 < report.max_rel_err <= 2e-2  # fp16 rounding is visible but small
    # what build_engine reads to decide whether TensorRT 11 can build FP16 from this file
    assert trt_mod._onnx_compute_dtype(str(out / "h.onnx")) == "float16"


@needs_onnx
@pytest.mark.parametrize("dynamic_batch,opset", [(False, 20), (True, 20), (False, 17)])
def test_cached_registry_export_is_the_public_exporters_graph(dynamic_batch, opset):
    """export_onnx_proto skips torch.onnx.export's per-call registry rebuild at static shapes; the
    graph must be byte for byte what the public call writes (static, a converted lower opset; a
    dynamic batch takes the public call)."""
    from gpunet.export import onnx as onnx_export

    assert onnx_export._exporter_core(opset)[0] is not None, "torch 2.14's exporter core takes a registry"
    model = with_bn_stats(gpunet.get_model("gpunet-p0")).eval()
    x = torch.randn(2 if dynamic_batch else 1, 3, RES, RES)
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    ours = onnx_export.export_onnx_proto(model, (1, 3, RES, RES), dynamic_batch=dynamic_batch, opset=opset)
    with onnx_export.quiet():
        public = torch.onnx.export(onnx_export._InputNamed(model), (x,), dynamo=True, external_data=False,
                                   optimize=True, opset_version=opset, input_names=["input"],
                                   output_names=["output"], dynamic_shapes=shapes, verbose=False,
                                   report=False).model_proto
    assert ours.SerializeToString() == public.SerializeToString()


@needs_onnx
def test_any_module_needs_input_shape(out):
    net = _small_net()
    with pytest.raises(ValueError, match="input_shape"):
        gpunet.export_onnx(net, out / "n.onnx")
    report = gpunet.export_onnx(net, out / "n.onnx", input_shape=(3, 16, 16))
    assert report.input_shape == (1, 3, 16, 16) and report.max_rel_err <= 1e-4
    assert "BatchNormalization" not in report.op_counts


class _Noisy(nn.Module):
    """ONNX Runtime draws different random numbers than PyTorch: the check must catch it."""

    def forward(self, x):
        return x + torch.randn_like(x)


@needs_onnx
def test_check_failure_raises_and_leaves_no_file(out):
    with pytest.raises(ExportError, match="differs from PyTorch"):
        gpunet.export_onnx(_Noisy(), out / "noisy.onnx", input_shape=(3, 8, 8))
    assert os.listdir(out) == []


@needs_onnx
def test_bad_inputs_are_clear_errors(out):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gpunet.export_onnx("gpunet-0", out / "missing" / "m.onnx", resolution=RES)
    (out / "afile").write_text("x")
    with pytest.raises((FileNotFoundError, NotADirectoryError)):
        gpunet.export_onnx("gpunet-0", out / "afile" / "m.onnx", resolution=RES)
    with pytest.raises(ValueError, match="multiple of 8"):
        gpunet.export_onnx("gpunet-0", out / "m.onnx", resolution=65)
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        gpunet.export_onnx("gpunet-0", out / "m.onnx", resolution=0)
    with pytest.raises(ValueError, match="opset"):
        gpunet.export_onnx("gpunet-0", out / "m.onnx", resolution=RES, opset=7)
    with pytest.raises(ValueError, match="unknown model"):
        gpunet.export_onnx("gpunet-9", out / "m.onnx")
    with pytest.raises(ValueError, match="batch_size"):
        gpunet.export_onnx("gpunet-0", out / "m.onnx", batch_size=0)
    assert sorted(os.listdir(out)) == ["afile"]


def test_missing_onnx_package_says_what_to_install(out, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail as if not installed
    with pytest.raises(ImportError, match=r"pip install 'gpunet\[onnx\]'"):
        gpunet.export_onnx("gpunet-0", out / "m.onnx", resolution=RES)
    assert os.listdir(out) == []


@needs_onnx
def test_cli_export_onnx(out, capsys):
    from gpunet.cli import main

    path = out / "p0.onnx"
    assert main(["export", "gpunet-0", "--out", str(path), "--img-size", str(RES)]) == 0
    assert "max rel error" in capsys.readouterr().out and path.exists()
    assert main(["export", "gpunet-0", "--out", str(out / "no" / "x.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err


@needs_onnx
def test_export_leaves_the_callers_model_untouched(out):
    """Exporting mid-training must not switch the caller's model to eval, nor cast it to fp32."""
    from gpunet.export.onnx import check_onnx, export_onnx_proto
    from gpunet.hub import resolve_model_input

    net = _small_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    gpunet.export_onnx(net, out / "t.onnx", input_shape=(3, 16, 16))
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # no train-mode forward
    net64 = _small_net().double().train()
    gpunet.export_onnx(net64, out / "d.onnx", input_shape=(3, 16, 16))
    assert net64.training and all(t.dtype == torch.float64 for t in net64.state_dict().values()
                                  if t.is_floating_point())
    model, shape, _ = resolve_model_input(net64, input_shape=(3, 16, 16))
    assert model is not net64 and not model.training and net64.training
    check_onnx(export_onnx_proto(net64, shape), net64, shape, [1])
    assert net64.training and next(net64.parameters()).dtype == torch.float64


# -- OpenVINO -------------------------------------------------------------------------------------
@needs_onnx
def test_openvino_ir_bf16_checked(out):
    pytest.importorskip("openvino")
    from gpunet.export.openvino import export_openvino, openvino_precisions

    precision = "bf16" if "bf16" in openvino_precisions() else "fp32"
    xml = out / "m.xml"
    model = with_bn_stats(gpunet.get_model("gpunet-0")).eval()  # BN folding with real statistics
    report = export_openvino(model, xml, resolution=RES, precision=precision)
    assert report["checked"] and report["max_rel_err"] <= (6e-2 if precision == "bf16" else 1e-4)
    if precision == "bf16":
        assert report["max_rel_err"] > 1e-5  # it really ran in bf16, not silently fp32
    assert sorted(os.listdir(out)) == ["m.bin", "m.xml"]
    with pytest.raises(ValueError, match=r"\.xml"):
        export_openvino("gpunet-0", out / "m.ir", resolution=RES)


def test_openvino_rejects_unsupported_precision():
    pytest.importorskip("openvino")
    from gpunet.export.openvino import compile_openvino, openvino_precisions

    with pytest.raises(ValueError, match="unsupported precision 'int8'"):
        compile_openvino("unused.onnx", "int8")
    if "fp16" not in openvino_precisions():
        with pytest.raises(ValueError, match="not supported by OpenVINO on this CPU"):
            compile_openvino("unused.onnx", "fp16")


# TensorRT: tests/test_tensorrt.py
