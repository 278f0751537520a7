"""Property: any mutation of a valid spec either builds a model whose structure is what the spec
says, or is refused with a SpecError naming the entry and field. Never another exception, never a
model that silently differs from its spec (a truthy "se", an ignored kernel size).

Small on purpose (32 px, 4-5 layers, 8-16 channels, a bounded number of examples).
"""
import copy
import math

import pytest
import torch
from torch import nn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import gpunet  # noqa: E402
from gpunet.spec import SpecError, parse_spec  # noqa: E402

STANDARD = {"format": "gpunet-spec/1", "resolution": 32, "family": "standard", "num_classes": 5, "layers": [
    {"type": "head", "in_channels": 3, "out_channels": 8, "act": "relu", "stage": 0},
    {"type": "conv", "in_channels": 8, "out_channels": 8, "stride": 1, "kernel_size": 3, "act": "relu", "stage": 1},
    {"type": "fused_irb", "in_channels": 8, "out_channels": 16, "stride": 2, "kernel_size": 3, "expansion": 2,
     "se": False, "act": "swish", "stage": 2},
    {"type": "irb", "in_channels": 16, "out_channels": 16, "stride": 1, "kernel_size": 5, "expansion": 3,
     "se": True, "act": "relu", "stage": 3},
    {"type": "tail", "in_channels": 16, "out_channels": 32}]}
DISTILL = {"format": "gpunet-spec/1", "resolution": 32, "family": "distill", "num_classes": 5, "layers": [
    {"type": "head_large", "in_channels": 3, "out_channels": 8, "act": "relu", "stage": 0},
    {"type": "irb", "in_channels": 8, "out_channels": 16, "stride": 2, "kernel_size": 3, "expansion": 2,
     "se": False, "act": "relu", "stage": 1},
    {"type": "irb", "in_channels": 16, "out_channels": 16, "stride": 1, "kernel_size": 5, "expansion": 3,
     "se": False, "stage": 2},
    {"type": "tail", "in_channels": 16, "out_channels": 24, "pre_logits_channels": 32}]}

# per field: valid values and near misses (wrong type, truthy strings, out of range)
FIELD_VALUES = {
    "type": ["head", "head_large", "conv", "fused_irb", "irb", "tail", "mlp", ["irb"], None],
    "in_channels": [8, 16, 12, 0, -8, 8.0, "8", True],
    "out_channels": [8, 16, 24, 0, 16.0, "16", None],
    "stride": [1, 2, 3, 0, True, 2.0, "2"],
    "kernel_size": [1, 3, 5, 7, 4, 0, True, 3.0, "3"],
    "expansion": [1, 2, 3, 2.5, 0, -1, float("nan"), float("inf"), True, "2"],
    "act": ["relu", "swish", None, "gelu", "", 1, ["relu"]],
    "se": [True, False, "no", "yes", 0, 1, None],
    "stage": [0, 1, 4, 7, -1, 1.5, True, "4", None],
    "pre_logits_channels": [16, 32, 0, 2.5, "32", True, None],
    "bogus": [1],
}
TOP_VALUES = {
    "resolution": [32, 24, 16, 8, 4, 0, 32.0, "32", True],
    "family": ["standard", "distill", "other", None, ["standard"]],
    "num_classes": [5, 1, 0, -1, 5.0, True, "5"],
    "name": ["net", None, 5, ["n"]],
    "format": ["gpunet-spec/1", "gpunet-spec/2", None],
    "layers": [[], None, "x"],
    "bogus": [1],
}
DELETE = object()


@st.composite
def mutated(draw):
    spec = copy.deepcopy(draw(st.sampled_from([STANDARD, DISTILL])))
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.integers(0, 5)) == 0:
            target, pools = spec, TOP_VALUES
        else:
            layers = spec.get("layers")
            if not (isinstance(layers, list) and layers):
                continue
            target, pools = layers[draw(st.integers(0, len(layers) - 1))], FIELD_VALUES
        key = draw(st.sampled_from(sorted(pools)))
        value = draw(st.sampled_from(pools[key] + [DELETE]))
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value
    return spec


def _convs(module):
    """Conv2d modules of a block in order, the squeeze-excitation's own excluded."""
    se = {id(c) for m in module.modules() if type(m).__name__ == "SqueezeExcite" for c in m.modules()}
    return [m for m in module.modules() if isinstance(m, nn.Conv2d) and id(m) not in se]


def _acts(module):
    se = {id(c) for m in module.modules() if type(m).__name__ == "SqueezeExcite" for c in m.modules()}
    return {type(m) for m in module.modules() if isinstance(m, (nn.ReLU, nn.SiLU)) and id(m) not in se}


def check_structure(model, spec):
    """The built model is the spec: widths, kernels, strides, SE, activations, head, classes."""
    family_default = "swish" if spec.family == "standard" else "relu"
    stem_convs = _convs(model.stem)
    assert len(stem_convs) == (3 if spec.stem.kind == "head_large" else 1)
    assert all(c.kernel_size == (spec.stem.kernel_size,) * 2 == (3, 3) for c in stem_convs)
    assert stem_convs[0].stride == (spec.stem.stride,) * 2 == (2, 2)
    assert stem_convs[0].in_channels == 3 and stem_convs[-1].out_channels == spec.stem.out_channels
    assert _acts(model.stem) == {nn.ReLU if (spec.stem.act or family_default) == "relu" else nn.SiLU}
    assert len(model.stages) == len(spec.stages())
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == len(spec.body)
    for block, layer in zip(blocks, spec.body):
        convs = _convs(block)
        assert convs[0].in_channels == layer.in_channels and convs[-1].out_channels == layer.out_channels
        assert max(c.kernel_size[0] for c in convs) == layer.kernel_size
        assert max(c.stride[0] for c in convs) == layer.stride
        has_se = any(type(m).__name__ == "SqueezeExcite" for m in block.modules())
        assert has_se == (layer.se is True)
        assert _acts(block) == {nn.ReLU if (layer.act or "relu") == "relu" else nn.SiLU}
    head = _convs(model.conv_head)
    assert len(head) == 1 and head[0].kernel_size == (1, 1) and head[0].out_channels == spec.tail.out_channels
    assert _acts(model.conv_head) == {nn.ReLU} and spec.tail.act in (None, "relu")  # the tail is always ReLU
    if spec.tail.pre_logits_channels is None:
        assert model.conv_pre_logits is None
    else:
        assert model.conv_pre_logits.out_channels == spec.tail.pre_logits_channels
    if spec.num_classes:
        assert model.classifier.out_features == spec.num_classes
    else:
        assert isinstance(model.classifier, nn.Identity)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, spec.resolution, spec.resolution))
    assert out.shape == (1, spec.num_classes or model.head_hidden_size)
    assert torch.isfinite(out).all()


def test_the_unmutated_specs_build():
    for d in (STANDARD, DISTILL):
        spec = parse_spec(d)
        check_structure(gpunet.get_model(spec), spec)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_specs_build_as_written_or_raise_spec_error(data):
    try:
        spec = parse_spec(data, source="mutant.json")
    except SpecError as e:
        assert "mutant.json" in str(e)
        return
    if spec.resolution > 64 or max(max(l.in_channels, l.out_channels) for l in spec.layers) > 64:
        return  # (mutations only draw small values; keep the forward pass cheap regardless)
    assert all(not (isinstance(v, float) and math.isnan(v)) for l in spec.layers for v in vars(l).values())
    check_structure(gpunet.get_model(spec), spec)
