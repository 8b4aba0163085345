"""Widgets generated from tool params: bounded number boxes, path lists checked on the server, status text that wraps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import panel as pn
import param

from imagebinner.apps.jobs import notify
from imagebinner.apps.paths import check_path
from imagebinner.errors import ImageBinnerError

AUTO_LABEL = "auto"  # the entry of an optional choice left to the tool (the param's None)


class OptionalSelect(pn.widgets.Select):
    """A Select whose options include ``None`` (shown as its label): Panel drops a ``None`` value before it reaches
    the browser, which then shows a blank box instead of the ``auto`` entry."""

    def _process_param_change(self, params: dict[str, Any]) -> dict[str, Any]:
        props = super()._process_param_change(params)
        if self.value is None and None in self.values and ("value" in params or "options" in params):
            props["value"] = str(None)  # the option key of None (options are sent as (str(value), label))
        return props


def bounds_of(p: param.Number) -> dict:
    """The bounds rule of a number param as plain data (a param object given to a widget would be a reference)."""
    return {"bounds": tuple(p.bounds or (None, None)), "inclusive_bounds": tuple(getattr(p, "inclusive_bounds",
            (True, True))), "allow_None": bool(p.allow_None)}


def bounds_text(p: param.Number | dict) -> str:
    """The allowed values of a number param in a few characters: ``≥ 1``, ``> 0``, ``1–64``, ``> 0 and ≤ 10000``."""
    rule = p if isinstance(p, dict) else bounds_of(p)
    (low, high), (low_in, high_in) = rule["bounds"], rule["inclusive_bounds"]
    if low is not None and high is not None and low_in and high_in:
        return f"{low:g}–{high:g}"
    parts = ([f"{'≥' if low_in else '>'} {low:g}"] if low is not None else []) + \
            ([f"{'≤' if high_in else '<'} {high:g}"] if high is not None else [])
    return " and ".join(parts)


def out_of_bounds(p: param.Number | dict, value: Any) -> str | None:
    """Why ``value`` is refused by the number param ``p`` (or its :func:`bounds_of`); None: accepted. One line."""
    rule = p if isinstance(p, dict) else bounds_of(p)
    if value is None:
        return None if rule["allow_None"] else "a value is required"
    (low, high), (low_in, high_in) = rule["bounds"], rule["inclusive_bounds"]
    if (low is not None and (value < low or (value == low and not low_in))) or \
            (high is not None and (value > high or (value == high and not high_in))):
        return f"must be {bounds_text(rule)}"
    return None


def bounds_css(text: str) -> str:
    """A stylesheet showing ``text`` (the bounds) after a widget's label, e.g. "Bin size  ≥ 1" (the label itself, used
    in messages and by tests, stays the param's label)."""
    text = text.replace("\\", "").replace('"', "")
    return f'label::after {{ content: "  {text}"; opacity: 0.6; font-weight: normal; }}' if text else ""


class _BoundedInput:
    """A number box that refuses out-of-bounds values at the widget: the box goes back to the kept value and an error
    notification names the bounds (the browser does not clamp silently: the bounds are not sent as low/high; they are
    shown after the label, :func:`bounds_css`)."""

    _rename = {"start": None, "end": None, "bounded": None, "what": None}

    def _process_property_change(self, props: dict[str, Any]) -> dict[str, Any]:
        params = super()._process_property_change(props)
        typed = params.get("value", params.get("value_throttled"))  # (throttled: only the latter arrives)
        if ("value" in params or "value_throttled" in params) and self.bounded is not None:
            problem = out_of_bounds(self.bounded, typed)
            if problem:
                params.pop("value", None)
                params.pop("value_throttled", None)
                notify("error", f"{self.what}: {typed} refused, {problem} (kept {self.value})")
                self.param.trigger("value")  # the box shows the kept value again
        return params


class BoundedIntInput(_BoundedInput, pn.widgets.IntInput):
    """An :class:`~panel.widgets.IntInput` refusing values outside ``bounded``'s bounds (with a notification)."""

    bounded = param.Dict(default=None, allow_None=True, doc="The bounds that apply (:func:`bounds_of`).")
    what = param.String(default="value", doc="Named in the refusal.")
    _rename = {**pn.widgets.IntInput._rename, **_BoundedInput._rename}


class BoundedFloatInput(_BoundedInput, pn.widgets.FloatInput):
    """A :class:`~panel.widgets.FloatInput` refusing values outside ``bounded``'s bounds (with a notification)."""

    bounded = param.Dict(default=None, allow_None=True, doc="The bounds that apply (:func:`bounds_of`).")
    what = param.String(default="value", doc="Named in the refusal.")
    _rename = {**pn.widgets.FloatInput._rename, **_BoundedInput._rename}


