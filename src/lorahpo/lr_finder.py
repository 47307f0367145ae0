"""The learning-rate range test: one short run whose learning rate rises exponentially from
1e-7 to 1 (as Lightning's `lr_find` and fastai's `lr_find` do), the training loss at each
step, and the learning rates it suggests.

Run as `python -m lorahpo.lr_finder CONFIG.yaml RESULT.json PLOT.png` (a process of its own,
so that the sweep driver holds no model and no GPU memory afterwards).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

log = logging.getLogger(__name__)

LR_START, LR_END, STEPS = 1e-7, 1.0, 100  # Lightning's lr_find defaults (its start is 1e-8)
SMOOTHING = 0.98  # the loss's exponential moving average, bias-corrected (fastai)
STOP_FACTOR = 4.0  # stop once the smoothed loss is this many times its lowest (Lightning)
SKIP_BEGIN = 10  # steps left out of the steepest-slope search (Lightning's skip_begin)
# For its lowest point to say anything, the smoothed loss must fall this share below where it
# started: a pretrained model that learns slowly keeps it flat (at ln 7, a 7-way guess, within
# 0.2%) until it diverges, and the lowest point of a flat curve is noise; the tiny model's
# falls by 3-5%
MIN_FALL = 0.02


class RisingLR(TrainerCallback):
    """Sets step k's learning rate to LR_START * (LR_END / LR_START) ** (k / (steps - 1)) and
    records each step's training loss; stops the run once the loss has clearly diverged.
    `steps`: optimizer steps the range test spans."""

    def __init__(self, steps: int) -> None:
        self.lrs = np.geomspace(LR_START, LR_END, steps).tolist()
        self.losses: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        for group in optimizer.param_groups:
            group["lr"] = self.lrs[min(state.global_step, len(self.lrs) - 1)]
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            smoothed = smooth(self.losses)
            if not math.isfinite(self.losses[-1]) or smoothed[-1] > STOP_FACTOR * min(smoothed):
                control.should_training_stop = True
        return control


def smooth(losses: list[float]) -> list[float]:
    """The bias-corrected exponential moving average of the losses (fastai's smoothing)."""
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = SMOOTHING * avg + (1 - SMOOTHING) * loss
        out.append(avg / (1 - SMOOTHING ** (i + 1)))
    return out


def suggest(lrs: list[float], losses: list[float]) -> dict:
    """Where the smoothed loss is lowest and where it falls fastest (per log-learning-rate),
    and the range to search: from the steepest fall (Lightning's suggestion) to a third of
    the lowest-loss rate, so that it holds fastai's rule of thumb too (an order of magnitude
    below the lowest loss); one to two decades wide. `range` is None when the smoothed loss
    never fell MIN_FALL below where it was after the first steps (`fall` is how far it fell,
    as a share of that): the test says nothing then."""
    smoothed = [s if math.isfinite(s) else math.inf for s in smooth(losses)]
    if len(smoothed) < 5 or not math.isfinite(min(smoothed)):
        raise ValueError(f"the range test recorded {len(smoothed)} usable steps, too few")
    begin = min(SKIP_BEGIN, len(smoothed) // 4)  # the first smoothed values are mostly noise
    lowest = begin + int(np.argmin(smoothed[begin:]))
    steepest = lowest
    if lowest - begin >= 2:
        part = slice(begin, lowest + 1)
        slope = np.gradient(np.array(smoothed[part]), np.log(lrs[part]))
        steepest = begin + int(np.argmin(slope))
    top = lrs[lowest]
    fall = 1 - smoothed[lowest] / smoothed[begin]
    return {
        "lr_lowest_loss": top,
        "lr_steepest": lrs[steepest],
        "fall": fall,
        "needed_fall": MIN_FALL,
        "range": [min(max(lrs[steepest], top / 300), top / 30), top / 3]
        if fall >= MIN_FALL
        else None,
        "lrs": lrs[: len(losses)],
        "losses": losses,
        "smoothed": smoothed,
    }


def range_test(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the test on `cfg`'s data, model and LoRA settings (a trial's, without the searched
    values): fresh adapters, `train.batch_size`, up to STEPS optimizer steps."""
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from lorahpo import base_cache, modeling
    from lorahpo.objective import parse_objective
    from lorahpo.trainer import classifier_trainer, training_arguments

    modeling.quiet_transformers()
    inputs = base_cache.inputs_for(cfg)
    base = base_cache.base_for(cfg, inputs)
    set_seed(cfg.seed)
    modeling.init_head(base, cfg.seed)
    model = modeling.add_lora(base, cfg.lora)
    args = dataclasses.replace(  # a trial's arguments, but for the rising learning rate
        training_arguments(cfg, out_dir, 1, parse_objective(cfg.objective), validate=False),
        learning_rate=LR_START,
        max_steps=STEPS,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    rising = RisingLR(STEPS)
    trainer = classifier_trainer(cfg, inputs, model, args, callbacks=[rising])
    trainer.pop_callback(PrinterCallback)
    trainer.pop_callback(ProgressCallback)
    trainer.train()
    return suggest(rising.lrs, rising.losses)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["lrs"], result["losses"], alpha=0.3, label="loss")
    ax.plot(result["lrs"], result["smoothed"], label="smoothed")
    if result["range"]:
        ax.axvspan(*result["range"], alpha=0.15, color="green", label="searched")
    ax.axvline(result["lr_lowest_loss"], color="gray", linestyle=":", label="lowest loss")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss")
    finite = [s for s in result["smoothed"] if math.isfinite(s)]
    ax.set_ylim(min(finite) * 0.9, min(max(finite), STOP_FACTOR * min(finite)) * 1.1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> None:
    config, result_file, plot_file = argv
    cfg = OmegaConf.load(config)
    result = range_test(cfg, Path(result_file).parent / "trainer")
    plot(result, Path(plot_file))
    Path(result_file).write_text(json.dumps(result, indent=1))  # last: the test is done


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(sys.argv[1:])
