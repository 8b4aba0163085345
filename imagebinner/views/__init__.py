"""HoloViews views built from io objects and tool objects (no widgets here; apps/ adds Panel)."""
