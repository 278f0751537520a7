"""Shared argument checks: one wording, the argument named, the CLI naming the flag instead."""
from __future__ import annotations

import numpy as np
import pytest

from gpunet._checks import (ArgumentError, int_at_least, non_negative, non_negative_int, one_of, positive,
                            positive_int)
from gpunet.errors import GPUNetError


def test_checks_return_the_value_and_refuse_what_does_not_fit():
    assert positive_int(np.int64(3), "n") == 3 and type(positive_int(np.int64(3), "n")) is int
    assert non_negative_int(0, "warmup") == 0 and int_at_least(8, "max_batch", 4) == 8
    assert positive(0.5, "lr") == 0.5 and non_negative(0, "eval_seconds") == 0.0
    assert one_of("ray", ("ray", "local"), "engine") == "ray"
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(ArgumentError, match=f"n must be a positive integer, got {bad!r}"):
            positive_int(bad, "n")
    with pytest.raises(ValueError, match="max_batch must be an integer >= 4, got 2"):
        int_at_least(2, "max_batch", 4)
    for bad in (0, -0.1, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="lr must be a positive number"):
            positive(bad, "lr")
    with pytest.raises(ValueError, match="engine must be one of ray, local, got 'k8s'") as info:
        one_of("k8s", ("ray", "local"), "engine")
    assert info.value.argument == "engine" and isinstance(info.value, GPUNetError)


def test_a_callers_error_type_is_kept_and_tagged():
    class MyError(GPUNetError, ValueError):
        pass

    with pytest.raises(MyError) as info:
        positive_int(0, "workers", MyError)
    assert info.value.argument == "workers" and str(info.value) == "workers must be a positive integer, got 0"


def test_the_cli_names_the_flag_where_the_library_names_the_argument(tmp_path, capsys):
    from gpunet.cli import main

    assert main(["sample", "--space", "small", "--n", "8", "--groups", "0", "--lut", str(tmp_path / "none.lut"),
                 "--out", str(tmp_path / "p.npz")]) == 1  # the table is missing: said before groups matter
    assert "does not exist" in capsys.readouterr().err
    assert main(["sample", "--space", "small", "--n", "8", "--out", str(tmp_path / "p.npz"), "--groups", "0"]) == 2
    assert "gpunet sample: error: --groups must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["search", "run", "--pool", str(tmp_path / "missing.npz"), "--evaluator", "synthetic",
                 "--algorithm", "random", "--budget", "1", "--out", str(tmp_path / "s"), "--engine", "local"]) == 1
    assert "missing.npz" in capsys.readouterr().err
