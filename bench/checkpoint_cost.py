"""What a resumable checkpoint of an 8B model's LoRA trial costs to write, on this disk.

    python bench/checkpoint_cost.py [--rank 16] [--dir outputs/bench] [--repeats 3]

A trial saves one at every evaluation (lorahpo.resume). This builds the tensors such a
checkpoint holds for Llama-3-8B's shapes (32 layers; LoRA A and B on q, k, v, o, gate, up,
down; fp32), writes them as the Trainer does (the adapter as safetensors, Adam's two moments
with torch.save), reads the files back (as a resume does), and prints
size, seconds, and the share of the time between two evaluations of a reference trial
(~17 GPU-minutes, 13 evaluations). Random values: only sizes and I/O matter here. Like the
Trainer, it does not fsync: the figure is what the training process waits for, with the
kernel writing back to disk in the background.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
# Llama-3-8B: hidden 4096, 8 KV heads x 128 = 1024, MLP 14336, 32 layers
LINEAR = {
    "q_proj": (4096, 4096),
    "k_proj": (4096, 1024),
    "v_proj": (4096, 1024),
    "o_proj": (4096, 4096),
    "gate_proj": (4096, 14336),
    "up_proj": (4096, 14336),
    "down_proj": (14336, 4096),
}
REFERENCE_EVAL_GAP_S = 17 * 60 / 13  # one reference trial: ~17 GPU-minutes, 13 evaluations


def adapter_tensors(rank: int, layers: int = 32) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(layers):
        for name, (fan_in, fan_out) in LINEAR.items():
            key = f"base_model.model.model.layers.{i}.{name}"
            out[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in)
            out[f"{key}.lora_B.weight"] = torch.randn(fan_out, rank)
    return out


def write_checkpoint(folder: Path, adapter: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True)
    save_file(adapter, str(folder / "adapter_model.safetensors"))
    state = {
        i: {"step": torch.tensor(100.0), "exp_avg": t.clone(), "exp_avg_sq": t.clone()}
        for i, t in enumerate(adapter.values())
    }
    torch.save({"state": state, "param_groups": [{"lr": 2e-4}]}, folder / "optimizer.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--dir", default=str(ROOT / "outputs" / "bench" / "checkpoint_cost"))
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    adapter = adapter_tensors(a.rank)
    params = sum(t.numel() for t in adapter.values())
    base = Path(a.dir)
    shutil.rmtree(base, ignore_errors=True)
    writes, reads, size = [], [], 0
    for n in range(a.repeats):
        folder = base / f"checkpoint-{n}"
        start = time.perf_counter()
        write_checkpoint(folder, adapter)
        writes.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in folder.iterdir())
        start = time.perf_counter()
        load_file(str(folder / "adapter_model.safetensors"))
        torch.load(folder / "optimizer.pt", weights_only=True)
        reads.append(time.perf_counter() - start)
    shutil.rmtree(base, ignore_errors=True)
    write_s, read_s = statistics.median(writes), statistics.median(reads)
    print(f"LoRA r={a.rank}, every linear layer, Llama-3-8B shapes: {params / 1e6:.1f} M params")
    print(f"checkpoint (adapter fp32 + Adam moments): {size / 2**30:.2f} GiB")
    print(f"write: median {write_s:.2f} s of {a.repeats} ({size / 2**20 / write_s:.0f} MiB/s)")
    print(f"read back: median {read_s:.2f} s")
    print(
        f"share of a reference trial's {REFERENCE_EVAL_GAP_S:.0f} s between evaluations: "
        f"{write_s / REFERENCE_EVAL_GAP_S:.1%}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
