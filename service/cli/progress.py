"""Progress of long work (training, rendering): a rich bar on a terminal, plain lines anywhere else.

Without a terminal (a log file, CI, a pipe) a bar draws nothing useful, so each step is one line instead, at
most one per percent: `training step 120/300 (40%), loss 0.1132, about 95 s left`.
"""

import time

from rich.console import Console


class WorkProgress:
    """`training(progress)` and `rendering(done, total)` callbacks for generation, shown on `console`."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = None  # the rich Progress, started at the first update (anything printed before stays above it)
        self.tasks: dict[str, int] = {}
        self.printed_percent: dict[str, int] = {}
        self.details: dict[str, str] = {}
        self.render_started: float | None = None

    def __enter__(self) -> "WorkProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def training(self, progress) -> None:
        """After each training step (a `generation.training.TrainingProgress`)."""
        loss = f", loss {progress.loss:.4f}" if progress.loss is not None else ""
        self._show("training", progress.step, progress.total, progress.eta_seconds, loss, unit="step")

    def rendering(self, done: int, total: int) -> None:
        """Before the first image (done = 0) and after each batch of images."""
        now = time.monotonic()
        if done == 0 or self.render_started is None:
            self.render_started = now
        eta = (now - self.render_started) / done * (total - done) if done else None
        self._show("rendering", done, total, eta, "", unit="image")

    def _show(self, name: str, done: int, total: int, eta: float | None, detail: str, unit: str) -> None:
        if self.console.is_terminal:
            self._bar_update(name, done, total, eta, detail)
            return
        percent = 100 * done // total
        if self.printed_percent.get(name) == percent and done != total:
            return
        self.printed_percent[name] = percent
        left = f", about {_duration(eta)} left" if done < total and eta is not None else ""
        self.console.print(
            f"{name} {unit} {done}/{total} ({percent}%){detail}{left}", highlight=False, markup=False, soft_wrap=True
        )

    def _bar_update(self, name: str, done: int, total: int, eta: float | None, detail: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self.bar is None:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[left]}"),
                console=self.console,
                transient=True,
            )
            self.bar.start()
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total, left="")
        left = "done" if done == total else f"about {_duration(eta)} left" if eta is not None else ""
        self.details[name] = detail or self.details.get(name, "")  # the loss is read back every few steps only
        self.bar.update(self.tasks[name], completed=done, total=total, description=name + self.details[name], left=left)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
