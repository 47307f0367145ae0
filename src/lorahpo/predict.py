"""Inference: a training run directory -> class probabilities for new rows.

Everything is rebuilt from the run directory alone: its `.hydra/config.yaml` (template,
labels, model, hardware), `result.json` (the base model it trained on) and `adapter/`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from lorahpo import modeling, schema, scoring, truncation
from lorahpo.data import Columns, read_csv
from lorahpo.errors import UserError, first_line
from lorahpo.rundir import RunDir, read_json

log = logging.getLogger(__name__)


@dataclass
class TrainedRun:
    """What a run directory holds, checked."""

    run_dir: RunDir
    cfg: DictConfig  # the run's own composed config
    base_path: str  # the base model it trained on

    @property
    def num_labels(self) -> int:
        return int(self.cfg.data.num_labels)

    @property
    def temperature(self) -> float | None:
        """The temperature fitted at the run's best evaluation (None for runs without one)."""
        return self.run_dir.read_calibration().get("temperature")


def open_run(run_dir: str | Path) -> TrainedRun:
    """Check the run directory has what inference needs; say what is missing otherwise."""
    rd = RunDir(Path(run_dir).expanduser())
    d = rd.path
    where = f"run_dir={run_dir}"
    if not (d / ".hydra/config.yaml").exists():
        raise UserError(
            f"{where}: not a training run directory (no .hydra/config.yaml). Point "
            "run_dir at a folder written by `python train.py`, e.g. a trial "
            "folder <sweep_dir>/<n>."
        )
    if not rd.has_adapter():
        raise UserError(
            f"{where}: the run has no adapter/ (it failed, was stopped early, or "
            "is still running; see its result.json). Use a completed run."
        )
    cfg = schema.typed(OmegaConf.load(d / ".hydra/config.yaml"))  # older runs: new keys
    result = rd.read_result()
    base = (result and result.model_path) or read_json(rd.adapter_path / "adapter_config.json")[
        "base_model_name_or_path"
    ]
    if (
        not base.startswith(modeling.PACKAGE_PREFIX)
        and not Path(base).exists()
        and not cfg.model.allow_download
    ):
        raise UserError(
            f"{where}: its base model {base} is not on this machine any more. "
            "Restore it (for model=tiny: rerun the training command, which "
            "rebuilds it) or pass model.path=<folder of the same base model>."
        )
    return TrainedRun(rd, cfg, base)


def load_model(run: TrainedRun, hardware: DictConfig, merge: bool = False):
    """Tokenizer and base model + adapter, in eval mode, on the given hardware."""
    from peft import PeftModel

    modeling.quiet_transformers()
    modeling.check_hardware(hardware)
    adapter = run.run_dir.adapter_path
    tokenizer = modeling.load_tokenizer(str(adapter), run.cfg.model)
    base = modeling.load_base_model(
        run.base_path, run.cfg.model, hardware, run.num_labels, tokenizer.pad_token_id
    )
    model = PeftModel.from_pretrained(base, str(adapter))
    if merge:
        if hardware.quantization != "none":
            log.warning("not merging: the adapter cannot be merged into a 4-bit base model")
        else:
            model = model.merge_and_unload()
    model.eval()
    return tokenizer, model


def load_members(runs: list[TrainedRun], hardware: DictConfig):
    """Tokenizer and one base model with every member's adapter on it (PEFT's named adapters:
    `member0`, `member1`, ...), in eval mode."""
    from peft import PeftModel

    bases = {r.base_path for r in runs}
    if len(bases) > 1:
        raise UserError(
            f"the ensemble's members were trained on different base models ({sorted(bases)}): "
            "its members must share one base."
        )
    modeling.quiet_transformers()
    modeling.check_hardware(hardware)
    first = runs[0]
    tokenizer = modeling.load_tokenizer(str(first.run_dir.adapter_path), first.cfg.model)
    base = modeling.load_base_model(
        first.base_path, first.cfg.model, hardware, first.num_labels, tokenizer.pad_token_id
    )
    model = None
    for i, r in enumerate(runs):
        adapter, name = str(r.run_dir.adapter_path), f"member{i}"
        try:
            if model is None:
                model = PeftModel.from_pretrained(base, adapter, adapter_name=name)
            else:
                model.load_adapter(adapter, adapter_name=name)
        except Exception as e:
            raise UserError(
                f"member {i} ({r.run_dir.path}): its adapter could not be loaded "
                f"({first_line(e)}). Retrain that member, or select the ensemble again "
                "without it."
            ) from None
    model.eval()
    return tokenizer, model


