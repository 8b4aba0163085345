"""Base class of every tool: progress and status reported through constant params, no GUI code."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import param


class Task(param.Parameterized):
    """A tool that runs headless and reports progress through params (the GUI and the CLI watch them)."""

    progress = param.Integer(default=0, bounds=(0, None), constant=True, doc="Steps done of the current job.")
    n_steps = param.Integer(default=1, bounds=(1, None), constant=True, doc="Steps of the current job.")
    running = param.Boolean(default=False, constant=True, doc="True while a job runs.")
    status = param.String(default="", constant=True, doc="One-line status of the last job (or its error).")

    def _update(self, **values) -> None:
        """Set constant (output) params."""
        with param.edit_constant(self):
            self.param.update(**values)

    def _advance(self, steps: int = 1) -> None:
        with param.edit_constant(self):
            self.progress = min(self.progress + steps, self.n_steps)

    @contextlib.contextmanager
    def _job(self, n_steps: int, status: str = "") -> Iterator[None]:
        """Mark a job as running with ``n_steps`` steps; records the error as status when it fails."""
        self._update(running=True, progress=0, n_steps=max(int(n_steps), 1), status=status)
        try:
            yield
        except Exception as exc:
            self._update(status=f"error: {exc}")
            raise
        finally:
            self._update(running=False)
