"""Benchmark harness, device fingerprint, and measured tiers saved into the user registry."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import gpunet
from gpunet.latency import BenchmarkResult, benchmark, device_fingerprint


def _net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _check_stats(r: BenchmarkResult, iters: int):
    assert len(r.times_ms) == iters == r.iters
    assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
    assert r.std_ms >= 0 and r.min_ms <= r.mean_ms <= r.max_ms
    assert math.isclose(r.throughput, r.batch_size * 1e3 / r.median_ms)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_benchmark_any_module(backend):
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    r = benchmark(_net(), backend=backend, input_shape=(3, 32, 32), batch_size=2, warmup=2, iters=7, threads=1)
    _check_stats(r, 7)
    assert (r.backend, r.precision, r.batch_size, r.threads) == (backend, "fp32", 2, 1)
    assert r.input_shape == (2, 3, 32, 32) and r.model == "Sequential"
    d = r.to_dict()
    assert "times_ms" not in d and d["input_shape"] == [2, 3, 32, 32]
    json.dumps(d)  # serialisable as is
    assert d["fingerprint"]["libraries"]["torch"] == torch.__version__
    if backend == "onnxruntime":
        import onnxruntime

        assert d["fingerprint"]["libraries"]["onnxruntime"] == onnxruntime.__version__


def test_benchmark_hub_model_openvino_bf16():
    pytest.importorskip("openvino")
    from gpunet.export.openvino import openvino_precisions

    if "bf16" not in openvino_precisions():
        pytest.skip("this CPU has no bf16 support in OpenVINO")
    r = benchmark("gpunet-p0", backend="openvino", precision="bf16", resolution=64, warmup=1, iters=3)
    _check_stats(r, 3)
    assert r.model == "gpunet-p0" and r.input_shape == (1, 3, 64, 64) and "OpenVINO" in r.timing


def test_benchmark_native_resolution_default():
    r = benchmark("gpunet-0", backend="torch", warmup=0, iters=1)
    assert r.input_shape == (1, 3, 320, 320)


def test_benchmark_times_a_given_onnx_graph_without_exporting(monkeypatch):
    """An exported graph is timed as given (a fresh session, no second export); one of another
    input shape, or with a backend that does not run ONNX, is refused."""
    pytest.importorskip("onnxruntime")
    import gpunet.latency.bench as bench
    from gpunet.export.onnx import export_onnx_proto

    graph = export_onnx_proto(_net(), (1, 3, 32, 32))

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(bench, "export_onnx_proto", no_export)
    r = benchmark(_net(), backend="onnxruntime", input_shape=(3, 32, 32), warmup=1, iters=4, threads=1,
                  onnx_graph=graph)
    _check_stats(r, 4)
    with pytest.raises(ValueError, match=r"onnx_graph takes input \[1, 3, 32, 32\], not the \[1, 3, 64, 64\]"):
        benchmark(_net(), backend="onnxruntime", input_shape=(3, 64, 64), onnx_graph=graph)
    with pytest.raises(ValueError, match="onnx_graph applies to the onnxruntime and openvino backends"):
        benchmark(_net(), backend="torch", input_shape=(3, 32, 32), onnx_graph=graph)
    with pytest.raises(ValueError, match="onnx_graph at precision 'int8' must be the quantized"):
        benchmark(_net(), backend="onnxruntime", precision="int8", input_shape=(3, 32, 32), onnx_graph=graph)
    with pytest.raises(ValueError, match="calib_data and onnx_graph exclude each other"):
        benchmark(_net(), backend="onnxruntime", precision="int8", input_shape=(3, 32, 32), onnx_graph=graph,
                  calib_data=torch.zeros(2, 3, 32, 32))
    with pytest.raises(AssertionError, match="exported again"):  # without a graph it does export
        benchmark(_net(), backend="onnxruntime", input_shape=(3, 32, 32), iters=1, threads=1)


def test_benchmark_times_a_given_int8_graph_without_quantizing_again(monkeypatch):
    """A QDQ graph made once (NNCF takes seconds) is timed as given at int8, and the result says
    its calibration came with the graph."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("nncf")
    import gpunet.export.quantize as quantize
    from gpunet.latency.bench import GIVEN_GRAPH_CALIBRATION

    graph, _ = quantize.int8_graph(_net(), (1, 3, 32, 32))
    monkeypatch.setattr(quantize, "int8_graph", lambda *a, **k: (_ for _ in ()).throw(AssertionError("again")))
    r = benchmark(_net(), backend="onnxruntime", precision="int8", input_shape=(3, 32, 32), warmup=1, iters=3,
                  threads=1, onnx_graph=graph)
    _check_stats(r, 3)
    assert r.calibration == GIVEN_GRAPH_CALIBRATION and "INT8 QDQ" in r.timing


