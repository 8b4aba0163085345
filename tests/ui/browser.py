"""Browser-test helpers shared by the tests/ui modules."""

from __future__ import annotations


def console_errors(msgs) -> list[str]:
    """Browser console errors, ignoring only a missing favicon (pages load nothing from off the machine)."""
    return [m.text for m in msgs if m.type == "error" and "favicon" not in m.text]
