"""Virtual z-stacks from 1-2 measured planes: batched, tiled, GPU first with CPU fallback."""

from __future__ import annotations

import logging
import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch.profiler import record_function

from .. import dpm as dpm_mod
from ..devices import device_problem
from ..errors import DeviceError, InferenceError, InputError
from ..modelfile import DeepZModel
from ..normalization import IntensityScale
from .bundle import VirtualStack
from .tiling import run_tiled

logger = logging.getLogger(__name__)


#: the device names users can ask for, besides ``cuda:N`` (the N-th GPU, from 0)
def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available else CPU; a ``cuda`` request without a GPU falls back with a
    warning; ``cuda:N`` is that GPU, refused (:class:`DeviceError`) where this computer has no such GPU."""
    if (problem := device_problem(requested)) is not None:
        raise ValueError(problem)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested.startswith("cuda:"):
        index = int(requested.partition(":")[2])
        if index >= gpus:
            have = f"{gpus} GPU(s), cuda:0 to cuda:{gpus - 1}" if gpus else "no GPU"
            raise DeviceError(
                f"{requested} is not on this computer ({have}): choose one of its devices, or auto."
            )
        return torch.device(requested)
    if requested in ("auto", "cuda") and gpus:
        return torch.device("cuda")
    if requested == "cuda":
        warnings.warn(
            "CUDA was requested but no GPU is available: running Deep-Z on the CPU (slower).",
            RuntimeWarning,
            stacklevel=2,
        )
    return torch.device("cpu")


class Predictor:
    """Runs a :class:`DeepZModel` on plane bundles.

    One predictor owns its device; use it from one thread (the :class:`InferenceWorker`
    does). It runs channels_last everywhere; on CUDA it also autocasts to bfloat16 (fp16
    where bf16 is unsupported), uses pinned host memory and synchronises once per stack.
    Frames larger than ``tile_size`` are processed in overlapping, blended tiles.
    """

    def __init__(
        self,
        model: DeepZModel,
        device: str = "auto",
        batch_size: int | None = None,
        tile_size: int | None = None,
        tile_overlap: int = 48,
        compile: bool = False,
    ):
        self.model = model
        self.device = resolve_device(device)
        cuda = self.device.type == "cuda"
        # CPU: one plane at a time in channels_last is fastest (benchmarks: 1.8x over batches of
        # 4 in NCHW), and whole frames up to 2048x2048 fit in memory (tiles cost overlap)
        self.batch_size = batch_size or (16 if cuda else 1)
        multiple = model.card.architecture.multiple
        self.tile_size = tile_size or (1024 if cuda else 2048)
        self.tile_size -= self.tile_size % multiple
        self.tile_overlap = tile_overlap
        self._compile = compile
        self._use_device(self.device)

    def _use_device(self, device: torch.device) -> None:
        """Put the network on ``device`` (at start, and when falling back to the CPU)."""
        self.device = device
        # torch's stubs lack Module.to(memory_format=...), which torch documents and runs
        self.network = self.model.network.to(device).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if device.type == "cuda":
            self._amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        encode, decode = self.network.encode, self.network.decode
        self._encoder = torch.compile(encode) if self._compile else encode
        self._decoder = torch.compile(decode) if self._compile else decode

    # -- public API ------------------------------------------------------------------
    def predict_stack(
        self,
        planes: np.ndarray,
        plane_z_um: tuple[float, ...],
        target_z_um: np.ndarray,
        strict_range: bool = True,
        out_dtype: type = np.uint16,
    ) -> VirtualStack:
        """Virtual planes at absolute depths ``target_z_um`` (uniform DPMs) from measured planes."""
        target_z_um = np.asarray(target_z_um, np.float64).reshape(-1)
        planes = self._check_planes(planes, plane_z_um)
        dist = target_z_um[:, None] - np.asarray(plane_z_um)[None, :]  # (Z, n) µm
        dist_n = dpm_mod.to_network_units(dist, self.model.card.z_range_um, strict=strict_range)
        counts, scale = self._in_counts(planes, out_dtype, dist_n=dist_n)
        return VirtualStack(counts, target_z_um, tuple(plane_z_um), scale, {"dpm": "uniform"})

    def predict_dpm(
        self,
        planes: np.ndarray,
        plane_z_um: tuple[float, ...],
        dpms_um: np.ndarray,
        strict_range: bool = True,
        out_dtype: type = np.uint16,
    ) -> np.ndarray:
        """Images on arbitrary surfaces: ``dpms_um`` is (B, n_planes, H, W) or (B, H, W) for 1 plane."""
        planes = self._check_planes(planes, plane_z_um)
        dpms_um = np.asarray(dpms_um, np.float32)
        if dpms_um.ndim == 3:
            dpms_um = dpms_um[:, None]
        if dpms_um.shape[1:] != planes.shape:
            raise InputError(f"DPMs of shape {dpms_um.shape[1:]} do not match the planes {planes.shape}.")
        maps_n = dpm_mod.to_network_units(dpms_um, self.model.card.z_range_um, strict=strict_range)
        return self._in_counts(planes, out_dtype, maps_n=maps_n)[0]

    # -- internals ---------------------------------------------------------------------
    def _in_counts(
        self, planes: np.ndarray, out_dtype: type, **dpms: np.ndarray
    ) -> tuple[np.ndarray, IntensityScale]:
        """The images of the measured ``planes`` on the DPMs ``dpms`` (:meth:`_run`'s ``dist_n`` or
        ``maps_n``) in camera counts of ``out_dtype``, and the intensity scale between the two; each phase
        labelled for torch's profiler (``python -m benchmarks.inference --profile``)."""
        with record_function("mm_deepz.normalize"):
            scale = IntensityScale.from_planes(planes, **self._pcts())
            planes_n = scale.forward(planes)
        out = self._run(planes_n, **dpms)
        with record_function("mm_deepz.to_counts"):
            return scale.to_counts(out, out_dtype), scale

    def _pcts(self) -> dict[str, float]:
        n = self.model.card.normalization
        return {"low_percentile": n["low_percentile"], "high_percentile": n["high_percentile"]}

    def _check_planes(self, planes: np.ndarray, plane_z_um: tuple[float, ...]) -> np.ndarray:
        planes = np.asarray(planes)
        if planes.ndim == 2:
            planes = planes[None]
        if planes.ndim != 3 or min(planes.shape[1:]) < 16:
            raise InputError(f"Expected planes as (n, y, x) with y, x >= 16, got shape {planes.shape}.")
        if planes.dtype.kind not in "uif":
            raise InputError(f"Planes must be numeric images, got dtype {planes.dtype}.")
        if len(plane_z_um) != planes.shape[0]:
            raise InputError(f"{planes.shape[0]} planes but {len(plane_z_um)} plane positions.")
        offsets = tuple(float(z) for z in plane_z_um)
        self.model.check_compatible(plane_offsets_um=offsets)
        return planes

    def _run(
        self, planes_n: np.ndarray, dist_n: np.ndarray | None = None, maps_n: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`_run_batches`, retried after running out of memory: with half the batch size
        (kept for later stacks), then, one plane at a time on a GPU, on the CPU."""
        while True:
            try:
                return self._run_batches(planes_n, dist_n, maps_n)
            except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
                if not _out_of_memory(e):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    logger.warning(
                        "Out of memory on %s: retrying with batches of %d virtual planes",
                        self.device,
                        self.batch_size,
                    )
                elif self.device.type != "cpu":
                    logger.warning(
                        "Out of memory on %s even one plane at a time: falling back to the CPU", self.device
                    )
                    self._use_device(torch.device("cpu"))
                else:
                    raise InferenceError(
                        "Out of memory even one virtual plane at a time on the CPU: use smaller frames (or "
                        "tiles, tile_size) or close other programs."
                    ) from e

    @torch.inference_mode()
    def _run_batches(
        self, planes_n: np.ndarray, dist_n: np.ndarray | None = None, maps_n: np.ndarray | None = None
    ) -> np.ndarray:
        """Normalized planes (n,H,W) + DPMs in network units (:func:`mm_deepz.dpm.to_network_units`:
        uniform distances (B, n) or maps (B, n, H, W)) -> normalized outputs (B,H,W), batched on the
        device."""
        cuda = self.device.type == "cuda"
        host = torch.from_numpy(np.ascontiguousarray(planes_n, np.float32))
        if cuda:
            host = host.pin_memory()
        p = host.to(self.device, non_blocking=True)[None]  # (1, n, H, W)
        if dist_n is not None:  # uniform DPMs: one distance per plane, broadcast by the network
            dpm = torch.as_tensor(dist_n, dtype=torch.float32, device=self.device)[:, :, None, None]
        elif maps_n is not None:
            dpm = torch.from_numpy(np.ascontiguousarray(maps_n, np.float32)).to(
                self.device, non_blocking=True
            )
        else:
            raise ValueError("_run_batches needs uniform distances or DPM maps")
        arch = self.model.card.architecture
        with record_function("mm_deepz.network"):
            stack = run_tiled(
                self._encode, self._decode, p, dpm, self.tile_size, self.tile_overlap, arch.multiple,
                self.batch_size, arch.min_size,
            )  # fmt: skip
        with record_function("mm_deepz.to_host"):  # the stack to the host, checked there
            out = stack.cpu().numpy()  # one host sync per stack
            if not np.isfinite(out).all():
                raise InferenceError("The model produced NaN/Inf values; the virtual planes were discarded.")
        return out

    def _encode(self, planes: torch.Tensor) -> Any:
        with self._precision():
            return self._encoder(planes.contiguous(memory_format=torch.channels_last))

    def _decode(self, encoded: Any, dpm: torch.Tensor) -> torch.Tensor:
        with self._precision():
            out: torch.Tensor = self._decoder(encoded, dpm)
        return out.float()

    def _precision(self) -> AbstractContextManager[Any]:
        """bfloat16 (or float16) autocast on a GPU; float32 on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=self._amp_dtype)
        return nullcontext()


def _out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is torch running out of GPU or host memory."""
    return (
        isinstance(e, torch.cuda.OutOfMemoryError)
        or "can't allocate memory" in str(e)
        or "out of memory" in str(e).lower()
    )
