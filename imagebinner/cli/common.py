"""Build argparse options from a tool's params (flags mirror param names, help from param docs) and show progress."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Iterator

import param

from imagebinner.errors import ParameterError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_param_options(
    parser: argparse.ArgumentParser,
    cls: type[param.Parameterized],
    names: Iterable[str],
    required: Iterable[str] = (),
) -> None:
    """Add one ``--flag`` per param; help text, type, choices and default come from the param itself."""
    required = set(required)
    for name in names:
        p = cls.param[name]
        kwargs: dict = {"dest": name, "help": _help(p)}
        if isinstance(p, param.Boolean):
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = p.default
        else:
            if isinstance(p, param.Selector) and not isinstance(p, param.ListSelector):
                kwargs["choices"] = [o for o in p.objects if o is not None]  # None = "not given"
            elif isinstance(p, param.Integer):
                kwargs["type"] = int
            elif isinstance(p, param.Number):
                kwargs["type"] = float
            kwargs["default"] = None  # None = keep the param's default (shown in help)
            if name in required:
                kwargs["required"] = True
        parser.add_argument(flag(name), **kwargs)


def _help(p: param.Parameter) -> str:
    doc = (p.doc or "").strip().replace("%", "%%")
    if p.default is not None and not isinstance(p, param.Boolean):
        doc += f" (default: {p.default})"
    return doc


def param_values(args: argparse.Namespace, names: Iterable[str]) -> dict:
    """Values given on the command line (None = not given, so the param default stays)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def make_tool(cls: type[param.Parameterized], **values):
    """Construct a tool, turning param's bound/type ValueErrors into a one-line ParameterError."""
    try:
        return cls(**values)
    except ValueError as exc:
        raise ParameterError(_param_message(exc)) from None


def _param_message(exc: Exception) -> str:
    return str(exc).split("\n")[0]


@contextlib.contextmanager
def progress_bar(task: param.Parameterized, desc: str) -> Iterator[None]:
    """Mirror a tool's ``progress``/``n_steps`` params in a tqdm bar on stderr."""
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in logs and pipes
    bar = tqdm(total=task.n_steps, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=None)

    def update(*events) -> None:
        if bar.total != task.n_steps:
            bar.total = task.n_steps
            bar.refresh()
        if task.progress < bar.n:  # a new job started
            bar.reset(total=task.n_steps)
        bar.update(task.progress - bar.n)  # honours tqdm's mininterval: no redraw per step

    watcher = task.param.watch(update, ["progress", "n_steps"])
    try:
        yield
    finally:
        task.param.unwatch(watcher)
        bar.close()
