"""What the check measures around drylocal's own calls, never inside them.

- ``DeviceProbe``: the device's memory (CUDA: torch's allocator and the driver's free figure; the CPU: the
  process's resident set) and peaks over a stretch of work. CTranslate2 allocates outside torch, so on CUDA the
  peak is also sampled from the driver every few milliseconds.
- ``FiniteWatch``: forward hooks on a loaded model's torch modules that note any NaN or Inf they output.
- ``LoadRecorder``: the worker's ``load_fn`` seam (engine/worker.py): it calls the registry's own load, and
  notes what the load took (time, device bytes, host bytes) and attaches the watch. It keeps no reference to
  the model, so drylocal's unload is what frees it.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = (
    "DeviceProbe", "FiniteWatch", "ForwardTimer", "LoadRecorder", "LoadRecord", "finite_numbers", "handle_bytes",
    "torch_modules",
)


class DeviceProbe:
    def __init__(self, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")
        self._sampling: threading.Event | None = None
        self._sampled = 0
        if self.cuda:
            import torch

            torch.cuda.init()
            torch.empty(1, device=device)  # the context exists before the baseline is read
            self.sync()
            self.total = torch.cuda.mem_get_info(self._index)[1]
        self.baseline_free = self.free()
        self.baseline_reserved = self._reserved()

    @property
    def _index(self) -> int:
        return int(self.device.split(":", 1)[1]) if ":" in self.device else 0

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self._index)

    def free(self) -> int:
        """Free device memory (CUDA, the driver's figure); on the CPU, minus the resident set."""
        if self.cuda:
            import torch

            self.sync()
            return torch.cuda.mem_get_info(self._index)[0]
        return -_rss_bytes()

    def allocated(self) -> int:
        if not self.cuda:
            return _rss_bytes()
        import torch

        self.sync()
        return torch.cuda.memory_allocated(self._index)

    def _reserved(self) -> int:
        if not self.cuda:
            return 0
        import torch

        return torch.cuda.memory_reserved(self._index)

    def start_peak(self) -> None:
        """From here, the peak is what :meth:`stop_peak` reports."""
        if not self.cuda:
            _reset_peak_rss()
            return
        import torch

        self.sync()
        torch.cuda.reset_peak_memory_stats(self._index)
        self._sampled = self.total - self.free()
        self._sampling = threading.Event()
        threading.Thread(target=self._sample, args=(self._sampling,), daemon=True).start()

    def _sample(self, stop: threading.Event) -> None:
        import torch

        while not stop.wait(0.005):
            self._sampled = max(self._sampled, self.total - torch.cuda.mem_get_info(self._index)[0])

    def stop_peak(self) -> dict[str, int]:
        """``peak``: the most the device held above the baseline (CUDA: torch's reserved memory or the driver's
        sampled use, whichever is larger); ``allocated``: torch's peak allocation (CPU: the peak resident set)."""
        if not self.cuda:
            return {"peak": _peak_rss_bytes(), "allocated": _peak_rss_bytes()}
        import torch

        self.sync()
        if self._sampling is not None:
            self._sampling.set()
        reserved = torch.cuda.max_memory_reserved(self._index) - self.baseline_reserved
        driver = self._sampled - (self.total - self.baseline_free)
        return {"peak": max(reserved, driver), "allocated": torch.cuda.max_memory_allocated(self._index)}

    def release_stand_in_cache(self) -> None:
        """The stand-in generates weights on the GPU before they land in host RAM; what torch's allocator keeps
        of that is no part of the model (a file read would not leave it), so it goes back."""
        if self.cuda:
            import torch

            torch.cuda.empty_cache()


def _rss_bytes() -> int:
    return _status_kb("VmRSS") * 1024


def _peak_rss_bytes() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    try:  # Linux: writing 5 resets the peak resident set to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


# ------------------------------------------------------------------ finiteness


def torch_modules(handle: Any) -> dict[str, Any]:
    """The torch modules a loaded model's handle is made of: a diffusers pipeline's components, the handle itself
    where it is a module (sentence-transformers, RRDBNet, BEN2), else the modules among its attributes and theirs
    (the project's TTS voices, the VLM reader); none for CTranslate2."""
    import torch

    if isinstance(handle, torch.nn.Module):
        return {"model": handle}
    components = getattr(handle, "components", None)
    if isinstance(components, dict):
        return {name: c for name, c in components.items() if isinstance(c, torch.nn.Module)}
    found: dict[str, Any] = {}
    seen: set[int] = set()
    frontier = [("", handle)]
    for _ in range(3):  # the handle, a bundle it holds, a bundle in that
        deeper = []
        for prefix, owner in frontier:
            for name, value in (vars(owner).items() if hasattr(owner, "__dict__") else ()):
                if id(value) in seen:
                    continue
                seen.add(id(value))
                if isinstance(value, torch.nn.Module):
                    found[prefix + name] = value
                elif hasattr(value, "__dict__") and not isinstance(value, type) and type(value).__module__.startswith("model_registry"):
                    deeper.append((f"{prefix}{name}.", value))
        frontier = deeper
    return found


def _tensors(value: Any):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


class FiniteWatch:
    """Notes every module output that holds a NaN or an Inf (one device sync per watched forward)."""

    def __init__(self) -> None:
        self.calls = 0
        self.bad: list[str] = []

    def attach(self, handle: Any) -> list[str]:
        import torch

        # The project's own bundles (TTS voices) drive their networks through methods, not ``forward``: their
        # networks' children are watched too.
        bundle = not isinstance(handle, torch.nn.Module) and not isinstance(getattr(handle, "components", None), dict)
        watched = []
        for name, module in torch_modules(handle).items():
            # A VAE decodes through ``decode``, not ``forward``: its decoder's forward is what runs.
            children = module.named_children() if bundle else [("decoder", getattr(module, "decoder", None))]
            for child_name, child in [("", module), *children]:
                if isinstance(child, torch.nn.Module):
                    label = f"{name}.{child_name}" if child_name else name
                    child.register_forward_hook(self._hook(label))
                    watched.append(label)
        return watched

    def _hook(self, name: str) -> Callable:
        import torch

        def check(module, inputs, output) -> None:
            self.calls += 1
            for tensor in _tensors(output):
                if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
                    self.bad.append(name)
                    return

        return check


class ForwardTimer:
    """Seconds a module spends in ``forward`` (device-synchronised), for extrapolating a cut component."""

    def __init__(self, probe: DeviceProbe) -> None:
        self.probe = probe
        self.seconds = 0.0
        self._started = 0.0

    def attach(self, module) -> None:
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, module, inputs) -> None:
        self.probe.sync()
        self._started = time.perf_counter()

    def _stop(self, module, inputs, output) -> None:
        self.probe.sync()
        self.seconds += time.perf_counter() - self._started