def ensemble_logits(
    runs: list[tuple[TrainedRun, float]], hardware: DictConfig, test: pd.DataFrame, req
) -> np.ndarray:
    """The log of the members' weighted mean probabilities: logits of the ensemble (softmax
    gives the mean back), for the same post-processing as one model's."""
    tokenizer, model = load_members([r for r, _ in runs], hardware)
    mean = np.zeros((len(test), runs[0][0].num_labels))
    for i, (r, weight) in enumerate(runs):
        model.set_adapter(f"member{i}")
        logits = predict_logits(
            model,
            tokenizer,
            truncation.row_texts(test, r.cfg, tokenizer),  # each member's own max_length
            r.cfg.data.max_length,
            req.batch_size,
            req.sort_by_length,
            req.progress,
        )
        mean += weight * scoring.softmax(logits)
    return np.log(np.clip(mean, scoring.CLIP, None))


def read_test(path: str, run: TrainedRun, key: str = "data.test_path") -> pd.DataFrame:
    """The test CSV; labels are optional (present: the run's label count is checked)."""
    columns = Columns.from_config(run.cfg.data)
    head = read_csv(path, key, columns, num_labels=None)
    has_labels = columns.label in head.columns
    if has_labels:
        return read_csv(path, key, columns, num_labels=run.num_labels)
    return head


def predict_logits(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int,
    sort_by_length: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Logits for `texts`, in their order. Sorting by length makes each batch nearly
    padding-free; the order is restored at the end."""
    import torch
    from tqdm.auto import tqdm

    enc = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = (
        np.argsort([len(x) for x in enc], kind="stable") if sort_by_length else np.arange(len(enc))
    )
    device = next(model.parameters()).device
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float64)
    batches = range(0, len(order), batch_size)
    with torch.inference_mode():
        for start in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            idx = order[start : start + batch_size]
            batch = tokenizer.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[idx] = logits.float().cpu().numpy()
    return out


def submission_frame(test: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """`id` (the test file's, or the row index) then `target_0 .. target_{K-1}`."""
    ids = test["id"].to_numpy() if "id" in test.columns else np.arange(len(test))
    frame = pd.DataFrame(probs, columns=[f"target_{k}" for k in range(probs.shape[1])])
    frame.insert(0, "id", ids)
    return frame


@dataclass
class InferRequest:
    """What `infer.py` is asked to do (the keys of conf/infer.yaml)."""

    run_dir: str
    test_path: str
    output: str | None = None  # None: <run_dir>/submission.csv
    hardware: DictConfig | None = None  # None: the run's own hardware settings
    batch_size: int = 32  # rows per forward pass
    sort_by_length: bool = True  # batch rows of similar length (less padding); order kept
    merge_adapter: bool = False  # fold the LoRA weights into the base before predicting
    postprocess: str = "assignment"  # one of lorahpo.scoring.METHODS
    progress: bool = True

    @classmethod
    def from_config(cls, cfg: DictConfig) -> InferRequest:
        return cls(
            run_dir=cfg.run_dir,
            test_path=cfg.data.test_path,
            output=cfg.output,
            hardware=cfg.get("hardware"),
            batch_size=cfg.batch_size,
            sort_by_length=cfg.sort_by_length,
            merge_adapter=cfg.merge_adapter,
            postprocess=cfg.postprocess,
            progress=cfg.progress_bar,
        )


def run_inference(req: InferRequest) -> dict:
    """The whole of `infer.py`: returns what it printed, for tests and callers. A run
    directory that holds an ensemble (lorahpo.ensemble) predicts with every member."""
    from lorahpo.ensemble import members_of

    members = members_of(Path(req.run_dir).expanduser())
    runs = [(open_run(d), w) for d, w in members] if members else [(open_run(req.run_dir), 1.0)]
    run = runs[0][0]
    test = read_test(req.test_path, run)
    temperature = run.temperature if members is None else None  # one model's, not a mean's
    scoring.check_method(req.postprocess, temperature)  # before the model loads, not after
    hw = req.hardware if req.hardware is not None else run.cfg.hardware
    start = time.time()
    if members is None:
        tokenizer, model = load_model(run, hw, req.merge_adapter)
        texts = truncation.row_texts(test, run.cfg, tokenizer)
        logits = predict_logits(
            model,
            tokenizer,
            texts,
            run.cfg.data.max_length,
            req.batch_size,
            req.sort_by_length,
            req.progress,
        )
    else:
        logits = ensemble_logits(runs, hw, test, req)
    seconds = time.time() - start
    groups = test[run.cfg.data.question_column].to_numpy()
    probs, counts = scoring.probabilities(logits, groups, req.postprocess, temperature)
    out_path = Path(req.output or Path(req.run_dir).expanduser() / "submission.csv")
    submission_frame(test, probs).to_csv(out_path, index=False)
    report = {
        "rows": len(test),
        "rows_per_s": len(test) / max(seconds, 1e-9),
        "output": str(out_path),
        "postprocess": req.postprocess,
        "temperature": temperature if "temperature" in req.postprocess else None,
        "groups": str(counts) if counts is not None else None,
    }
    label = run.cfg.data.label_column
    if label in test.columns:
        y = test[label].to_numpy()
        report["log_loss"] = scoring.log_loss(probs, y)
        report["accuracy"] = scoring.accuracy(probs, y)
        report["raw_log_loss"] = scoring.log_loss(scoring.softmax(logits), y)
    return report
