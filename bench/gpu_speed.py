"""Training throughput of resnet18 at 224 px on whatever device is present (synthetic batches,
so only the model and the device are measured): fp32, then channels-last + mixed precision
(CUDA), then torch.compile (optional).

    python bench/gpu_speed.py [--batch 64] [--steps 30] [--compile]
"""
from __future__ import annotations

import argparse
import time


import torch

from balancelab.engine.train.models import build_model
from balancelab.engine.train.device import resolve_device


def run(model, device, batch: int, steps: int, amp: bool, channels_last: bool) -> float:
    x = torch.rand(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type) if amp else None
    model.train()
    for i in range(steps + 3):
        if i == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch}, {args.steps} timed steps")
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 224).to(device)
    print(f"fp32:                          {run(model, device, args.batch, args.steps, False, False):8.1f} img/s")
    if device.type == "cuda":
        print(f"channels-last + fp16 autocast: {run(model, device, args.batch, args.steps, True, True):8.1f} img/s")
    if args.compile:
        compiled = torch.compile(model)
        print(f"torch.compile:                 {run(compiled, device, args.batch, args.steps, device.type == 'cuda', device.type == 'cuda'):8.1f} img/s")


if __name__ == "__main__":
    main()
