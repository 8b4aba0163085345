"""Shared pieces of the Panel apps, in one import: paths (confinement), jobs and notifications, generated widgets."""

from __future__ import annotations

from imagebinner.apps.jobs import (
    DURATIONS_MS,
    Job,
    configure_notifications,
    in_session,
    notify,
    warnings_as_notifications,
)
from imagebinner.apps.paths import (
    DATA_ENV,
    ROOT_ENV,
    PathPicker,
    RootedFileSelector,
    browse_root,
    check_path,
    data_folder,
    data_root,
    find_measurement_pairs,
    inside_root,
    session_arg,
)
from imagebinner.apps.widgets import (
    AUTO_LABEL,
    ITEM_SEPARATOR,
    BoundedFloatInput,
    BoundedIntInput,
    OptionalSelect,
    PathListInput,
    bounds_text,
    hv_pane,
    lazy_card,
    out_of_bounds,
    param_widget,
    rebuilt_on,
    status_pane,
    tool_widgets,
)

__all__ = [
    "AUTO_LABEL", "BoundedFloatInput", "BoundedIntInput", "DATA_ENV", "DURATIONS_MS", "ITEM_SEPARATOR", "ROOT_ENV", "Job", "OptionalSelect", "PathListInput",
    "PathPicker", "RootedFileSelector", "browse_root", "check_path", "configure_notifications", "data_folder",
    "data_root", "find_measurement_pairs", "hv_pane", "in_session", "inside_root", "lazy_card", "notify", "param_widget",
    "rebuilt_on", "session_arg", "warnings_as_notifications", "status_pane", "tool_widgets", "bounds_text", "out_of_bounds",
]

from imagebinner.apps.offline import local_stylesheets  # noqa: E402

local_stylesheets()  # every app, served or in a notebook: no component stylesheet linked from Panel's CDN
