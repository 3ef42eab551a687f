"""Compiled evaluation: a sampler's whole inference path as one ``torch.compile``'d function.

At inference DAS computes features, a base score and a top-k: about thirty small ops, each a full
pass over the volume or a kernel launch. :func:`run_compiled` runs such a pure tensor function
compiled by ``torch.compile`` (inductor), which fuses them into a few kernels, and falls back to
eager when compiling is not possible here.

Contract:

* At most two compilations per ``key`` (the caller's: frame shape, k, options): one for batch 1
  (static) and one for every other batch size (symbolic, ``mark_dynamic``), so batches of 2, 16 or
  64 volumes of one frame shape share one compiled function. The symbolic one knows a size hint:
  inductor then parallelises over the batch rather than inside the small reductions over T, which
  an unhinted (``mark_unbacked``) batch forces (the compute chapter measures the sampler's cost).
* Compiled on call number :data:`COMPILE_AFTER` + 1 of a key; the calls before return ``None``
  (the caller runs eagerly). Compiling costs seconds: a shape evaluated once or twice (a test, a
  quick look) never pays it, while an evaluation loop compiles on its third batch.
* ``torch.compile`` keeps its cache per code object, with a small limit on the number of entries
  (``recompile_limit``); each key gets a code object of its own (:func:`compile_with_own_cache`),
  so many shapes in one process never exhaust it.
* Runs under ``torch.no_grad()``: the compiled path serves selections that need no gradient.
* :func:`eager_required`: inside an enclosing trace (``torch.compile`` of the whole model,
  ``torch.jit.trace``) or under a dispatch mode (``FlopCounterMode``, fake tensors) the caller must
  run its eager code, so that the enclosing compiler traces plain ops and the FLOP counter sees the
  operators it has formulas for.
* Devices: CPU (needs a C++ compiler) and CUDA (needs Triton). When compiling fails (no compiler, no
  Triton, an inductor error), :func:`run_compiled` returns ``None`` and the caller runs eagerly; the
  device type is then marked unavailable for the rest of the process, and one
  :class:`CompileUnavailableWarning` per process says so.
"""

from __future__ import annotations

import logging
import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")  # where the compiled path is tried
COMPILE_AFTER = 2  # eager calls of a key before it is compiled

_calls: dict[Hashable, int] = {}  # (function, key) -> eager calls so far, up to COMPILE_AFTER
_compiled: dict[Hashable, Callable[..., Any]] = {}  # (function, key) -> its compiled form
_unavailable: dict[str, str] = {}  # device type -> why compiling failed there
_warned = False


class CompileUnavailableWarning(RuntimeWarning):
    """``torch.compile`` does not work on this device: the sampler evaluates eagerly instead (the same
    picks, more slowly). Issued once per process."""


def eager_required() -> bool:
    """Whether the caller must run its eager code: inside ``torch.compile``'s or ``torch.jit``'s
    tracing, or under a dispatch mode such as ``FlopCounterMode``."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._len_torch_dispatch_stack() > 0


def compile_available(device: torch.device) -> bool:
    """Whether the compiled path is tried for tensors on ``device``: CPU, or CUDA with Triton, and no
    compilation has failed on that device type in this process."""
    if device.type not in DEVICE_TYPES or device.type in _unavailable:
        return False
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            mark_unavailable(device.type, "Triton is not installed")
            return False
    return True


def mark_unavailable(device_type: str, reason: str) -> None:
    """Stop compiling on ``device_type`` for this process; the first time, warn once."""
    global _warned
    _unavailable.setdefault(device_type, reason)
    if not _warned:
        _warned = True
        warnings.warn(
            f"torch.compile is unavailable on {device_type} ({reason}); DAS evaluates eagerly instead "
            "(the same picks, slower). Pass fused=False to the sampler to skip the attempt.",
            CompileUnavailableWarning,
            stacklevel=3,
        )


def compile_with_own_cache(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """``torch.compile(fn, **options)`` on a copy of ``fn`` with a code object of its own, hence a
    compilation cache of its own: compiling the same function for many shapes or models never
    exhausts one shared cache (whose overflow silently runs the function uncompiled)."""
    # Compiling on a machine without CUDA makes torch log a CUDA_HOME warning on stderr: noise here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return torch.compile(copy, **options)


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    # dynamic=False: frame shapes and k stay specialised (faster kernels); the batch is made symbolic
    # by run_compiled.
    return compile_with_own_cache(fn, dynamic=False)


def run_compiled(fn: Callable[..., Any], key: Hashable, x: Tensor, *args: Any) -> Any | None:
    """``fn(x, *args)`` compiled per ``key``, with ``x``'s first dim (the batch) symbolic unless it is
    1, under ``torch.no_grad()``. ``None`` means: run your eager code instead, because the key has not been
    called :data:`COMPILE_AFTER` times yet, or compiling or running it failed (see the module docstring).

    ``fn`` must be a pure function of its arguments (tensors, modules whose parameters it reads,
    Python constants that ``key`` determines).
    """
    compiled = _compiled.get((fn, key))
    if compiled is None:
        calls = _calls.get((fn, key), 0)
        if calls < COMPILE_AFTER:
            _calls[(fn, key)] = calls + 1
            return None
        compiled = _compiled[(fn, key)] = _compile(fn)
    x = x.detach()  # a new tensor object: the batch mark below stays off the caller's tensor
    if x.shape[0] > 1:
        torch._dynamo.mark_dynamic(x, 0)
    try:
        with torch.no_grad():
            return compiled(x, *args)
    except Exception as error:  # noqa: BLE001 - any compiler failure means: run eagerly
        message = str(error).strip().splitlines()
        mark_unavailable(x.device.type, f"{type(error).__name__}: {message[0] if message else ''}"[:300])
        return None
