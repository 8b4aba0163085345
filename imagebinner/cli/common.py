"""Build argparse options from a tool's declared params (flags mirror param names, help from param docs), show
progress, and turn param names in messages into flags."""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterable, Iterator

import param

from imagebinner.errors import ParameterError


def flag(name: str) -> str:
    """The command-line flag of a param: ``patch_size`` -> ``--patch-size``."""
    return "--" + name.replace("_", "-")


def with_flags(message: str, flags: dict[str, str], named: Iterable[str] = ()) -> str:
    """``message`` with param names written as the command's flags (``flags``: param name -> flag) for the command
    line: names with an underscore wherever they stand as whole words; single-word names only where the error lists
    them (``named``), and only their first occurrence (``at`` in "at must be at least 1")."""
    named = set(named)
    for name in sorted(flags, key=len, reverse=True):
        if "_" in name or name in named:
            pattern = rf"(?<![\w-]){re.escape(name)}(?![\w-])"
            message = re.sub(pattern, flags[name], message, count=0 if "_" in name else 1)
    return message


def command_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Param name -> the flag that sets it in one (sub)command's parser (the long form; ``-o`` for the output)."""
    out: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.option_strings and action.dest not in ("help", "version"):
            longs = [o for o in action.option_strings if o.startswith("--")]
            out[action.dest] = "-o" if "-o" in action.option_strings else (longs or action.option_strings)[0]
            if isinstance(action, argparse.BooleanOptionalAction):
                out[action.dest] = longs[0]
    return out


def add_tool_options(
    parser: argparse.ArgumentParser,
    cls: type,
    positional: Iterable[str] = (),
    skip: Iterable[str] = (),
    required: Iterable[str] = (),
) -> list[str]:
    """Add a tool's declared params (``cls.user_params()``) to ``parser``; returns the names added.

    ``positional`` params become positional arguments (metavar = the upper-cased name), the output location
    (``cls.output_location()``) becomes ``-o/--output``, every other one ``--flag``; ``skip`` leaves some out (a
    command that builds them from other arguments).
    """
    positional, skip = list(positional), set(skip)
    names = [n for n in cls.user_params() if n not in skip]
    for name in positional:
        parser.add_argument(name, metavar=name.upper(), help=_help(cls.param[name], with_default=False))
    output = cls.output_location()
    options = [n for n in names if n not in positional]
    if output in options:
        p = cls.param[output]
        metavar = "OUTDIR" if "folder" in output else "OUT"
        parser.add_argument("-o", "--output", dest=output, metavar=metavar, default=None,
                            required=output in set(required), help=_help(p))
        options.remove(output)
    add_param_options(parser, cls, options, required=required)
    return names


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


def _help(p: param.Parameter, with_default: bool = True) -> str:
    doc = (p.doc or "").strip().replace("%", "%%")
    if with_default and p.default not in (None, "") and not isinstance(p, param.Boolean):
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
        text = str(exc).split("\n")[0]
        named = re.match(r"^\w+ parameter '\w+\.(\w+)' (.*)$", text)  # param's "Integer parameter 'Binner.x' ..."
        if named:
            raise ParameterError(f"{named[1]} {named[2]}", params=[named[1]]) from None
        raise ParameterError(text) from None


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