#: status text wraps (long paths, long messages) instead of running off the panel
WRAP_CSS = ":host pre, pre { white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word; }"


def status_pane(value: Any, **options: Any) -> pn.pane.Str:
    """A status line (e.g. ``status_pane(tool.param.status)``) whose text wraps at the panel's width."""
    return pn.pane.Str(value, **{"sizing_mode": "stretch_width", "stylesheets": [WRAP_CSS], **options})


#: separates the parts of one item of a list of tuples in :class:`PathListInput` ("movie | localizations")
ITEM_SEPARATOR = " | "


class PathListInput(pn.widgets.TextAreaInput):
    """A list param edited as text, one item per line; items of several paths (pairs) as ``a | b``.

    The ``value`` is the list itself (``pn.Param`` keeps it in sync with the param both ways). Every path typed in the
    browser is checked on the server (:func:`check_path`, ``$IMAGEBINNER_ROOT`` included) before the list changes: an
    edit with a bad line changes nothing, marks the label "(invalid)" and shows the error. Items given from Python
    that are not paths (e.g. a ``LocTable``) are shown as ``<LocTable>`` and kept while their line is unchanged.
    """

    value = param.List(default=[], doc="The items: paths, or tuples of paths (one per entry of ``columns``).")
    columns = param.List(default=["path"], item_type=str,
                         doc="What each part of an item is (named in messages); two or more = tuples (``a | b``).")
    must_exist = param.Boolean(default=True, doc="Check that every path exists (inputs).")

    _rename = {**pn.widgets.TextAreaInput._rename, "columns": None, "must_exist": None}

    def __init__(self, **params: Any):
        params.setdefault("placeholder", ITEM_SEPARATOR.join(f"/path/{c.replace(' ', '_')}" for c in
                                                             params.get("columns", ["path"])) + "   (one per line)")
        super().__init__(**params)
        self._label = self.label or ""

    def _part_text(self, part: Any) -> str:
        return str(part) if isinstance(part, (str, Path)) else f"<{type(part).__name__}>"

    def item_text(self, item: Any) -> str:
        """One item as its line."""
        if len(self.columns) == 1:
            return self._part_text(item)
        return ITEM_SEPARATOR.join(self._part_text(part) for part in item)

    def text(self, items: list | None = None) -> str:
        """The text shown for a list of items (default: the current value)."""
        return "\n".join(self.item_text(item) for item in (self.value if items is None else items))

    def parse(self, text: str) -> list:
        """The items of a text, every path checked on the server; raises :class:`ImageBinnerError` naming the line."""
        known = {self.item_text(item): item for item in self.value}
        items = []
        for number, line in enumerate((text or "").splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            parts = [part.strip() for part in line.split("|")] if len(self.columns) > 1 else [line]
            if line in known:  # unchanged: the item as it was given (objects from Python included)
                item = known[line]
            elif len(parts) != len(self.columns) or not all(parts):
                raise ImageBinnerError(f"line {number}: give {len(self.columns)} paths separated by "
                                       f"'{ITEM_SEPARATOR.strip()}' ({', '.join(self.columns)})")
            else:
                item = parts[0] if len(parts) == 1 else tuple(parts)
            try:  # every path checked and replaced by the resolved path inside the root (what the tool opens)
                parts = [str(check_path(str(part), what, kind="file" if self.must_exist else "any",
                                        must_exist=self.must_exist)) if isinstance(part, (str, Path)) else part
                         for part, what in zip([item] if len(self.columns) == 1 else item, self.columns)]
            except ImageBinnerError as exc:
                raise ImageBinnerError(f"line {number}: {exc}") from None
            items.append(parts[0] if len(self.columns) == 1 else tuple(parts))
        return items

    def _process_property_change(self, props: dict[str, Any]) -> dict[str, Any]:
        params = super()._process_property_change(props)
        if "value" in params:
            try:
                params["value"] = self.parse(params["value"])
                self.label = self._label
            except ImageBinnerError as exc:
                params.pop("value")  # the list stays as it was; the text keeps the edit for the user to fix
                self.label = f"{self._label} (invalid)"
                notify("error", f"{self._label or 'list'}: {exc}")
        return params

    def _process_param_change(self, params: dict[str, Any]) -> dict[str, Any]:
        if "value" in params:
            params = {**params, "value": self.text(params["value"])}
        if "label" in params and "(invalid)" not in (params["label"] or ""):
            self._label = params["label"] or ""
        return super()._process_param_change(params)


def tool_widgets(obj: param.Parameterized, parameters: list[str] | tuple[str, ...], widgets: dict | None = None,
                 text: tuple[str, ...] = (), labels: dict[str, str] | None = None, **options: Any) -> pn.Param:
    """Widgets generated from a tool's params, in the given order (label, tooltip and bounds from the params).

    ``text`` params as text inputs, optional (None-able) numbers as input boxes, optional choices with an ``auto``
    entry (not given), list params as a :class:`PathListInput` (one path per line, checked on the server; pass
    ``widgets={name: {"columns": ["movie", "localizations"]}}`` for a list of pairs), events as buttons (the last one
    primary); ``labels`` replaces the label of some params; ``options`` go to ``pn.Param`` (e.g.
    ``default_layout=pn.Row``)."""
    parameters = list(parameters)
    spec: dict = {}
    for name in parameters:
        p = obj.param[name]
        if isinstance(p, param.List):
            spec[name] = {"type": PathListInput, "columns": [p.label.lower()], "height": 100}
        elif name in text or (isinstance(p, param.String) and not isinstance(p, param.Selector)):
            spec[name] = {"type": pn.widgets.TextInput, "placeholder": (p.doc or "").split(";")[0][:80]}
        elif isinstance(p, param.Number) and (p.allow_None or None in (p.get_soft_bounds() or (None, None))):
            # optional numbers ("empty = from the metadata") and numbers open on one side: an input box (not a
            # slider) that refuses out-of-bounds values with a notification; the bounds are shown in its label
            spec[name] = {"type": BoundedIntInput if isinstance(p, param.Integer) else BoundedFloatInput,
                          "bounded": bounds_of(p), "what": (labels or {}).get(name, p.label),
                          "stylesheets": [bounds_css(bounds_text(p))]}
        elif isinstance(p, param.Selector) and None in (p.objects or []):
            # a blank entry reads as "nothing chosen": name it (the tooltip says what "not given" means)
            choices = {AUTO_LABEL: None, **{str(o): o for o in p.objects if o is not None}}
            spec[name] = {"type": OptionalSelect, "options": choices}
        elif isinstance(p, param.Event):
            spec[name] = {"type": pn.widgets.Button, "color": "primary" if name == parameters[-1] else "default"}
        if name in (labels or {}):
            spec.setdefault(name, {})["name"] = labels[name]
    for name, extra in (widgets or {}).items():
        spec[name] = {**spec.get(name, {}), **extra}
    order = {name: k for k, name in enumerate(parameters)}
    if "default_layout" in options:  # the widgets directly in that layout (not wrapped in a Column)
        options.setdefault("expand_layout", options["default_layout"])
    return pn.Param(obj, parameters=parameters, widgets=spec, show_name=False,
                    **{"sizing_mode": "stretch_width", **options}, sort=lambda item: order.get(item[0], len(order)))


def param_widget(pane: pn.Param, name: str) -> pn.widgets.Widget:
    """The widget a ``pn.Param`` pane (e.g. from :func:`tool_widgets`) shows for the param ``name``."""
    shown = [p for p in pane.parameters if pane.object.param[p].precedence is None
             or pane.object.param[p].precedence >= pane.display_threshold]
    return dict(zip(shown, pane.layout))[name]  # the layout holds the widgets in the order of ``parameters``


def hv_pane(obj, **options) -> pn.pane.HoloViews | pn.pane.Bokeh:
    """A plot's pane: a HoloViews pane whose axes are not linked to other plots of the page (frames of different
    sizes), or a Bokeh pane for a figure made directly in Bokeh (the frame plots of :mod:`~imagebinner.views`)."""
    from bokeh.models import LayoutDOM

    if isinstance(obj, LayoutDOM):
        return pn.pane.Bokeh(obj, **options)
    return pn.pane.HoloViews(obj, linked_axes=False, **options)


def rebuilt_on(parameter, make_plot, stretch: bool = True, **options):
    """A HoloViews pane rebuilt from ``make_plot()`` whenever ``parameter`` changes (new data, new ranges);
    ``stretch=False`` for plots that size themselves (fixed frame height, width from the data aspect)."""
    return pn.panel(pn.bind(lambda _value: hv_pane(make_plot(), **options), parameter),
                    **({"sizing_mode": "stretch_width"} if stretch else {}))


def lazy_card(make_objects, **card_params) -> pn.Card:
    """A collapsed card whose content is built when it is first opened (a page session renders nothing it does not
    show: the file browser and the re-localization settings cost a tenth of a review page's models)."""
    card = pn.Card(collapsed=True, **card_params)

    def opened(event) -> None:
        if not event.new and not card.objects:
            card.objects = list(make_objects())

    card.param.watch(opened, "collapsed")
    return card
