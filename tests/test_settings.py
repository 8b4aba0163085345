"""Each setting is declared once: every command offers exactly its tool's declared params, with their docs."""

from __future__ import annotations

import argparse

import param
import pytest

from imagebinner.cli import build_parser
from imagebinner.cli.common import add_tool_options, command_flags
from imagebinner.tools.addons import Explode, Merge, Split
from imagebinner.tools.binner import Binner
from imagebinner.tools.convert import Convert
from imagebinner.tools.predict import Predict
from imagebinner.tools.review import PredictionReview

# command -> (tool, flags of the command's own (repeated --movie/--locs pairs, --json output), params they stand for)
COMMANDS = {
    "bin": (Binner, {"movie", "locs"}, {"measurements"}),
    "convert": (Convert, set(), set()),
    "split": (Split, set(), set()),
    "merge": (Merge, set(), set()),
    "explode": (Explode, set(), set()),
    "review": (PredictionReview, {"json"}, set()),
    "predict": (Predict, set(), set()),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_offers_exactly_the_declared_params(command):
    tool, extra, replaced = COMMANDS[command]
    sub = _subparser(command)
    positional = {a.dest for a in sub._actions if not a.option_strings}
    flags = set(command_flags(sub))
    declared = set(tool.user_params()) - replaced
    assert declared <= flags | positional, f"declared but not offered: {declared - flags - positional}"
    assert flags - extra <= declared, f"offered but not declared: {flags - declared - extra}"
    assert command_flags(sub)[tool.output_location()] == "-o"  # -o is the output location in every command
    for action in sub._actions:
        if action.dest in declared:
            doc = " ".join(tool.param[action.dest].doc.split())
            assert doc[:40].replace("%", "%%") in " ".join(action.help.split()), action.dest


def test_one_edit_of_a_declaration_reaches_cli_gui_and_provenance():
    """A new setting declared in one place appears as a flag with its doc, as a widget with its bounds, and in the
    provenance record."""
    pn = pytest.importorskip("panel")
    from imagebinner.apps.common import param_widget, tool_widgets

    class TunedBinner(Binner):
        jitter = param.Integer(default=3, bounds=(0, 9), doc="Random jitter of the patches, in pixels.")
        settings = (*Binner.settings, "jitter")

    parser = argparse.ArgumentParser()
    add_tool_options(parser, TunedBinner, skip=("measurements",))
    help_text = " ".join(parser.format_help().split())
    assert "--jitter JITTER Random jitter of the patches, in pixels. (default: 3)" in help_text
    assert parser.parse_args(["--jitter", "5"]).jitter == 5

    tool = TunedBinner(jitter=4)
    widget = param_widget(tool_widgets(tool, TunedBinner.settings), "jitter")
    assert isinstance(widget, pn.widgets.IntSlider) and (widget.start, widget.end, widget.value) == (0, 9, 4)
    widget.value = 7
    assert tool.jitter == 7 and tool.settings_record()["jitter"] == 7


def test_predict_and_relocalization_share_the_maxima_settings():
    """neighborhood_size and local_average are declared once (MaximaSettings) for predict, re-localization and the
    review; predict's movies are its positional MOVIE arguments."""
    from imagebinner.tools.relocalize import MaximaSettings, Relocalize

    for tool in (Predict, Relocalize, PredictionReview):
        for name in ("neighborhood_size", "local_average"):
            assert name in tool.user_params() and tool.param[name].doc == MaximaSettings.param[name].doc
    sub = _subparser("predict")
    args = sub.parse_args(["model", "a.tif", "b.tif", "-o", "out", "--neighborhood-size", "5", "--no-local-average"])
    assert (args.model_folder, args.movies, args.output_folder) == ("model", ["a.tif", "b.tif"], "out")
    assert (args.neighborhood_size, args.local_average) == (5, False)
