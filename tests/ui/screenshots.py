"""Take the documentation screenshots of the dashboards (headless Chromium, simulated demo data).

Usage: ``.venv/bin/python tests/ui/screenshots.py [docs/images [binner predict review addons]]`` (not a test; needs
/usr/bin/chromium); the optional page names take only those screenshots.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import panel as pn
from panel.tests.util import serve_and_wait, wait_until
from playwright.sync_api import sync_playwright

from imagebinner.apps.addons import AddonsApp
from imagebinner.apps.addons import template as addons_template
from imagebinner.apps.binner import BinnerApp
from imagebinner.apps.binner import template as binner_template
from imagebinner.apps.predict import PredictApp
from imagebinner.apps.predict import template as predict_template
from imagebinner.apps.review import ReviewApp
from imagebinner.apps.review import template as review_template
from imagebinner.io import read_locs
from imagebinner.simulate import make_demo
from imagebinner.simulate.prediction import make_prediction_folder

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGES = ("binner", "predict", "review", "addons")


def main(out_dir: Path, only: tuple[str, ...] = PAGES) -> None:
    from imagebinner.apps.pages import extensions

    extensions()  # as the served dashboards: notifications, throttled sliders, nothing from a CDN
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMAGEBINNER_ROOT"] = tmp  # every path of the pages lies in the data root
        demo = make_demo(Path(tmp) / "demo", seed=0)
        m1 = demo.measurements[0]
        make_prediction_folder(Path(tmp) / "demo" / "prediction", read_locs(m1.locs), m1.movie, upsampling=8, seed=0)
        pages = {}
        if "binner" in only:
            binner = BinnerApp(measurements=[(str(m.movie), str(m.locs)) for m in demo.measurements],
                               output_folder=str(Path(tmp) / "binned"))
            binner.binner.param.update(n_patches=200, n_binned=50, bin_size=10, seed=1)
            pages["binner"] = lambda: binner_template(binner)
        if "predict" in only:
            predict = PredictApp(model_folder=str(Path(tmp) / "demo" / "model"), movies=[str(m1.movie)],
                                 output_folder=str(Path(tmp) / "predicted"))
            predict.tool.max_frames = 8
            pages["predict"] = lambda: predict_template(predict)
        if "review" in only:
            review = ReviewApp(folder=str(Path(tmp) / "demo" / "prediction"), movie=str(m1.movie),
                               ground_truth=str(m1.locs))
            review.review.threshold = review.review.suggested_thresholds.get("jaccard") or 1.0
            pages["review"] = lambda: review_template(review)
        if "addons" in only:
            addons = AddonsApp()
            addons.panels["Split"].tool.param.update(movie=str(m1.movie), locs=str(m1.locs), at=100,
                                                     output_folder=str(Path(tmp) / "split"))
            pages["addons"] = lambda: addons_template(addons)
        port = serve_and_wait(pages)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.set_default_timeout(30_000)

            if "binner" in only:
                binner_page(page, port, binner, out_dir)
            if "predict" in only:
                predict_page(page, port, predict, out_dir)
            if "review" in only:
                review_page(page, port, review, out_dir)
            if "addons" in only:
                addons_page(page, port, out_dir)
            browser.close()
        pn.state.kill_all_servers()
    print(f"screenshots written to {out_dir}")


def binner_page(page, port: int, binner: BinnerApp, out_dir: Path) -> None:
    page.goto(f"http://localhost:{port}/binner")
    page.locator("canvas").first.wait_for(state="attached")
    page.get_by_role("button", name="Run", exact=True).click()
    wait_until(lambda: binner.job.message.startswith("wrote"), page, timeout=60_000)
    for _ in range(3):  # binned frame 3; the input player follows to the source frame of its part 0
        page.locator("button.next").nth(1).click()
        time.sleep(1)
    wait_until(lambda: binner.view.binned_frame == 3, page, timeout=10_000)
    time.sleep(3)
    page.screenshot(path=str(out_dir / "binner.png"), full_page=True)


def predict_page(page, port: int, predict: PredictApp, out_dir: Path) -> None:
    page.goto(f"http://localhost:{port}/predict")
    page.get_by_role("button", name="Run prediction").click()
    wait_until(lambda: bool(predict.tool.written), page, timeout=120_000)
    page.locator("canvas").first.wait_for(state="attached")
    time.sleep(4)
    page.screenshot(path=str(out_dir / "predict.png"), full_page=True)


def review_page(page, port: int, review: ReviewApp, out_dir: Path) -> None:
    page.goto(f"http://localhost:{port}/review")
    page.locator("canvas").first.wait_for(state="attached")
    for _ in range(12):
        page.locator("button.next").first.click()
    wait_until(lambda: review.view.frame == 12, page, timeout=10_000)
    time.sleep(4)
    page.screenshot(path=str(out_dir / "review.png"), full_page=True)
    page.locator(".bk-tab", has_text="Metrics").click()  # built when first shown
    page.get_by_text("Suggested thresholds").first.wait_for()
    time.sleep(3)
    page.get_by_text("Suggested thresholds").first.scroll_into_view_if_needed()
    time.sleep(1)
    page.screenshot(path=str(out_dir / "review_metrics.png"))


def addons_page(page, port: int, out_dir: Path) -> None:
    page.goto(f"http://localhost:{port}/addons")
    page.get_by_text("Run Convert").wait_for()
    page.get_by_text("Split", exact=True).click()  # the Split tab after a run: status and written files
    page.get_by_role("button", name="Run Split").click()
    page.get_by_text("file(s) written").wait_for()
    time.sleep(1)
    page.screenshot(path=str(out_dir / "addons.png"), full_page=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"), tuple(sys.argv[2:]) or PAGES)
