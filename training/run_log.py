"""What a person, and optionally wandb, sees of a training run.

Rank 0 shows a progress bar (in a terminal; in a log file the log lines carry the progress), a
log line every `log_interval` steps, and a line per evaluation:

    iter 50/300: loss 6.3040, lr 9.76e-04, 4,109 ms/step, 249 tok/s, mfu 41.8%
    step 100: train loss 5.9797, val loss 5.8092 (best: saved out/shakespeare_reflow/ckpt.pt)

ms/step and tok/s average the steps since the previous log line (evaluation time left out).
MFU is model FLOPs per second (`Transformer.flops_per_token`) over the peak of all devices
(`core.hardware.peak_flops_and_source`: a GPU's data sheet; on CPU the cores' theoretical fp32 rate,
which does not depend on what else runs). The first log line says which peak. MFU is never shown
above 100%: a figure that high means the peak was underestimated (a CPU clock above the one it
lists), and the line says so instead.

Every evaluation is also kept in out_dir/val_history.json, {"step": {"train": ..., "val": ...}}, so
the loss curve of a run can be read back (studies plot it); a run from scratch starts it afresh,
a resumed run continues it.
"""

import json
from pathlib import Path

from tqdm import tqdm

from core.atomic_write import replacing
from core.config import Config
from core.errors import UserError
from core.hardware import peak_flops_and_source
from core.run_files import read_val_history
from core.wandb_login import HOW_TO_LOG, first_line

VAL_HISTORY_NAME = "val_history.json"


class RunLog:
    def __init__(self, cfg: Config, *, start_iter: int, flops_per_step: float, tokens_per_step: int,
                 device: str, dtype: str, world_size: int, enabled: bool, wandb_run_id: str | None):
        self.cfg, self.enabled = cfg, enabled
        self.flops_per_step, self.tokens_per_step = flops_per_step, tokens_per_step
        self.device, self.dtype, self.world_size = device, dtype, world_size
        self.peak: float | None = None  # measured at the first log line, not at start-up
        self.seconds, self.steps = 0.0, 0
        # disable=None: a bar in a terminal, none in a log file.
        self.bar = tqdm(total=cfg.max_iters, initial=start_iter, unit="step", dynamic_ncols=True,
                        disable=None if enabled else True)
        self.wandb = start_wandb(cfg, wandb_run_id) if enabled and cfg.wandb_log else None
        self.history_path = Path(cfg.out_dir) / VAL_HISTORY_NAME
        self.history = read_val_history(self.history_path) if start_iter > 0 else {}
        self.regularizers = None  # set by train.py when regularizer terms join the loss

    @property
    def wandb_run_id(self) -> str | None:
        return self.wandb.id if self.wandb else None

    def print(self, line: str) -> None:
        if self.enabled:
            tqdm.write(line)

    def step(self, iter_num: int, loss: float, lr: float, seconds: float) -> None:
        """Record one finished step (iter_num is the count of steps done)."""
        self.bar.update(1)
        self.seconds, self.steps = self.seconds + seconds, self.steps + 1
        if not self.enabled or iter_num % self.cfg.log_interval:
            return
        step_time = self.seconds / self.steps
        tokens_per_sec = self.tokens_per_step / step_time
        mfu = self.mfu(step_time)
        mfu_text = format_mfu(mfu)
        terms = self.regularizers.latest if self.regularizers else {}
        self.print(f"iter {iter_num}/{self.cfg.max_iters}: loss {loss:.4f}, lr {lr:.2e}, "
                   f"{step_time * 1000:,.0f} ms/step, {tokens_per_sec:,.0f} tok/s, mfu {mfu_text}"
                   + (f" | {self.regularizers.describe(terms)}" if terms else ""))
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if self.wandb:
            self.wandb.log({"iter": iter_num, "train/loss": loss, "lr": lr,
                            "tokens_per_sec": tokens_per_sec,
                            "mfu": mfu if mfu is not None and mfu < 1 else None,
                            **{f"train/{name}": value for name, value in terms.items()}}, step=iter_num)
        self.seconds, self.steps = 0.0, 0

    def evaluation(self, iter_num: int, losses: dict[str, float], note: str = "") -> None:
        """losses: 'train' and 'val', plus 'val_<term>' raw regularizer values when there are any."""
        terms = {key[4:]: value for key, value in losses.items() if key.startswith("val_")}
        self.print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                   + (f", val {self.regularizers.describe(terms)}" if terms and self.regularizers else "")
                   + (f" ({note})" if note else ""))
        if self.enabled:
            self.history[str(iter_num)] = {k: float(v) for k, v in losses.items()}
            # Written, then renamed: never half a file; a full disk is one line.
            with replacing(self.history_path) as tmp:
                tmp.write_text(json.dumps(self.history, indent=1))
        if self.wandb:
            self.wandb.log({"iter": iter_num, "train/loss_estimate": losses["train"],
                            "val/loss": losses["val"], **{f"val/{n}": v for n, v in terms.items()}},
                           step=iter_num)

    def mfu(self, step_time: float) -> float | None:
        if self.peak is None:
            try:
                peak, source = peak_flops_and_source(self.device, self.dtype)
                self.peak = peak * self.world_size
                per = f" per device x {self.world_size}" if self.world_size > 1 else ""
                self.print(f"mfu: model FLOP/s over {peak / 1e9:,.1f} GFLOP/s{per} ({source})")
            except ValueError as error:  # a GPU missing from the peak table: no MFU rather than no run
                self.print(f"mfu: n/a ({error})")
                self.peak = 0.0
        return self.flops_per_step / step_time / self.peak if self.peak else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.bar.close()
        if self.wandb:
            self.wandb.finish()


def format_mfu(mfu: float | None) -> str:
    """MFU as a percentage; never above 100%, which only an underestimated peak can produce."""
    if mfu is None:
        return "n/a"
    return f"{mfu:.1%}" if mfu < 1 else ">=100% (peak underestimated)"


def start_wandb(cfg: Config, run_id: str | None):
    """A wandb run in out_dir/wandb (WANDB_MODE=offline works); a resumed run continues its own."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=True needs wandb: pip install wandb (or set --wandb_log=False)")
    try:
        return wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=cfg.to_dict(),
                          dir=cfg.out_dir, id=run_id, resume="allow")
    except Exception as error:  # a key that login accepted but the server refuses, no network, ...
        raise UserError(f"wandb could not start a run ({first_line(error)}); {HOW_TO_LOG}")
