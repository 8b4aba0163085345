"""Base class of every tool: settings declared once, progress and status as constant params, actions as events."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import param


_publishing = threading.local()


@contextlib.contextmanager
def results_published_by(publish: Callable[[Callable[[], None]], None]) -> Iterator[None]:
    """In this thread, within the block, tools hand every change of their results, progress and status to
    ``publish(apply)`` instead of making it at once: an app running a tool in a worker thread applies them in its
    page's own thread (where the views that depend on them are updated), never beside it."""
    previous, _publishing.publish = getattr(_publishing, "publish", None), publish
    try:
        yield
    finally:
        _publishing.publish = previous


def first_paragraph(obj: Any) -> str:
    """The first paragraph of an object's docstring, on one line (CLI descriptions, GUI headers)."""
    doc = (getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in doc.splitlines())


def jsonable(value: Any) -> Any:
    """Plain Python (JSON-ready) values from numpy scalars/arrays, paths, tuples and dicts, recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


class Task(param.Parameterized):
    """A tool that runs headless and reports progress through params (the GUI and the CLI watch them).

    A tool declares its user-facing params once, by name, in three class-level groups; the CLI options, the GUI
    widgets and the provenance record are all derived from them:

    * ``inputs``: the files (or data) it reads;
    * ``settings``: the values that shape the result (recorded in provenance, in this order in the GUI and help);
    * ``outputs``: where and how it writes; ``outputs[0]`` is the output location (``-o`` on the command line).

    ``actions`` maps ``param.Event`` params (buttons in the GUI) to the method they run. Triggering one runs the
    method through :attr:`executor`: at once by default (scripts, notebooks), in a worker thread in the apps.
    """

    inputs: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    actions: ClassVar[dict[str, str]] = {}

    progress = param.Integer(default=0, bounds=(0, None), constant=True, doc="Steps done of the current job.")
    n_steps = param.Integer(default=1, bounds=(1, None), constant=True, doc="Steps of the current job.")
    running = param.Boolean(default=False, constant=True, doc="True while a job runs.")
    status = param.String(default="", constant=True, doc="One-line status of the last job (or its error).")

    def __init__(self, **params: Any):
        super().__init__(**params)
        #: runs an action: ``executor(label, work)``; None = call ``work()`` at once (the apps set a thread runner)
        self.executor: Callable[[str, Callable[[], Any]], None] | None = None
        for event_name in self.actions:
            self.param.watch(self._on_action, event_name)

    # -- declarations -----------------------------------------------------------------------------------------
    @classmethod
    def user_params(cls) -> tuple[str, ...]:
        """Every user-facing param: inputs, settings, outputs (in that order)."""
        return (*cls.inputs, *cls.settings, *cls.outputs)

    @classmethod
    def output_location(cls) -> str | None:
        """The param naming where the tool writes (``-o`` on the command line), or None."""
        return cls.outputs[0] if cls.outputs else None

    @classmethod
    def description(cls) -> str:
        """One-line description of the tool (first paragraph of its docstring)."""
        return first_paragraph(cls)

    def settings_record(self) -> dict[str, Any]:
        """The current values of the settings, JSON-ready (for provenance records)."""
        return {name: jsonable(getattr(self, name)) for name in self.settings}

    # -- actions ----------------------------------------------------------------------------------------------
    def _on_action(self, event: param.parameterized.Event) -> None:
        method = getattr(self, self.actions[event.name])
        label = self.param[event.name].label or event.name
        if self.executor is None:
            method()
        else:
            self.executor(label, method)

    # -- results and progress ---------------------------------------------------------------------------------
    def _update(self, **values: Any) -> None:
        """Set constant (output) params, unlocking only those for the moment; in a thread publishing results
        (:func:`results_published_by`) through its publisher."""

        def apply() -> None:
            params = [self.param[name] for name in values]
            constant = [p.constant for p in params]
            for p in params:
                p.constant = False
            try:
                self.param.update(**values)
            finally:
                for p, was in zip(params, constant):
                    p.constant = was

        publish = getattr(_publishing, "publish", None)
        if publish is None:
            apply()
        else:
            publish(apply)

    def _advance(self, steps: int = 1) -> None:
        self._update(progress=min(self.progress + steps, self.n_steps))

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