# ------------------------------------------------------------------ loads


def _tensor_bytes(tensor) -> int:
    nbytes = tensor.numel() * tensor.element_size()
    state = getattr(tensor, "quant_state", None)  # bitsandbytes 4-bit: the block scales live beside the data
    if state is not None:
        for part in (getattr(state, "absmax", None), getattr(state, "code", None)):
            nbytes += part.numel() * part.element_size() if part is not None else 0
    scales = getattr(tensor, "SCB", None)  # bitsandbytes 8-bit: one scale a row
    if scales is not None:
        nbytes += scales.numel() * scales.element_size()
    return nbytes


def handle_bytes(handle: Any) -> int:
    """Weight bytes of a loaded model's torch modules, wherever they sit (GPU or host RAM), tied tensors once."""
    seen: set[int] = set()
    total = 0
    for module in torch_modules(handle).values():
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += _tensor_bytes(tensor)
    return total


@dataclass
class LoadRecord:
    seconds: float = 0.0
    device_bytes: int = 0
    """What the load left on the device: torch's allocation, or for CTranslate2 the driver's free memory."""
    host_bytes: int = 0
    """The torch modules' weights wherever they sit (offloaded ones live in host RAM)."""
    drylocal_bytes: int = 0
    """What drylocal's loader measured itself (LoadedModel.memory_bytes, what the worker plans with)."""
    precision: str = ""
    placement: dict[str, Any] = field(default_factory=dict)
    weights_path: str = ""
    watched: list[str] = field(default_factory=list)
    component_bytes: dict[str, int] = field(default_factory=dict)


class LoadRecorder:
    """The worker's load_fn: the registry's own load, observed."""

    def __init__(self, load: Callable, probe: DeviceProbe, watch: FiniteWatch, timed: tuple[str, ...] = ()) -> None:
        self._load = load
        self.probe = probe
        self.watch = watch
        self.timers = {name: ForwardTimer(probe) for name in timed}
        """Forward time of the named components (a cut transformer), across every load."""
        self.records: list[LoadRecord] = []
        self._last: Callable[[], Any] = lambda: None

    def last_loaded(self):
        """The model of the last load while drylocal still holds it (a weak reference: after drylocal's unload,
        None)."""
        return self._last()

    def __call__(self, spec, device: str, placement):
        allocated, free = self.probe.allocated(), self.probe.free()
        started = time.perf_counter()
        loaded = self._load(spec, device, placement)
        self.probe.sync()
        record = LoadRecord(seconds=time.perf_counter() - started)
        self.probe.release_stand_in_cache()
        modules = torch_modules(loaded.handle)
        if modules or not self.probe.cuda:
            record.device_bytes = max(0, self.probe.allocated() - allocated) if self.probe.cuda else 0
        else:  # CTranslate2 allocates outside torch: the driver's free memory is what tells
            record.device_bytes = max(0, free - self.probe.free())
        record.host_bytes = handle_bytes(loaded.handle)
        record.drylocal_bytes = int(loaded.memory_bytes)
        record.precision = str(loaded.precision)
        record.placement = placement.as_dict() if placement is not None else {}
        record.weights_path = str(loaded.extras.get("weights_path", ""))
        record.watched = self.watch.attach(loaded.handle)
        record.component_bytes = {name: handle_bytes(module) for name, module in modules.items()}
        for name, timer in self.timers.items():
            if name in modules:
                timer.attach(modules[name])
        self.records.append(record)
        self._last = weakref.ref(loaded)
        return loaded


def finite_numbers(value: Any) -> bool:
    """Every number in a decoded JSON value is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_numbers(v) for v in value)
    return True
