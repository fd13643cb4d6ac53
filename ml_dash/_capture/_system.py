"""System metrics: a low-rate sampler of process, machine and GPU load, logged under ``system/``.

One thread of ours (``ml-dash-system:<prefix>``) samples every ``Config.system_interval`` seconds
(10 by default; a sample costs ~0.3 ms) and once more when the run ends, so even a short run has a
row. Rates and CPU percentages cover the time since the previous sample.

======================  ==========================================================================
metric                  fields
======================  ==========================================================================
``system/process``      ``cpu_percent`` (100 = one core), ``rss_mib``, ``threads``
``system/host``         ``cpu_percent`` (all cores, 0-100), ``memory_used_mib``,
                        ``memory_available_mib``, ``memory_percent``, ``disk_read_mib_s``,
                        ``disk_write_mib_s``, ``net_sent_mib_s``, ``net_recv_mib_s``
``system/gpu/<i>``      ``utilization_percent``, ``memory_used_mib``, ``memory_total_mib``,
                        ``power_w``, ``temperature_c`` (NVML device index ``i``; a field the
                        device does not report is left out)
======================  ==========================================================================

psutil is needed (``pip install 'ml-dash[system]'``); without it the capture says so once and does
nothing. GPUs are sampled when NVIDIA's management library answers (the ``nvidia-ml-py`` package,
imported as ``pynvml``, and a driver); otherwise there are no ``system/gpu`` rows.
"""

from __future__ import annotations

import threading
import time

from .._fork import start_without_signals
from .._report import warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from .._experiment import Experiment

__all__ = ["SystemSampler", "gpu_handles"]

_MIB = 1024.0 * 1024.0


class SystemSampler:
    """Samples until :meth:`stop`; rows go through ``exp.metrics("system/...").log``."""

    def __init__(self, exp: "Experiment", psutil: Any):
        self._exp = exp
        self._psutil = psutil
        self._interval = exp.config.system_interval
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._process = exp.metrics("system/process")
        self._host = exp.metrics("system/host")
        self._gpus: List[tuple[Any, ...]] = []
        self._nvml: Any = None
        self._last: Dict[str, Any] = {}
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name=f"ml-dash-system:{exp.prefix}", daemon=True)

    @classmethod
    def start(cls, exp: "Experiment") -> "Optional[SystemSampler]":
        try:
            import psutil
        except ImportError:
            warn(
                f"ML_DASH_CAPTURE_SYSTEM is on but psutil is not installed (pip install 'ml-dash[system]'): "
                f"no system metrics for {exp.prefix}"
            )
            return None
        sampler = cls(exp, psutil)
        start_without_signals(sampler._thread)
        return sampler

    def stop(self, deadline: float) -> None:
        """Take the last sample and end the thread (waiting at most until ``deadline``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    # -- the sampler thread --------------------------------------------------------------------------

    def _run(self) -> None:
        self._prime()
        while not self._stop.wait(self._interval):
            self._sample_logged()
        self._sample_logged()  # the stretch since the last sample, so a short run has a row too
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass

    def _prime(self) -> None:
        ps = self._psutil
        self._proc.cpu_percent(None)
        ps.cpu_percent(None)
        self._last = {"t": time.monotonic(), "disk": _safe(ps.disk_io_counters), "net": _safe(ps.net_io_counters)}
        self._nvml, handles = gpu_handles()
        self._gpus = [(h, self._exp.metrics(f"system/gpu/{i}")) for i, h in enumerate(handles)]

    def _sample_logged(self) -> None:
        try:
            self._sample()
            self.samples += 1
        except Exception as exc:  # a closed run (stop raced the interval), or psutil trouble
            if self.samples == 0:
                warn(f"{self._exp.prefix}: system sample failed: {exc}")

    def _sample(self) -> None:
        ps, proc, now = self._psutil, self._proc, time.monotonic()
        elapsed = max(now - self._last["t"], 1e-6)
        with proc.oneshot():
            self._process.log(
                cpu_percent=proc.cpu_percent(None), rss_mib=proc.memory_info().rss / _MIB, threads=proc.num_threads()
            )
        vm = ps.virtual_memory()
        host = {
            "cpu_percent": ps.cpu_percent(None),
            "memory_used_mib": (vm.total - vm.available) / _MIB,
            "memory_available_mib": vm.available / _MIB,
            "memory_percent": vm.percent,
        }
        disk, net = _safe(ps.disk_io_counters), _safe(ps.net_io_counters)
        before_disk, before_net = self._last["disk"], self._last["net"]
        if disk is not None and before_disk is not None:
            host["disk_read_mib_s"] = max(0, disk.read_bytes - before_disk.read_bytes) / _MIB / elapsed
            host["disk_write_mib_s"] = max(0, disk.write_bytes - before_disk.write_bytes) / _MIB / elapsed
        if net is not None and before_net is not None:
            host["net_sent_mib_s"] = max(0, net.bytes_sent - before_net.bytes_sent) / _MIB / elapsed
            host["net_recv_mib_s"] = max(0, net.bytes_recv - before_net.bytes_recv) / _MIB / elapsed
        self._last = {"t": now, "disk": disk, "net": net}
        self._host.log(**host)
        for handle, metric in self._gpus:
            row = gpu_sample(self._nvml, handle)
            if row:
                metric.log(**row)


def _safe(counter: Any) -> Any:
    try:
        return counter()
    except Exception:  # no disks or interfaces visible (some containers)
        return None


def gpu_handles() -> tuple[Any, ...]:
    """``(pynvml module, [device handles])``, or ``(None, [])`` when NVML is not there or not answering."""
    try:
        import pynvml
    except ImportError:
        return None, []
    try:
        pynvml.nvmlInit()
    except Exception:  # the package without a driver (any machine without an NVIDIA GPU)
        return None, []
    try:
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:
        return pynvml, []


def gpu_sample(nvml: Any, handle: Any) -> Dict[str, float]:
    """One device's row; a reading the device does not support is left out."""
    row: Dict[str, float] = {}
    readings: "Tuple[Tuple[str, Callable[[], Any]], ...]" = (
        ("utilization_percent", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        ("memory_used_mib", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / _MIB),
        ("memory_total_mib", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).total / _MIB),
        ("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
        ("temperature_c", lambda: nvml.nvmlDeviceGetTemperature(handle, 0)),  # 0: NVML_TEMPERATURE_GPU
    )
    for name, read in readings:
        try:
            row[name] = float(read())
        except Exception:
            pass
    return row
