"""Progress of training and rendering as the CLI shows it: lines without a terminal, a bar on one."""

import io

from rich.console import Console

from generation.training import TrainingProgress
from service.cli.progress import WorkProgress


def test_without_a_terminal_one_line_per_percent():
    output = io.StringIO()
    with WorkProgress(Console(file=output, width=80)) as progress:
        for step in range(1, 301):
            progress.training(TrainingProgress(step, 300, 0.1234 if step % 10 == 0 else None, (300 - step) * 0.5))
        progress.rendering(0, 8)
        progress.rendering(4, 8)
        progress.rendering(8, 8)
    lines = output.getvalue().splitlines()
    training = [line for line in lines if line.startswith("training")]
    assert len(training) == 101  # steps 1 (0%), 3 (1%), 6, ... 300: one line per percent
    assert training[0] == "training step 1/300 (0%), about 2 min left"  # 149.5 s
    assert training[-1] == "training step 300/300 (100%), loss 0.1234"
    assert [line.split(",")[0] for line in lines if line.startswith("rendering")] == [
        "rendering image 0/8 (0%)",
        "rendering image 4/8 (50%)",
        "rendering image 8/8 (100%)",
    ]
    assert "left" in lines[-2] and "left" not in lines[-1]


def test_on_a_terminal_a_bar_that_keeps_the_last_loss():
    output = io.StringIO()
    with WorkProgress(Console(file=output, width=100, force_terminal=True)) as progress:
        progress.training(TrainingProgress(1, 4, 0.5, 3.0))
        progress.training(TrainingProgress(2, 4, None, 2.0))
        task = progress.bar.tasks[0]
        assert (task.completed, task.total, task.description) == (2, 4, "training, loss 0.5000")
        assert task.fields["left"] == "about 2 s left"
    assert not progress.bar.live.is_started  # stopped on leaving
