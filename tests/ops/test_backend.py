"""One backend picker, one set of rules, for every op that has a fast kernel."""

from __future__ import annotations

import importlib

import pytest
import torch

from restorekit.errors import BackendError, UsageError
from restorekit.ops import _atom_cpu, _malleable_cpu, _tv_cpu
from restorekit.ops._backend import Backends, pick_backend


def _backends(module: str, name: str = "BACKENDS") -> Backends:
    return getattr(importlib.import_module(f"restorekit.ops.{module}"), name)  # the package re-exports the functions


OPS = {
    "malleable_conv": (_backends("malleable_conv"), _malleable_cpu),
    "atom_conv": (_backends("atom_conv"), _atom_cpu),
    "tv_conv": (_backends("tv_conv"), _tv_cpu),
    "prelu": (_backends("prelu"), _malleable_cpu),
    "upsample_concat": (_backends("upsample"), _malleable_cpu),
    "inverted_bottleneck": (_backends("bottleneck", "BOTTLENECK_BACKENDS"), _malleable_cpu),
    "expand_prelu_pool": (_backends("bottleneck", "POOL_BACKENDS"), _malleable_cpu),
}


@pytest.fixture(params=sorted(OPS))
def op(request, monkeypatch):
    backends, cpu = OPS[request.param]
    if backends.env is not None:
        monkeypatch.delenv(backends.env, raising=False)
    assert backends.op == request.param
    return backends, cpu


def test_auto_takes_the_cpu_kernel_when_it_runs_and_the_reference_otherwise(op, monkeypatch):
    backends, cpu = op
    x = torch.zeros(1, 2, 4, 4)
    assert pick_backend(backends, "auto", x) == ("cpu" if cpu.available() else "reference")
    assert pick_backend(backends, "auto", x.to(torch.int32)) == "reference"
    assert pick_backend(backends, "auto", torch.empty(1, 2, 4, 4, device="meta")) == "reference"
    monkeypatch.setattr(cpu, "available", lambda: False)
    assert pick_backend(backends, "auto", x) == "reference"


def test_a_forced_backend_that_cannot_run_is_an_error_never_a_fallback(op, monkeypatch):
    backends, cpu = op
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(BackendError, match=f"{backends.op} backend 'cpu': expected CPU tensors"):
        pick_backend(backends, "cpu", torch.empty(1, 2, 4, 4, device="meta"))
    with pytest.raises(BackendError, match="expected a dtype in"):
        pick_backend(backends, "cpu", x.to(torch.int32))
    monkeypatch.setattr(cpu, "available", lambda: False)
    compiler = r"expected a C\+\+ compiler \(g\+\+ or clang\+\+, or \$CXX\), got 'none found'"
    with pytest.raises(BackendError, match=compiler):
        pick_backend(backends, "cpu", x)
    assert pick_backend(backends, "reference", x) == "reference"
    assert issubclass(BackendError, UsageError)  # a forced backend is the caller's choice: exit code 2


def test_a_kernel_without_backward_is_refused_where_a_gradient_is_needed(op, monkeypatch):
    backends, cpu = op
    monkeypatch.setattr(cpu, "available", lambda: True)
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    if backends.cpu_backward:
        assert pick_backend(backends, "cpu", x) == "cpu"
        return
    assert pick_backend(backends, "auto", x) == "reference"
    with pytest.raises(BackendError, match="no gradient to compute"):
        pick_backend(backends, "cpu", x)
    with torch.no_grad():
        assert pick_backend(backends, "cpu", x) == "cpu"


def test_the_choices_are_what_the_op_offers(op):
    backends, _ = op
    expected = ("auto", "reference", "cpu", "triton") if backends.triton is not None else ("auto", "reference", "cpu")
    assert backends.choices == expected
    with pytest.raises(UsageError, match=f"{backends.op} backend.*valid: {', '.join(expected)}"):
        pick_backend(backends, "fastest", torch.zeros(1, 2, 4, 4))


def test_the_environment_names_a_backend_only_for_auto_and_is_held_to_the_same_rules(monkeypatch):
    backends = Backends("op", cpu=_malleable_cpu, env="RESTOREKIT_TEST_BACKEND")
    x = torch.zeros(1, 2, 4, 4)
    monkeypatch.setenv("RESTOREKIT_TEST_BACKEND", "reference")
    assert pick_backend(backends, "auto", x) == "reference"
    monkeypatch.setattr(_malleable_cpu, "available", lambda: True)
    assert pick_backend(backends, "cpu", x) == "cpu"  # an argument beats the variable
    monkeypatch.setenv("RESTOREKIT_TEST_BACKEND", "cpu")
    monkeypatch.setattr(_malleable_cpu, "available", lambda: False)
    with pytest.raises(BackendError, match=r"op backend 'cpu' \(\$RESTOREKIT_TEST_BACKEND\): expected a C\+\+"):
        pick_backend(backends, "auto", x)
    monkeypatch.setenv("RESTOREKIT_TEST_BACKEND", "triton")
    with pytest.raises(UsageError, match=r"\$RESTOREKIT_TEST_BACKEND.*valid: auto, reference, cpu"):
        pick_backend(backends, "auto", x)


def test_triton_needs_triton_cuda_tensors_or_the_interpreter(monkeypatch):
    class Absent:
        DTYPES = (torch.float32,)

        @staticmethod
        def available() -> bool:
            return False

    class Present(Absent):
        @staticmethod
        def available() -> bool:
            return True

    x = torch.zeros(1, 2, 4, 4)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="expected Triton installed"):
        pick_backend(Backends("op", triton=Absent()), "triton", x)
    with pytest.raises(BackendError, match=r"expected CUDA tensors \(or TRITON_INTERPRET=1\), got 'cpu'"):
        pick_backend(Backends("op", triton=Present()), "triton", x)
    assert pick_backend(Backends("op", triton=Present()), "auto", x) == "reference"  # auto: CUDA tensors only
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert pick_backend(Backends("op", triton=Present()), "triton", x) == "triton"
    with pytest.raises(BackendError, match="expected a dtype in"):
        pick_backend(Backends("op", triton=Present()), "triton", x.double())
