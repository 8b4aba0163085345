"""Browser tests in headless Chromium: the apps served in-process, real clicks, Python-side state checked."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")
hv = pytest.importorskip("holoviews")

from panel.tests.util import serve_component, wait_until  # noqa: E402

from imagebinner.apps.binner import BinnerApp  # noqa: E402
from browser import console_errors  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("panel_page")]
TIMEOUT = 20_000  # ms, for every wait

from imagebinner.apps.pages import extensions  # noqa: E402

extensions()  # as `imagebinner serve`: notifications, Bokeh, nothing fetched from off the machine (each file alone too)




def _pairs(demo) -> list[tuple[str, str]]:
    return [(str(m.movie), str(m.locs)) for m in demo.measurements]


def test_binner_opens_on_query_paths_and_player_next_changes_the_frame(page, ui_demo, tmp_path):
    apps: list[BinnerApp] = []

    def session() -> BinnerApp:  # one app per browser session, built from the page's query parameters
        apps.append(BinnerApp())
        return apps[-1]

    query = urlencode([(key, value) for movie, locs in _pairs(ui_demo) for key, value in
                       (("movie", movie), ("locs", locs))])
    msgs, _ = serve_component(page, session, suffix=f"?{query}")
    page.locator("canvas").first.wait_for(state="attached")
    (app,) = apps
    assert [str(m.movie_path) for m in app.view.measurements] == [m for m, _ in _pairs(ui_demo)]
    assert app.view.frame == 0
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == 1, page, timeout=TIMEOUT)
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == 2, page, timeout=TIMEOUT)
    # the crosses shown are frame 2's localizations
    rows = slice(int(app.view.measurements[0].offsets[2]), int(app.view.measurements[0].offsets[3]))
    assert len(app.view.input_points()) == rows.stop - rows.start
    page.screenshot(path=str(tmp_path / "binner_player.png"))
    assert not console_errors(msgs)


def test_binner_run_button_writes_the_outputs(page, ui_demo, tmp_path):
    out = tmp_path / "out"
    app = BinnerApp(measurements=_pairs(ui_demo), output_folder=str(out))
    app.binner.param.update(n_patches=30, n_binned=6, bin_size=3, seed=2)
    msgs, _ = serve_component(page, app)
    page.get_by_role("button", name="Run", exact=True).click()
    wait_until(lambda: (out / "binned.json").exists() and not app.job.busy, page, timeout=TIMEOUT)
    assert sorted(p.name for p in out.iterdir()) == ["binned.csv", "binned.json", "binned.tif"]
    wait_until(lambda: app.view.has_binned and app.binned_player.end == 5, page, timeout=TIMEOUT)
    page.locator("button.next").nth(1).click()
    wait_until(lambda: app.view.binned_frame == 1, page, timeout=TIMEOUT)
    page.screenshot(path=str(tmp_path / "binner_run.png"))
    assert not console_errors(msgs)


#: the ``end`` of the page's player titled ``title`` and the shapes of the images in the page (BokehJS models)
PLAYER_END_JS = """(title) => { for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.title === title && "end" in m) return m.end; return null; }"""
IMAGE_SHAPES_JS = """() => { const out = []; for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    const data = m.data instanceof Map ? Object.fromEntries(m.data) : m.data;
    if (data && data.image) for (const im of data.image) out.push(im.shape ? Array.from(im.shape) : [im.length]); }
    return out; }"""


def test_binner_typed_list_load_preview_and_stale_settings_in_the_page(page, ui_demo):
    """Measurements typed into the list, Load and Preview clicked: the page shows what the worker thread computed
    (player ends, binned images), and a changed setting replaces the stale binned frames by a hint."""
    app = BinnerApp(measurements=[])
    msgs, _ = serve_component(page, app)
    box = page.locator("textarea").first
    box.fill("\n".join(f"{movie} | {locs}" for movie, locs in _pairs(ui_demo)))
    box.blur()
    wait_until(lambda: len(app.binner.measurements) == 2, page, timeout=TIMEOUT)
    page.get_by_role("button", name="Load", exact=True).click()
    wait_until(lambda: len(app.view.measurements) == 2 and not app.job.busy, page, timeout=TIMEOUT)
    page.wait_for_function(f"() => ({PLAYER_END_JS})('Input frame') === 59")
    app.binner.param.update(n_patches=30, n_binned=7, bin_size=3, seed=2)
    page.get_by_text("The binned frames appear after Preview").wait_for()
    page.get_by_role("button", name="Preview", exact=True).click()
    wait_until(lambda: app.view.has_binned and not app.job.busy, page, timeout=TIMEOUT)
    assert app.binned_player.end == app.binner.n_binned - 1 == 6  # Python side
    page.wait_for_function(f"() => ({PLAYER_END_JS})('Binned frame') === 6")  # and in the page
    patch = [app.binner.patch_size] * 2
    page.wait_for_function(f"() => ({IMAGE_SHAPES_JS})().some(s => s[0] === {patch[0]} && s[1] === {patch[1]})")
    seed = page.locator(".bk-input-group:has(label:has-text('Seed')) input")
    seed.fill("5")
    seed.press("Enter")
    wait_until(lambda: app.binner.seed == 5 and app.binner.plan is None, page, timeout=TIMEOUT)
    page.get_by_text("The binned frames appear after Preview").wait_for()
    page.get_by_role("button", name="Preview", exact=True).click()
    wait_until(lambda: app.view.has_binned and not app.job.busy, page, timeout=TIMEOUT)
    page.get_by_text("The binned frames appear after Preview").wait_for(state="detached")
    page.wait_for_function(f"() => ({IMAGE_SHAPES_JS})().some(s => s[0] === {patch[0]} && s[1] === {patch[1]})")
    assert not console_errors(msgs)


def test_addons_split_tab_writes_both_parts_and_lists_them(page, ui_demo, tmp_path, monkeypatch):
    from imagebinner.apps.addons import AddonsApp, template
    from imagebinner.apps.common import ROOT_ENV
    from imagebinner.io import open_movie, read_locs

    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))  # the data root holds the demo and the outputs
    m1 = ui_demo.measurements[0]
    out = tmp_path / "split"
    app = AddonsApp(measurements=[])
    msgs, _ = serve_component(page, lambda: template(app))
    page.get_by_text("Run Convert").wait_for()
    page.get_by_text("Split", exact=True).click()
    split = app.panels["Split"]

    def fill(selector: str, value) -> None:
        box = page.locator(f"{selector}:visible")  # every tab is in the page: only the Split tab's are visible
        box.fill(str(value))
        box.press("Enter")

    fill("input[placeholder^='Movie (TIF']", m1.movie)
    fill("input[placeholder^='Localization file of that movie']", m1.locs)
    fill("input[placeholder^='Folder receiving the output files']", out)
    fill(".bk-input-group:has(label:has-text('Split at frame')) input", 25)
    wait_until(lambda: split.tool.at == 25 and split.tool.output_folder == str(out), page, timeout=TIMEOUT)
    page.get_by_role("button", name="Run Split").click()
    wait_until(lambda: (out / "movie_part2.tif").exists() and not split.job.busy, page, timeout=TIMEOUT)
    # the status line and the list of written files show the success on the page
    page.get_by_text("split movie.tif at frame 25").first.wait_for()
    page.get_by_text("6 file(s) written").wait_for()
    assert split.job.message.startswith("Split: split movie.tif at frame 25")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"movie_part{i}{ext}" for i in (1, 2) for ext in (".tif", ".hdf5", ".yaml"))
    with open_movie(out / "movie_part1.tif") as part1, open_movie(out / "movie_part2.tif") as part2:
        assert (part1.n_frames, part2.n_frames) == (25, 35)
    whole, second = read_locs(m1.locs), read_locs(out / "movie_part2.hdf5")
    assert len(second) == int((whole.frame >= 25).sum()) and second.frame.min() >= 0
    assert split.tool.progress == split.tool.n_steps
    page.screenshot(path=str(tmp_path / "addons_split.png"), full_page=True)
    print(tmp_path / "addons_split.png")
    assert not console_errors(msgs)
