"""Search space (Table 1), the 41-integer encoding (Table 2), Sobol sampling and stratification."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gpunet
from gpunet.search import SearchSpace, SearchSpaceError, stratify, stratum_labels

SPACE = SearchSpace()


def vectors_of(space):
    return st.tuples(*[st.sampled_from(g.choices) for g in space.genes]).map(lambda t: np.array(t, dtype=np.int64))


def test_table2_layout():
    names = [g.name for g in SPACE.genes]
    assert len(names) == 41
    assert names[:5] == ["resolution", "stage0.filters", "stage1.kernel", "stage1.act", "stage1.layers"]
    for s in range(2, 8):
        i = 5 + 6 * (s - 2)
        assert names[i:i + 6] == [f"stage{s}.{f}" for f in ("filters", "kernel", "expansion", "se", "act", "layers")]
    g = {x.name: x.choices for x in SPACE.genes}
    assert g["resolution"] == tuple(range(224, 513, 32))
    assert g["stage0.filters"] == (24, 32)
    assert g["stage2.filters"] == (32, 48, 64, 80) and g["stage3.filters"] == (48, 64, 80, 96, 112)
    assert g["stage6.filters"] == tuple(range(128, 417, 32)) and g["stage7.filters"] == tuple(range(256, 833, 64))
    assert g["stage4.layers"] == tuple(range(1, 11)) and g["stage5.layers"][0] == 0 and g["stage7.layers"][0] == 0
    assert g["stage2.expansion"] == (2, 3, 4, 5, 6)
    assert SPACE.tail_channels == 1792


def test_sample_is_seeded_valid_and_covers_every_choice():
    a = SPACE.sample(4096, seed=3)
    assert a.shape == (4096, 41) and a.dtype == np.int64
    assert np.array_equal(a, SPACE.sample(4096, seed=3))
    assert not np.array_equal(a, SPACE.sample(4096, seed=4))
    assert SPACE.is_valid(a).all()
    for g in SPACE.genes:
        values, counts = np.unique(a[:, g.index], return_counts=True)
        # evenly spread (genes of stages 5 and 7 other than #layers are canonicalised when empty)
        if not (g.stage in (5, 7) and g.field != "layers"):
            assert set(values) == set(g.choices), g.name
            assert counts.min() / counts.max() > 0.8, (g.name, counts)
    # chunked generation continues the same sequence
    assert np.array_equal(np.concatenate(list(SPACE.iter_sample(1000, seed=3, chunk=256))), a[:1000])


def test_sampled_vectors_round_trip_exactly():
    vecs = SPACE.sample(300, seed=11)
    for v in vecs:
        assert np.array_equal(SPACE.encode(SPACE.decode(v)), v)


@settings(max_examples=200, deadline=None)
@given(vectors_of(SPACE))
def test_round_trip_property(v):
    spec = SPACE.decode(v)
    enc = SPACE.encode(spec)
    assert np.array_equal(enc, SPACE.canonicalize(v))
    assert SPACE.decode(enc) == spec
    # structure rules of Table 1 / section 3.1
    assert spec.family == "standard" and spec.resolution == v[0]
    assert spec.stem.kind == "head" and spec.stem.out_channels == v[1] and spec.tail.out_channels == 1792
    for stage_id, idx in spec.stages():
        layers = [spec.layers[i] for i in idx]
        kind = {1: "conv", 2: "fused_irb", 3: "fused_irb"}.get(stage_id, "irb")
        assert all(l.kind == kind for l in layers)
        expected_stride = 2 if stage_id in (2, 3, 4, 6) else 1
        assert layers[0].stride == expected_stride and all(l.stride == 1 for l in layers[1:])
        assert len({(l.out_channels, l.kernel_size, l.expansion, l.se, l.act) for l in layers}) == 1
        if stage_id == 1:
            assert all(l.out_channels == spec.stem.out_channels for l in layers)


@settings(max_examples=100, deadline=None)
@given(vectors_of(SPACE))
def test_vectorised_geometry_matches_spec(v):
    spec = SPACE.decode(v)
    sizes = SPACE.stage_input_sizes(v[None])
    assert sizes[-1][0] == spec.spatial_sizes()[-1]


def test_decoded_networks_build_and_run_at_small_resolution():
    pool = SPACE.sample(256, seed=5)
    depth = pool[:, [g.index for g in SPACE.genes if g.field == "layers"]].sum(axis=1)
    vecs = pool[np.argsort(depth)[:2]].copy()  # the two shallowest keep the test quick
    vecs[0, SPACE.gene_index(5, "layers")] = 0  # stage 5 empty
    vecs[0, SPACE.gene_index(7, "layers")] = 0  # stage 7 empty
    for v in vecs:
        spec = SPACE.decode(v)
        model = gpunet.build_model(spec).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 64))
        assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert {l.stage for l in SPACE.decode(vecs[0]).body} == {1, 2, 3, 4, 6}


def test_invalid_genes_give_clear_errors():
    v = SPACE.sample(5, seed=0)
    v[3, SPACE.gene_index(4, "filters")] = 100
    with pytest.raises(SearchSpaceError, match=r"vector 3: gene 17 \(stage4.filters\) is 100, expected one of"):
        SPACE.check(v)
    assert SPACE.is_valid(v).tolist() == [True, True, True, False, True]
    bad = SPACE.invalid_mask(v)
    assert bad.sum() == 1 and bad[3, 17]
    with pytest.raises(SearchSpaceError, match="length 41"):
        SPACE.check(np.zeros((2, 40), dtype=int))
    with pytest.raises(SearchSpaceError, match="integers"):
        SPACE.check(np.full((1, 41), 0.5))
    v2 = SPACE.sample(1)[0]
    v2[SPACE.gene_index(1, "act")] = 2
    with pytest.raises(SearchSpaceError, match=r"stage1.act.*relu=0"):
        SPACE.decode(v2)


def test_encode_rejects_specs_outside_the_space():
    hub = gpunet.load_spec("gpunet-1")  # tail 1280, not Table 1's 1792
    with pytest.raises(SearchSpaceError, match="tail width 1280"):
        SPACE.encode(hub)
    spec = SPACE.decode(SPACE.sample(1, seed=2)[0])
    layers = list(spec.layers)
    i = next(i for i, l in enumerate(layers) if l.stage == 4)
    layers[i] = layers[i].__class__(**{**layers[i].__dict__, "expansion": 2.5})
    with pytest.raises(SearchSpaceError, match="stage 4"):
        SPACE.encode(spec.replace(layers=tuple(layers)))


def test_space_as_data_json_round_trip_and_custom_space(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(SPACE.to_json())
    again = SearchSpace.load(str(path))
    assert again == SPACE or [g.choices for g in again.genes] == [g.choices for g in SPACE.genes]
    d = json.loads(SPACE.to_json())
    d["resolutions"] = [64, 96]
    d["stages"][4]["filters"] = [40, 48]
    custom = SearchSpace.from_dict(d)
    v = custom.sample(50, seed=1)
    assert set(v[:, 0]) == {64, 96} and set(v[:, custom.gene_index(4, "filters")]) <= {40, 48}
    assert all(np.array_equal(custom.encode(custom.decode(x)), x) for x in v[:10])
    d["stages"][3]["act"] = ["gelu"]
    with pytest.raises(SearchSpaceError, match="stage 3 field 'act'"):
        SearchSpace.from_dict(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(SearchSpaceError, match="not valid JSON"):
        SearchSpace.load(str(bad))


def test_stratify_partitions_by_latency():
    v = np.arange(10)[:, None].repeat(41, axis=1)
    t = np.array([0.1, 0.5, 0.99, 1.0, 1.5, 2.0, 2.5, np.nan, 3.5, 0.7])
    groups = stratify(v, t, [0.5, 1.0, 2.0, 3.0])
    assert [len(g) for g in groups] == [3, 2, 2]
    assert sorted(groups[0].indices.tolist()) == [1, 2, 9]
    assert np.array_equal(groups[1].vectors[:, 0], [3, 4]) and groups[2].lo_ms == 2.0 and groups[2].hi_ms == 3.0
    assert np.all((groups[1].latencies_ms >= 1.0) & (groups[1].latencies_ms < 2.0))
    assert stratum_labels(t, [0.5, 1.0, 2.0, 3.0]).tolist() == [-1, 0, 0, 1, 1, 2, 2, -1, -1, 0]
    with pytest.raises(ValueError, match="strictly increasing"):
        stratify(v, t, [1.0, 0.5])
    with pytest.raises(ValueError, match="differ in length"):
        stratify(v[:3], t, [0, 1])


@pytest.mark.parametrize("wide", [False, True])
def test_invalid_mask_equals_a_test_per_choice(wide):
    """The flat value table gives what ``np.isin`` per gene gives, for values below, between, above
    and far outside the choices; a gene spanning more than the table holds is tested per choice."""
    space = dataclasses.replace(SearchSpace.small(), resolutions=(64, 96, 70000), name="wide") if wide else SPACE
    rng = np.random.default_rng(3)
    v = space.sample(20_000, seed=1)
    hit = rng.random(v.shape) < 0.05
    v[hit] = rng.choice([-(1 << 62), -1, 0, 1, 7, 33, 69999, 70001, 1 << 62], size=hit.sum())
    want = np.stack([~np.isin(v[:, g.index], g.choices) for g in space.genes], axis=1)
    for arr in (v, np.asfortranarray(v)):
        np.testing.assert_array_equal(space.invalid_mask(arr), want)
    assert want.any() and not want.all()