def test_cache_share_probe_reads_its_own_bandwidth_curve():
    """The share is the largest buffer read before the first one slower than drop x the smallest's
    bandwidth (all measured here, one thread); bad arguments are refused."""
    from gpunet.latency import cache_share

    threads = torch.get_num_threads()
    r = cache_share(sizes_mb=(4, 8, 16), repeat_mb=64)
    assert torch.get_num_threads() == threads  # the probe's one thread is given back
    assert sorted(r.gb_s) == [4, 8, 16] and all(v > 0 for v in r.gb_s.values())
    slow = [mb for mb in (4, 8, 16) if r.gb_s[mb] < r.drop * r.gb_s[4]]
    assert r.mb == (16.0 if not slow else max(mb for mb in (4, 8, 16) if mb < slow[0])) and r.at_least == (not slow)
    assert json.loads(json.dumps(r.to_dict()))["gb_s"]["4"] > 0
    with pytest.raises(ValueError, match="at least two positive sizes"):
        cache_share(sizes_mb=(8,))
    with pytest.raises(ValueError, match="drop must lie in"):
        cache_share(sizes_mb=(4, 8), drop=1.5)


def test_benchmark_bad_input():
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        benchmark(_net(), backend="tflite", input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="unsupported precision 'fp16' for backend 'onnxruntime'"):
        benchmark(_net(), backend="onnxruntime", precision="fp16", input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        benchmark(_net(), backend="torch")
    with pytest.raises(ValueError, match="multiple of 8"):
        benchmark("gpunet-0", backend="torch", resolution=100)
    with pytest.raises(ValueError, match="iters"):
        benchmark(_net(), backend="torch", input_shape=(3, 8, 8), iters=0)
    with pytest.raises(ValueError, match="threads"):
        benchmark(_net(), backend="torch", input_shape=(3, 8, 8), threads=0)
    with pytest.raises(ValueError, match="unknown model"):
        benchmark("gpunet-x", backend="torch")


def test_device_fingerprint():
    fp = device_fingerprint("onnxruntime")
    assert fp["cpu"] and fp["cpu_count"] >= 1 and 1 <= fp["cpu_usable"] <= fp["cpu_count"]
    assert fp["backend"] == "onnxruntime" and "torch" in fp["libraries"]
    assert len(fp["id"]) == 12 and fp["id"] == device_fingerprint("onnxruntime")["id"]
    assert fp["id"] != device_fingerprint("torch")["id"]  # different library set, different id


@pytest.mark.slow  # seven exports
def test_cli_bench_save_query_round_trip(capsys):
    """`gpunet bench --models all --save` -> the device is a hub device for query / get_model."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from gpunet.cli import main

    argv = ["bench", "--model", "all", "--backend", "onnxruntime", "--img-size", "64", "--warmup", "1",
            "--iters", "3", "--save", "--gpu", "My-CPU"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "saved 7 tiers for device 'my-cpu'" in text and "gpunet-d2" in text
    assert "my-cpu" in gpunet.list_devices()
    cards = gpunet.query(gpu="my-cpu")
    assert sorted(c.name for c in cards) == sorted(gpunet.list_models())
    budget = sorted(c.latency_ms for c in cards)[2]
    assert all(c.latency_ms <= budget for c in gpunet.query(max_latency_ms=budget, gpu="my-cpu"))
    card = cards[0]
    assert card.engine.startswith("onnxruntime ") and card.precision == "fp32" and card.batch == 1
    m = card.measurement
    assert m["fingerprint_id"] and m["date"] and m["p90_ms"] >= card.latency_ms and m["std_ms"] >= 0
    assert m["resolution"] == 64 and m["iters"] == 3
    assert card.latency_kind == "measured" and card.resolution == 64  # the size the figure holds for
    dev = gpunet.registry.get_registry().devices["my-cpu"]
    assert dev["fingerprint"]["backend"] == "onnxruntime" and dev["kind"] == "cpu"
    model = gpunet.get_model("gpunet-p0", gpu="my-cpu")
    assert isinstance(model, gpunet.GPUNet)
    assert main(["query", "--gpu", "my-cpu", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 7


def test_save_tiers_replaces_and_validates():
    from gpunet.latency.tiers import save_tiers

    r1 = benchmark("gpunet-0", backend="torch", resolution=32, warmup=0, iters=2)
    r2 = benchmark("gpunet-0", backend="torch", resolution=32, warmup=0, iters=2)
    device, path = save_tiers([r1], "laptop")
    save_tiers([r2], "laptop")  # same batch / precision / engine: replaced, not duplicated
    data = json.loads(open(path).read())
    (entry,) = data["latency"]["laptop"]["gpunet-0"]
    assert entry["latency_ms"] == round(r2.median_ms, 4) and entry["engine"].startswith("torch ")
    assert gpunet.query(gpu="laptop")[0].latency_ms == entry["latency_ms"]
    with pytest.raises(ValueError, match="packaged device"):
        save_tiers([r1], "gv100")
    with pytest.raises(ValueError, match="device name"):
        save_tiers([r1], "my laptop!")
    with pytest.raises(ValueError, match="no benchmark results"):
        save_tiers([], "laptop")
    other = benchmark(_net(), backend="torch", input_shape=(3, 8, 8), warmup=0, iters=1)
    with pytest.raises(ValueError, match="only hub models"):
        save_tiers([other], "laptop")


def test_cli_bench_errors(capsys):
    from gpunet.cli import main

    for bad in (["--backend", "caffe"], ["--backend", "openvino", "--precision", "int4"]):
        with pytest.raises(SystemExit) as e:  # argparse lists the choices: a usage error
            main(["bench", "--model", "gpunet-0", *bad])
        assert e.value.code == 2 and f"invalid choice: '{bad[-1]}'" in capsys.readouterr().err
    assert main(["bench", "--model", "gpunet-0", "--backend", "torch", "--precision", "int8"]) == 1
    assert "unsupported precision 'int8' for backend 'torch'" in capsys.readouterr().err
    assert main(["bench", "--model", "gpunet-zz", "--backend", "torch"]) == 1
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.parametrize("flags, isa", [(["avx2", "fma"], "ISA AVX2"),
                                        (["avx2", "avx512f", "avx512_bf16"], "ISA AVX-512"),
                                        (["avx512f", "amx_bf16", "amx_int8"], "ISA AMX"), ([], "ISA no AVX2")])
def test_cpu_description_names_the_widest_isa_for_benchmark_output(flags, isa):
    from gpunet.latency.fingerprint import cpu_description, cpu_info

    line = cpu_description({"cpu": "Some CPU", "cpu_flags": flags, "cpu_usable": 2, "cpu_count": 4})
    assert line.startswith(f"Some CPU; {isa} (") and line.endswith("2 of 4 cores usable")
    assert all(f in line for f in flags)
    assert cpu_description().startswith(cpu_info()["cpu"])  # this machine's own line
