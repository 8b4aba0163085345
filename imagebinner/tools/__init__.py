"""Tool classes: pure logic as ``param.Parameterized`` objects (no panel/holoviews imports below this line)."""
