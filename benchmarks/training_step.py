"""Training-step speed on this machine: float32 vs bfloat16 autocast vs bfloat16 + channels_last,
for the shipped U-Net (depth 3) and a deeper width-capped one (depth 5, 64 channels)."""

from __future__ import annotations

import time

import torch

from mm_deepz.model import UNetConfig
from mm_deepz.model.unet import DeepZUNet


def step_time(cfg: UNetConfig, mode: str, batch: int, patch: int, device: str, repeats: int) -> float:
    """Median seconds of one generator step (forward, L1 loss, backward, AdamW) in ``mode``."""
    net = DeepZUNet(cfg).to(device)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x = torch.rand(batch, 2 * cfg.n_planes, patch, patch, device=device)
    y = torch.rand(batch, 1, patch, patch, device=device)
    if mode == "bf16+channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=mode != "fp32"):
            loss = (net(x).float() - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def run(quick: bool, device: str = "cpu") -> list[dict]:
    """Rows: architecture, mode, seconds per step, patches per second."""
    batch, patch, repeats = (2, 64, 2) if quick else (6, 128, 5)
    rows = []
    for cfg in (UNetConfig(1, 16, 3), UNetConfig(1, 16, 5, 64)):
        for mode in ("fp32", "bf16", "bf16+channels_last"):
            s = step_time(cfg, mode, batch, patch, device, repeats)
            rows.append(
                {
                    "depth": cfg.depth,
                    "max_channels": cfg.max_channels,
                    "mode": mode,
                    "device": device,
                    "threads": torch.get_num_threads(),
                    "batch": batch,
                    "patch": patch,
                    "step_s": round(s, 4),
                    "patches_per_s": round(batch / s, 1),
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(False):
        print(row)
