"""Progress on stderr: tqdm's redrawn bar on a terminal, periodic whole lines elsewhere.

Under a batch system (sbatch, nohup, CI) stderr is a file: a redrawn bar writes a carriage return
per update, so the log fills with thousands of partial lines. When stderr is not a terminal,
`progress_bar` (for tqdm's loops) and `LineProgressBar` (for Lightning's training) write one plain
line every `INTERVAL_S` seconds (and when the loop ends) instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from lightning.pytorch.callbacks import ProgressBar
from tqdm import tqdm

INTERVAL_S = 30.0


def is_terminal(stream: Any = None) -> bool:
    """Whether `stream` (default stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty
        return False


class LineTqdm(tqdm):
    """tqdm that writes its status as one whole line per update, at most every `mininterval` s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", INTERVAL_S)
        kwargs.setdefault("file", sys.stderr)
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.disable or msg == "" or (msg is None and self.n == 0):
            return True  # nothing done yet, or tqdm clearing its bar: no line
        self._line(msg if msg is not None else self.__str__())
        return True

    def _line(self, text: str) -> None:
        self.fp.write(text.rstrip() + "\n")
        self.fp.flush()
        self._shown = self.n

    def close(self) -> None:
        if self.disable:
            return
        if self.n and getattr(self, "_shown", None) != self.n:
            self._line(self.__str__())  # the final count, once
        self._decr_instances(self)
        self.disable = True  # tqdm's own close would redraw and end the line again


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """`tqdm(...)` on a terminal; otherwise `LineTqdm`: a line every 30 s and one at the end."""
    file = kwargs.get("file")
    if is_terminal(file):
        return tqdm(*args, **kwargs)
    kwargs.pop("leave", None)  # a finished line stays in a log anyway
    return LineTqdm(*args, **kwargs)


class LineProgressBar(ProgressBar):
    """Lightning's progress as lines on stderr: every `interval_s` seconds during training (epoch,
    batch, percent, rate, the progress-bar metrics such as the loss) and one line per finished
    epoch and validation."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._enabled = True
        self._last = 0.0
        self._epoch_start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _write(self, text: str) -> None:
        if self._enabled:
            print(text, file=sys.stderr, flush=True)

    def _metrics(self, trainer: Any, module: Any) -> str:
        items = [(k, v) for k, v in self.get_metrics(trainer, module).items() if k != "v_num"]
        return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        self._last = self._epoch_start = time.monotonic()

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        total = self.total_train_batches
        done = batch_idx + 1
        where = f"{done}/{int(total)} ({100 * done / total:.0f}%)" if total and total != float("inf") else f"{done}"
        rate = done / max(now - self._epoch_start, 1e-9)
        self._write(f"epoch {trainer.current_epoch} batch {where}, {rate:.2f} batches/s, step "
                    f"{trainer.global_step}: {self._metrics(trainer, module)}".rstrip(": "))

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        seconds = time.monotonic() - self._epoch_start
        self._write(f"epoch {trainer.current_epoch} done in {seconds:.0f} s, step {trainer.global_step}: "
                    f"{self._metrics(trainer, module)}".rstrip(": "))

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        val = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        text = " ".join(f"{k}={float(v):.4g}" for k, v in val.items())
        self._write(f"validation at step {trainer.global_step}: {text}".rstrip(": "))
