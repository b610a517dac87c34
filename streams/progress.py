"""Progress of long CLI work: a rich progress bar on a terminal, plain lines otherwise.

Logs and CI read the plain lines; a bar redrawn in place would be noise there.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def progress(console: Console, description: str, total: int, steps: int = 10) -> Iterator[Callable[[int], None]]:
    """Yield ``update(done)``; without a terminal, one line per tenth of ``total`` (and the end).

    >>> import io
    >>> console = Console(file=io.StringIO(), force_terminal=False)
    >>> with progress(console, "published", 100, steps=4) as update:
    ...     for done in [*range(0, 101, 10), 100]:
    ...         update(done)
    >>> print(console.file.getvalue(), end="")
    published 30/100
    published 50/100
    published 80/100
    published 100/100
    """
    if console.is_terminal:
        with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)
        return
    step = max(1, total // steps)
    state = {"next": step, "printed": None}

    def update(done: int) -> None:
        if (done >= state["next"] or done >= total) and done != state["printed"]:
            console.print(f"{description} {done}/{total}")
            state["printed"] = done
            while state["next"] <= done:
                state["next"] += step

    yield update
