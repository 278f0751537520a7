"""TensorRT without a GPU: versions, options, shapes, the CUDA-graph fallback, CLI/bench plumbing.

Neither TensorRT nor CUDA can run here, so small fakes stand in for exactly those: a ``tensorrt``
module whose builder records what it is asked (the ONNX files it parses are real, read with onnx),
an engine / execution context, and the CUDA side of the timing loop (stream, capture, events).
Everything of ours around them (option checks, flags, profile, shape checks, fallback logic,
ONNX export, benchmark, tiers, CLI) is the real code.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest
from torch import nn

import gpunet
from gpunet.export import tensorrt as trt_mod

onnx = pytest.importorskip("onnx")

SPEC = {"format": "gpunet-spec/1", "resolution": 32, "family": "standard", "num_classes": 7, "layers": [
    {"type": "head", "in_channels": 3, "out_channels": 8, "act": "relu"},
    {"type": "conv", "in_channels": 8, "out_channels": 8, "stride": 2, "kernel_size": 3, "act": "relu"},
    {"type": "conv", "in_channels": 8, "out_channels": 8, "stride": 2, "kernel_size": 3, "act": "relu"},
    {"type": "tail", "in_channels": 8, "out_channels": 16}]}


def _tensorrt_installed() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


# -- a fake `tensorrt` module: records what build_engine asks of the builder ---------------------


class _Flags:
    FP16, BF16, INT8 = "FP16", "BF16", "INT8"


def fake_tensorrt(version="10.13.0.35", builder_error=None, runtime_error=None):
    """A stand-in for the ``tensorrt`` package; ``rec`` collects the builder calls."""
    rec = {"flags": [], "profile": {}, "network_flags": None, "parsed": None}

    class Network:
        def __init__(self):
            self.inputs = []

        num_inputs = property(lambda self: len(self.inputs))

        def get_input(self, i):
            return self.inputs[i]

    class Parser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):  # the real file, read with onnx: its inputs' shapes
            rec["parsed"] = path
            model = onnx.load(path)
            for vi in model.graph.input:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
                self.network.inputs.append(types.SimpleNamespace(name=vi.name, shape=dims))
            return True

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            rec["profile"][name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def set_memory_pool_limit(self, pool, size):
            rec["workspace"] = size

        def set_flag(self, flag):
            rec["flags"].append(flag)

        def add_optimization_profile(self, profile):
            rec["profile_added"] = True

    class Builder:
        def __init__(self, logger):
            if builder_error:
                raise builder_error

        def create_network(self, flags):
            rec["network_flags"] = flags
            return Network()

        create_builder_config = staticmethod(Config)
        create_optimization_profile = staticmethod(Profile)

        def build_serialized_network(self, network, config):
            return b"serialized engine"

    class Runtime:
        def __init__(self, logger):
            if runtime_error:
                raise runtime_error

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    trt = types.SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, Runtime=Runtime, OnnxParser=Parser,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1))
    major = int(version.split(".")[0])
    trt.BuilderFlag = _Flags if major < 11 else types.SimpleNamespace()  # TensorRT 11 removed them
    return trt, rec


@pytest.fixture
def with_trt(monkeypatch):
    def install(version="10.13.0.35", **kw):
        trt, rec = fake_tensorrt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return rec
    return install


# -- small real ONNX files (onnx.helper): plain, QDQ int8, QDQ uint8 --------------------------------


def _conv_onnx(path, qdq=None, batch=1):
    """x -> [QuantizeLinear -> DequantizeLinear] -> Conv -> y; ``qdq``: None, "int8" or "uint8"."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype("float32"), "w")
    inits, nodes, conv_in = [w], [], "x"
    if qdq:
        zp_type = TensorProto.INT8 if qdq == "int8" else TensorProto.UINT8
        inits += [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("zp", zp_type, [], [0])]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q0"),
                  helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq0")]
        conv_in = "xd"
    nodes.append(helper.make_node("Conv", [conv_in, "w"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


# -- versions and options ---------------------------------------------------------------------------


def test_tensorrt_version_parsing():
    assert trt_mod.parse_tensorrt_version("10.13.0.35") == (10, 13)
    assert trt_mod.parse_tensorrt_version("11.1.0") == (11, 1)
    with pytest.raises(trt_mod.TensorRTUnavailable, match="too old"):
        trt_mod.parse_tensorrt_version("8.6.1")
    with pytest.raises(trt_mod.TensorRTUnavailable, match="cannot read"):
        trt_mod.parse_tensorrt_version("unknown")
    assert not trt_mod.is_strongly_typed(10) and trt_mod.is_strongly_typed(11)


def test_tensorrt_option_validation():
    v = trt_mod.validate_engine_options
    opts = v("fp16", 2, batch=4, max_batch=8, major=10, onnx_dtype="float32")
    assert opts.workspace_bytes == 2 << 30 and not opts.strongly_typed and (opts.batch, opts.max_batch) == (4, 8)
    with pytest.raises(ValueError, match="unsupported precision 'fp8'"):
        v("fp8")
    for kw, msg in [({"workspace_gb": 0}, "workspace_gb"), ({"batch": 0}, "batch"),
                    ({"batch": 4, "max_batch": 2}, "max_batch")]:
        with pytest.raises(ValueError, match=msg):
            v("fp16", **kw)
    # TensorRT 11: strongly typed, FP16 must come from an FP16 export
    assert v("fp16", major=11, onnx_dtype="float16").strongly_typed
    with pytest.raises(ValueError, match=r"half=True"):
        v("fp16", major=11, onnx_dtype="float32")
    with pytest.raises(ValueError, match="only builds strongly typed"):
        v("fp32", major=11, strongly_typed=False)
    assert v("fp32", major=11, onnx_dtype="float32").strongly_typed
    # int8: the Q/DQ nodes decide, so the float type does not matter; a plain graph is refused
    assert v("int8", major=11, onnx_dtype="float32", quantized=True).precision == "int8"
    with pytest.raises(ValueError, match="quantize first with gpunet quantize"):
        v("int8", major=10, quantized=False)
    with pytest.raises(ValueError, match="build it with precision='int8'"):
        v("fp16", major=10, quantized=True)


# -- (5) precision checked against the dtype the export will produce, before the export -------------


def test_export_dtype_is_decided_before_exporting():
    half = trt_mod.export_half
    assert half("fp16", 11) is True and half("fp32", 11) is False
    assert half("fp16", 10) is False and half("bf16", 10) is False  # weakly typed: builder flags on fp32
    assert half("fp16", 10, strongly_typed=True) is True
    with pytest.raises(ValueError, match=r"bf16.*TensorRT 11.*strongly typed.*BuilderFlag.BF16.*fp32 or fp16 only"):
        half("bf16", 11)
    with pytest.raises(ValueError, match="contradicts precision 'fp32'"):
        half("fp32", 11, half=True)
    with pytest.raises(ValueError, match="contradicts precision 'fp32'"):
        half("fp32", 10, half=True)
    with pytest.raises(ValueError, match="quantize first"):
        half("int8", 10)


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SPEC))
    return path


@pytest.fixture
def export_calls(monkeypatch):
    """Record every ONNX export (its ``half``), whichever path reaches it; the real export still runs."""
    from gpunet.export import onnx as onnx_export
    from gpunet.latency import bench

    calls = []

    def spy(real):
        def export_proto(model, input_shape, dynamic_batch=False, opset=None, half=False):
            calls.append(half)
            return real(model, input_shape, dynamic_batch, opset, half)
        return export_proto

    monkeypatch.setattr(onnx_export, "export_onnx_proto", spy(onnx_export.export_onnx_proto))
    monkeypatch.setattr(bench, "export_onnx_proto", spy(bench.export_onnx_proto))
    return calls


@pytest.mark.parametrize("argv, msg", [
    (["--precision", "bf16"], "strongly typed"),
    (["--precision", "fp32", "--half"], "contradicts precision 'fp32'"),
])
def test_cli_export_refuses_bf16_and_half_fp32_on_tensorrt11_before_exporting(with_trt, spec_file, export_calls,
                                                                               capsys, argv, msg):
    from gpunet.cli import main

    with_trt("11.1.0")
    assert main(["export", str(spec_file), "--format", "tensorrt", "--out", "t.engine"] + argv) == 1
    assert msg in capsys.readouterr().err
    assert export_calls == [] and not (spec_file.parent / "t.engine").exists()


def test_bench_refuses_bf16_on_tensorrt11_before_exporting(with_trt, export_calls):
    with_trt("11.1.0")
    with pytest.raises(ValueError, match="strongly typed"):
        gpunet.benchmark(nn.Conv2d(3, 4, 1), backend="tensorrt", input_shape=(3, 8, 8), precision="bf16")
    assert export_calls == []


# -- (6) gpunet export --format tensorrt --dynamic-batch --max-batch N -------------------------------


def test_cli_export_max_batch_reaches_the_profile(with_trt, spec_file, export_calls, capsys):
    from gpunet.cli import main

    rec = with_trt("10.13.0.35")
    assert main(["export", str(spec_file), "--format", "tensorrt", "--out", "t.engine", "--dynamic-batch",
                 "--max-batch", "8", "--batch-size", "2", "--precision", "fp16", "--no-check"]) == 0
    out = capsys.readouterr().out
    assert (spec_file.parent / "t.engine").read_bytes() == b"serialized engine"
    (name, (lo, opt, hi)), = rec["profile"].items()
    assert (lo[0], opt[0], hi[0]) == (1, 2, 8) and lo[1:] == hi[1:] == (3, 32, 32)
    assert rec["flags"] == ["FP16"] and export_calls == [False]  # TensorRT 10: fp32 export + FP16 flag
    assert "dynamic batch 1..8 (opt 2)" in out and "TensorRT 10.13.0.35" in out
    # without --max-batch the profile stops at --batch-size; --max-batch needs --dynamic-batch
    rec = with_trt("11.1.0")
    assert main(["export", str(spec_file), "--format", "tensorrt", "--out", "t.engine", "--dynamic-batch",
                 "--no-check"]) == 0
    assert [h[0] for h in next(iter(rec["profile"].values()))] == [1, 1, 1] and export_calls[-1] is True
    assert rec["flags"] == [] and rec["network_flags"] == 1 << 1  # strongly typed, fp16 from an FP16 export
    capsys.readouterr()
    assert main(["export", str(spec_file), "--format", "tensorrt", "--max-batch", "8"]) == 1
    assert "needs dynamic_batch" in capsys.readouterr().err
    assert main(["export", str(spec_file), "--format", "onnx", "--max-batch", "8"]) == 1
    assert "applies to --format tensorrt" in capsys.readouterr().err


# -- INT8 (issue 13): explicit quantization from a QDQ ONNX -----------------------------------------


def test_onnx_quantizers_reads_real_qdq_graphs(tmp_path):
    assert trt_mod.onnx_quantizers(str(_conv_onnx(tmp_path / "p.onnx"))) == \
        {"quantize": 0, "dequantize": 0, "quantized": False, "unsigned": []}
    q = trt_mod.onnx_quantizers(str(_conv_onnx(tmp_path / "q.onnx", "int8")))
    assert (q["quantize"], q["dequantize"], q["quantized"], q["unsigned"]) == (1, 1, True, [])
    u = trt_mod.onnx_quantizers(str(_conv_onnx(tmp_path / "u.onnx", "uint8")))
    assert u["unsigned"] == ["q0", "dq0"]


def test_builder_flags():
    assert trt_mod.builder_flags("int8", strongly_typed=False) == ("INT8", "FP16")
    assert trt_mod.builder_flags("fp16", strongly_typed=False) == ("FP16",)
    assert trt_mod.builder_flags("fp32", strongly_typed=False) == ()
    for p in trt_mod.TENSORRT_PRECISIONS:
        assert trt_mod.builder_flags(p, strongly_typed=True) == ()


def test_int8_refuses_unquantized_and_uint8_files_before_tensorrt(tmp_path):
    if _tensorrt_installed():
        pytest.skip("checks that these errors come before TensorRT is imported")
    plain, uint8 = _conv_onnx(tmp_path / "p.onnx"), _conv_onnx(tmp_path / "u.onnx", "uint8")
    with pytest.raises(ValueError, match="quantize first with gpunet quantize"):
        gpunet.build_engine(plain, tmp_path / "p.engine", precision="int8")
    with pytest.raises(ValueError, match="signed int8 quantizers only.*uint8-activations"):
        gpunet.build_engine(uint8, tmp_path / "u.engine", precision="int8")
    with pytest.raises(trt_mod.TensorRTUnavailable):  # a good QDQ file gets as far as TensorRT
        gpunet.build_engine(_conv_onnx(tmp_path / "q.onnx", "int8"), tmp_path / "q.engine", precision="int8")
    assert not list(tmp_path.glob("*.engine"))


@pytest.mark.parametrize("version, strongly, flags, network_flags", [
    ("10.13.0.35", None, ["INT8", "FP16"], 0),    # weakly typed: INT8 (+FP16 elsewhere), no calibrator
    ("10.13.0.35", True, [], 1 << 1),             # strongly typed on 10: the graph decides
    ("11.1.0", None, [], 1 << 1),                 # TensorRT 11: always strongly typed, no flags exist
])
def test_int8_engine_build(with_trt, tmp_path, version, strongly, flags, network_flags):
    rec = with_trt(version)
    q = _conv_onnx(tmp_path / "q.onnx", "int8")
    report = gpunet.build_engine(q, tmp_path / "q.engine", precision="int8", strongly_typed=strongly)
    assert rec["flags"] == flags and rec["network_flags"] == network_flags and rec["parsed"] == str(q)
    assert report["precision"] == "int8" and report["builder_flags"] == flags
    assert (tmp_path / "q.engine").read_bytes() == b"serialized engine"
    with pytest.raises(ValueError, match="build it with precision='int8'"):
        gpunet.build_engine(q, tmp_path / "x.engine", precision="fp16")


# -- (8) trt.Runtime / trt.Builder failing inside pybind11 ------------------------------------------


@pytest.mark.parametrize("error", [TypeError("__init__(): factory function returned nullptr"), None])
def test_runtime_and_builder_failures_are_tensorrt_unavailable(error):
    class Broken:
        def __new__(cls, logger):
            if error is not None:
                raise error
            return None  # some bindings return None instead

    trt = types.SimpleNamespace(Runtime=Broken, Builder=Broken)
    with pytest.raises(trt_mod.TensorRTUnavailable, match="runtime.*CUDA did not initialise.*NVIDIA GPU") as e:
        trt_mod._runtime(trt, logger=None)
    assert e.value.__cause__ is error
    with pytest.raises(trt_mod.TensorRTUnavailable, match="builder"):
        trt_mod._builder(trt, logger=None)


# -- (3) input shapes vs the optimisation profile; data-dependent outputs ---------------------------

INPUT, OUTPUT = "in", "out"


class FakeEngine:
    """ICudaEngine's name-based I/O API for one input ``x`` and one output ``y``."""

    def __init__(self, x_shape=(-1, 3, 8, 8), profile=((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))):
        self.shapes = {"x": x_shape, "y": (-1, 10)}
        self.profile = profile
        self.num_io_tensors = 2

    def get_tensor_name(self, i):
        return ["y", "x"][i]  # outputs may come first; inputs must still be set first

    def get_tensor_mode(self, name):
        return INPUT if name == "x" else OUTPUT

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def get_tensor_profile_shape(self, name, index):
        assert (name, index) == ("x", 0)
        return [list(s) for s in self.profile]


class FakeContext:
    """IExecutionContext: set_input_shape returns False outside the profile (as TensorRT 10)."""

    def __init__(self, engine, data_dependent=False):
        self.engine, self.data_dependent, self.batch = engine, data_dependent, None

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.profile
        if not lo[0] <= shape[0] <= hi[0]:
            return False
        self.batch = shape[0]
        return True

    def get_tensor_shape(self, name):
        return (self.batch, -1) if self.data_dependent else (self.batch, 10)


def test_input_shape_outside_profile_quotes_the_profile():
    eng = FakeEngine()
    inputs, outputs = trt_mod._io_shapes(eng, FakeContext(eng), INPUT, 3, "m.engine")
    assert inputs == [("x", (3, 3, 8, 8))] and outputs == [("y", (3, 10))]
    with pytest.raises(ValueError, match=r"'x' cannot take shape \(8, 3, 8, 8\).*min \(1, 3, 8, 8\), opt \(2, 3, 8, 8\), "
                                         r"max \(4, 3, 8, 8\).*1\.\.4.*--max-batch"):
        trt_mod._io_shapes(eng, FakeContext(eng), INPUT, 8, "m.engine")
    with pytest.raises(RuntimeError, match=r"output 'y' has shape \(2, -1\).*data-dependent.*IOutputAllocator"):
        trt_mod._io_shapes(eng, FakeContext(eng, data_dependent=True), INPUT, 2, "m.engine")
    fixed = FakeEngine(x_shape=(1, 3, 8, 8))
    with pytest.raises(ValueError, match="fixed batch of 1, not 2"):
        trt_mod._io_shapes(fixed, FakeContext(fixed), INPUT, 2, "m.engine")


# -- (1) (2) (4) (7) the timing loop: capture checked, fallback checked, inputs waited for -----------


class FakeCuda:
    """The CUDA side of ``_measure``: logs calls; ``capture`` runs fn as a capture would."""

    def __init__(self, log, capture_error=None):
        self.log, self.capture_error, self.capturing = log, capture_error, False

    def wait_for_inputs(self):
        self.log.append("wait")

    def synchronize(self):
        self.log.append("sync")

    def capture(self, fn):
        self.capturing = True
        try:
            result = fn()
        finally:
            self.capturing = False
        if self.capture_error:  # e.g. cudaErrorStreamCaptureInvalidated raised by capture_end
            return None, False, self.capture_error
        log = self.log
        return types.SimpleNamespace(replay=lambda: log.append("replay")), bool(result), None

    def time(self, step):
        step()
        return 0.5


def _enqueue(log, cuda, fail_in_capture=False, fail_at=None):
    """execute_async_v3: True, or False during capture / at the ``fail_at``-th plain call."""
    calls = []

    def run():
        if cuda.capturing:
            log.append("run-in-capture")
            return not fail_in_capture
        calls.append(1)
        log.append("run")
        return len(calls) != fail_at
    return run


def test_graph_is_replayed_when_capture_succeeds():
    log = []
    cuda = FakeCuda(log)
    times, used, why = trt_mod._measure(_enqueue(log, cuda), cuda, warmup=2, iters=3)
    assert used and why is None and times == [0.5] * 3
    assert log.count("run") == 1 and log.count("run-in-capture") == 1 and log.count("replay") == 5


def test_failed_enqueue_in_capture_drops_the_graph_and_times_plain_enqueues():
    log = []
    cuda = FakeCuda(log)
    times, used, why = trt_mod._measure(_enqueue(log, cuda, fail_in_capture=True), cuda, warmup=2, iters=3)
    assert not used and "returned False inside the CUDA-graph capture" in why
    assert "replay" not in log and log.count("run") == 1 + 2 + 3 and len(times) == 3
    label = trt_mod.timing_label(used, fallback=True)
    assert "plain execute_async_v3 enqueues" in label and "capture failed" in label and "replay" not in label


def test_invalidated_capture_falls_back():
    log = []
    cuda = FakeCuda(log, capture_error="operation not permitted when stream is capturing")
    times, used, why = trt_mod._measure(_enqueue(log, cuda), cuda, warmup=1, iters=2)
    assert not used and "operation not permitted" in why and "replay" not in log and log.count("run") == 4


@pytest.mark.parametrize("cuda_graph, fail_at", [(False, 3), (False, 1), (True, 1)])
def test_false_from_a_plain_enqueue_raises(cuda_graph, fail_at):
    log = []
    cuda = FakeCuda(log)
    with pytest.raises(RuntimeError, match="returned False"):
        trt_mod._measure(_enqueue(log, cuda, fail_at=fail_at), cuda, warmup=1, iters=5, cuda_graph=cuda_graph)


def test_side_stream_waits_for_the_inputs_before_the_first_enqueue():
    log = []
    cuda = FakeCuda(log)
    trt_mod._measure(_enqueue(log, cuda), cuda, warmup=0, iters=1, cuda_graph=False)
    assert log[:2] == ["wait", "run"]


def test_torch_cuda_side_waits_on_the_producer_stream_and_captures_thread_local():
    """_TorchCuda against a stand-in for torch.cuda (no CUDA here): which stream it waits on, and
    how it captures; a capture that fails at its end is reported, not replayed."""
    seen = {}

    class Stream:
        def __init__(self, name="side"):
            self.name = name

        def wait_stream(self, other):
            seen["waited_on"] = other.name

    class Graph:
        def __init__(self, graph, stream, capture_error_mode):
            seen["mode"], seen["capture_stream"] = capture_error_mode, stream.name

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            if seen.get("invalidate"):
                raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    default = Stream("default")
    cuda = types.SimpleNamespace(current_stream=lambda: default, Stream=Stream, CUDAGraph=object,
                                 Event=lambda enable_timing: None, graph=Graph)
    tc = trt_mod._TorchCuda(types.SimpleNamespace(cuda=cuda))
    tc.wait_for_inputs()
    assert seen["waited_on"] == "default"
    graph, ok, err = tc.capture(lambda: False)
    assert seen["mode"] == "thread_local" and seen["capture_stream"] == "side" and not ok and err is None
    seen["invalidate"] = True
    assert tc.capture(lambda: True)[0] is None and "previous error" in tc.capture(lambda: True)[2]


def test_bench_and_tiers_word_the_timing_from_the_graph_use(with_trt, monkeypatch, capsys):
    """benchmark -> real export and build_engine (fake TensorRT) -> engine_latency (stands in: no GPU)
    reporting a fallback: the result, the saved tier and `gpunet bench` say what was timed, and
    the bench header names TensorRT and the GPU."""
    from gpunet.latency import bench
    from gpunet.latency.tiers import save_tiers

    rec = with_trt("10.13.0.35")

    def latency(path, batch, warmup, iters):
        assert open(path, "rb").read() == b"serialized engine"
        return {"times_ms": [0.25] * iters, "median_ms": 0.25, "cuda_graph": False,
                "timing": trt_mod.timing_label(False, fallback=True), "graph_fallback": "test",
                "tensorrt": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3"}

    monkeypatch.setattr(trt_mod, "engine_latency", latency)
    r = gpunet.benchmark(nn.Conv2d(3, 4, 1), backend="tensorrt", input_shape=(3, 8, 8), precision="fp16",
                         warmup=1, iters=3)
    assert rec["flags"] == ["FP16"] and r.median_ms == 0.25
    assert "plain execute_async_v3 enqueues" in r.timing and "CUDA-graph replay" not in r.timing
    assert r.fingerprint["tensorrt"] == "10.13.0.35" and r.fingerprint["gpu"]
    device, _ = save_tiers([dataclasses.replace(r, model="gpunet-0")], "my-gpu")
    card = next(c for c in gpunet.query(gpu=device) if c.name == "gpunet-0")
    assert card.measurement["timing"] == "median " + r.timing

    from gpunet.cli import main

    def tiny_benchmark(name, resolution=None, **kw):  # the CLI takes hub names; measure a tiny module
        return dataclasses.replace(bench.benchmark(nn.Conv2d(3, 4, 1), input_shape=(3, 8, 8), **kw), model=name)

    monkeypatch.setattr("gpunet.latency.benchmark", tiny_benchmark)
    assert main(["bench", "--model", "gpunet-0", "--backend", "tensorrt", "--precision", "fp16", "--warmup", "1",
                 "--iters", "2"]) == 0
    out = capsys.readouterr().out
    assert "TensorRT 10.13.0.35 on " in out and r.fingerprint["gpu"] in out and "plain execute_async_v3" in out


def test_tensorrt_missing_is_a_clear_error(tmp_path):
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    if _tensorrt_installed():
        pytest.skip("TensorRT is installed here")
    onnx_path = _conv_onnx(tmp_path / "m.onnx")
    with pytest.raises(trt_mod.TensorRTUnavailable, match=r"pip install tensorrt.*NVIDIA GPU"):
        gpunet.build_engine(onnx_path, tmp_path / "m.engine")
    with pytest.raises(ValueError, match="unsupported precision"):  # options are checked first
        gpunet.build_engine(onnx_path, tmp_path / "m.engine", precision="fp8")
    with pytest.raises(FileNotFoundError, match="export it"):
        gpunet.build_engine(tmp_path / "none.onnx", tmp_path / "m.engine")
    (tmp_path / "m.engine").write_bytes(b"x")
    with pytest.raises(trt_mod.TensorRTUnavailable, match="pip install tensorrt"):
        trt_mod.engine_latency(tmp_path / "m.engine")
    with pytest.raises(trt_mod.TensorRTUnavailable, match="NVIDIA GPU"):
        gpunet.benchmark(nn.Conv2d(3, 3, 1), backend="tensorrt", input_shape=(3, 8, 8), precision="fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.onnx"]


def test_bench_int8_builds_the_qdq_graph_as_int8(with_trt, monkeypatch):
    """`gpunet bench --backend tensorrt --precision int8`: the INT8 engineer's QDQ graph (real NNCF,
    random calibration) goes to build_engine as int8; TensorRT 10 gets INT8 + FP16."""
    pytest.importorskip("nncf")
    rec = with_trt("10.13.0.35")
    seen = {}

    def latency(path, batch, warmup, iters):
        return {"times_ms": [0.1] * iters, "cuda_graph": True, "timing": trt_mod.timing_label(True),
                "tensorrt": "10.13.0.35", "gpu": "NVIDIA H100"}

    real_build = trt_mod.build_engine

    def build(onnx_path, engine_path, **kw):
        seen["quantizers"] = trt_mod.onnx_quantizers(onnx_path)
        return real_build(onnx_path, engine_path, **kw)

    monkeypatch.setattr(trt_mod, "engine_latency", latency)
    monkeypatch.setattr(trt_mod, "build_engine", build)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    r = gpunet.benchmark(net, backend="tensorrt", precision="int8", input_shape=(3, 16, 16), warmup=0, iters=2)
    assert rec["flags"] == ["INT8", "FP16"] and r.precision == "int8" and "random" in r.calibration
    assert seen["quantizers"]["quantize"] > 0 and seen["quantizers"]["unsigned"] == []
    assert "CUDA-graph replay" in r.timing


# -- gpunet deploy on TensorRT: which engine each precision is built from, the engine's bytes -------


def test_deploy_says_why_a_tensorrt_path_cannot_be_built():
    from gpunet.deploy.measure import tensorrt_unavailable

    assert tensorrt_unavailable("fp16", 10, gpu=False) == "no NVIDIA GPU on this machine"
    assert "pip install tensorrt" in tensorrt_unavailable("fp16", None, gpu=True)
    assert "strongly typed" in tensorrt_unavailable("bf16", 11, gpu=True)  # no bf16 graph to type it from
    for precision, major in (("bf16", 10), ("fp16", 11), ("fp32", 11), ("int8", 11), ("int8", 10)):
        assert tensorrt_unavailable(precision, major, gpu=True) == "", (precision, major)


@pytest.mark.parametrize("precision, major, source", [
    ("fp32", 10, "fp32"), ("fp16", 10, "fp32"), ("bf16", 10, "fp32"),  # TensorRT 10: builder flags lower fp32
    ("fp16", 11, "fp16"), ("fp32", 11, "fp32"),                        # strongly typed: the graph's types decide
    ("int8", 10, "int8"), ("int8", 11, "int8")])                       # the QDQ graph, signed activations
def test_deploy_builds_each_tensorrt_engine_from_the_graph_its_typing_needs(precision, major, source):
    from gpunet.deploy.measure import engine_source

    assert engine_source(precision, major) == source


@pytest.mark.parametrize("version, precision, qdq, flags", [
    ("10.13.0.35", "fp16", None, ["FP16"]), ("10.13.0.35", "int8", "int8", ["INT8", "FP16"]),
    ("11.1.0", "int8", "int8", [])])
def test_deploy_engine_bytes_come_from_the_graph_through_build_engine(with_trt, tmp_path, version, precision, qdq,
                                                                      flags):
    from gpunet.deploy.runtime import tensorrt_engine

    rec = with_trt(version)
    proto = onnx.load(str(_conv_onnx(tmp_path / "g.onnx", qdq)))
    assert tensorrt_engine(proto, precision) == b"serialized engine"
    assert rec["flags"] == flags
    assert not __import__("os").path.exists(rec["parsed"])  # the temporary ONNX file is gone


def test_an_engine_callable_needs_cuda(with_trt):
    with_trt("10.13.0.35")
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the error on a machine without CUDA")
    with pytest.raises(trt_mod.TensorRTUnavailable, match="no CUDA device visible"):
        trt_mod.engine_callable(b"engine bytes")


def test_a_tensorrt_deploy_folder_names_what_to_install(tmp_path):
    import hashlib

    from gpunet.deploy import load_deployed
    from gpunet.deploy.artifact import DEPLOY_SCHEMA, artifact_files

    if _tensorrt_installed():
        pytest.skip("checks the error where TensorRT is missing")
    assert artifact_files("tensorrt") == ["model.engine"]
    (tmp_path / "model.engine").write_bytes(b"an engine built elsewhere")
    info = {"schema": DEPLOY_SCHEMA, "model": "gpunet-0", "backend": "tensorrt", "precision": "fp16", "batch_size": 1,
            "input_shape": [1, 3, 32, 32], "fingerprint": {"id": "elsewhere"},
            "preprocessing": {"input_size": [3, 32, 32], "interpolation": "bicubic", "crop_pct": 1.0,
                              "mean": [0.5] * 3, "std": [0.5] * 3},
            "files": {"model.engine": hashlib.sha256(b"an engine built elsewhere").hexdigest()}}
    (tmp_path / "deploy.json").write_text(json.dumps(info))
    with pytest.warns(RuntimeWarning, match="fingerprint"):
        with pytest.raises(trt_mod.TensorRTUnavailable, match="pip install tensorrt"):
            load_deployed(tmp_path)
