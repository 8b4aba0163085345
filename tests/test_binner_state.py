"""The Binner's result params: invalidation by declared dependencies, events, job reporting, the membership rule."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_binner import make, quiet, simulate

from imagebinner.tools.binner import Binner, Pool


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("state")
    return [simulate(folder, f"s{i}", seed=10 + i, n_frames=12, empty_frames=(3,)) for i in range(2)]


def composed(sim, **kw) -> Binner:
    b = make(sim, **kw)
    quiet(b.compose)
    return b


def test_results_are_empty_before_and_read_only_after_a_preview(sim):
    b = make(sim)
    assert (b.loaded, b.pool, b.plan, b.pixel_size_used) == ([], None, None, None)
    plan = quiet(b.compose)
    assert len(b.loaded) == 2 and b.pixel_size_used == 100.0
    assert isinstance(b.pool, Pool) and len(b.pool) == 40 and b.pool.seed == b.seed_used == 5
    assert b.plan is plan and plan.shape == (12, 4) and plan.dtype == np.int64
    with pytest.raises(TypeError):
        b.plan = None  # constant: only the tool sets its results
    with pytest.raises(ValueError):
        plan[0, 0] = 1  # and the arrays are read-only
    with pytest.raises(ValueError):
        b.pool.frame[0] = 1
    assert b.stats["binned"]["n_binned"] == 12 and b.stats["pool"]["n_patches"] == 40


def test_a_pool_setting_resets_pool_and_plan_and_the_next_preview_redraws(sim):
    b = composed(sim)
    first_pool = b.pool
    b.patch_size = 12
    assert b.pool is None and b.plan is None and b.loaded  # inputs are kept
    assert "pool" not in b.stats and "binned" not in b.stats
    quiet(b.compose)
    assert b.pool is not first_pool and b.plan.shape == (12, 4)
    assert (b.pool.row <= 48 - 12).all()  # drawn with the new patch size


@pytest.mark.parametrize("name, value", [("camera_offset", 50), ("n_binned", 5), ("bin_size", 3),
                                         ("reuse_patches", False), ("output_dtype", "float32")])
def test_a_plan_setting_resets_only_the_plan(sim, name, value):
    b = composed(sim, n_patches=60)  # enough for a plan without reuse
    pool, loaded = b.pool, b.loaded
    setattr(b, name, value)
    assert b.plan is None and b.pool is pool and b.loaded is loaded
    quiet(b.compose)
    assert b.pool is pool  # the pool is not drawn again


@pytest.mark.parametrize("name", ["measurements", "pixel_size", "half_pixel"])
def test_an_input_setting_resets_everything_and_closes_the_movies(sim, name):
    b = composed(sim)
    movies = [m.movie for m in b.loaded]
    value = {"measurements": [(str(sim[0][0]), str(sim[0][1]))], "pixel_size": 100.0, "half_pixel": False}[name]
    setattr(b, name, value)
    assert (b.loaded, b.pool, b.plan, b.pixel_size_used, b.seed_used) == ([], None, None, None, None)
    assert b.stats["measurements"] == []
    with pytest.raises(Exception):
        movies[0].window(0, 0, 0, 4)  # closed
    assert len(quiet(b.load)) == (1 if name == "measurements" else 2)


def test_same_value_keeps_the_results(sim):
    b = composed(sim)
    pool, plan = b.pool, b.plan
    b.patch_size = b.patch_size
    b.camera_offset = b.camera_offset
    assert b.pool is pool and b.plan is plan


def test_without_a_seed_redraws_keep_the_drawn_seed_until_the_inputs_change(sim):
    b = composed(sim, seed=None)
    seed = b.seed_used
    b.n_patches = 30
    quiet(b.compose)
    assert b.seed_used == b.pool.seed == seed
    b.half_pixel = False  # new inputs: a fresh seed
    quiet(b.compose)
    assert b.pool.seed == b.seed_used


def test_preview_event_composes_and_an_executor_receives_the_work(sim):
    b = make(sim)
    quiet(b.param.trigger, "request_preview")
    assert b.plan.shape == (12, 4) and b.status.startswith("composed 12 binned frames")
    queued = []
    c = make(sim)
    c.executor = lambda label, work: queued.append((label, work))
    c.param.trigger("request_load")
    c.param.trigger("request_save")
    assert [label for label, _ in queued] == ["Load", "Run"] and c.loaded == []  # nothing ran yet
    assert queued[0][1] == c.load and queued[1][1] == c.save
    quiet(queued[0][1])
    assert len(c.loaded) == 2


def test_save_reports_its_job_from_the_first_step(sim, tmp_path, monkeypatch):
    b = make(sim, tmp_path / "out")
    seen = []
    load = Binner._load

    def watched_load(self):
        seen.append((self.running, self.progress, self.n_steps, self.status))
        return load(self)

    monkeypatch.setattr(Binner, "_load", watched_load)
    quiet(b.save)
    assert seen[0] == (True, 0, 12 + 3, "loading the measurements")
    assert b.progress == b.n_steps and not b.running


def test_a_step_called_alone_reports_a_job_and_a_current_result_none(sim):
    b = make(sim)
    jobs = []
    b.param.watch(lambda e: jobs.append(e.new), "running")
    quiet(b.draw_pool)
    assert jobs == [True, False] and b.progress == b.n_steps == 2 and b.status.startswith("drew a pool of 40")
    quiet(b.draw_pool)
    quiet(b.load)
    assert jobs == [True, False]  # cached: no new job


def test_patch_locs_is_the_membership_rule_for_pool_patches_and_plan_parts(sim):
    b = composed(sim)
    ps, P = b.pixel_size_used, b.patch_size
    frame = b.binned_frame(3)
    got_x, got_y = [], []
    for part in frame.parts:
        locs = b.patch_locs(part)  # a part of the current plan
        np.testing.assert_array_equal(locs["x"], b.patch_locs(part["pool_index"])["x"])
        m = b.loaded[part["measurement"]]
        rows = slice(int(m.offsets[part["frame"]]), int(m.offsets[part["frame"] + 1]))
        x, y = m.table.x[rows], m.table.y[rows]
        inside = ((np.floor(x / ps) >= part["column"]) & (np.floor(x / ps) < part["column"] + P)
                  & (np.floor(y / ps) >= part["row"]) & (np.floor(y / ps) < part["row"] + P))
        np.testing.assert_allclose(locs["x"], x[inside] - part["column"] * ps)
        np.testing.assert_allclose(locs["y"], y[inside] - part["row"] * ps)
        assert len(locs["x"]) == part["n_locs"] and set(locs) >= {"x", "y", "photons", "sigma"}
        got_x.append(locs["x"])
        got_y.append(locs["y"])
        np.testing.assert_array_equal(b.patch_image(part), m.movie.window(part["frame"], part["row"],
                                                                           part["column"], P))
    np.testing.assert_array_equal(np.concatenate(got_x), frame.locs.x)
    np.testing.assert_array_equal(np.concatenate(got_y), frame.locs.y)
    assert [p["pool_index"] for p in frame.parts] == b.plan[3].tolist()
    with pytest.raises(IndexError):
        b.patch_locs(len(b.pool))


def test_cli_flags_and_provenance_follow_the_declared_settings(sim, tmp_path, monkeypatch, capsys):
    """One declaration per setting: the CLI options and the provenance parameters derive from Binner's groups."""
    from imagebinner.cli import main as cli_main

    monkeypatch.setattr(Binner.param.n_patches, "doc", "Pool size, edited in one place.")
    with pytest.raises(SystemExit):
        cli_main(["bin", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--n-patches N_PATCHES Pool size, edited in one place. (default: 200)" in text
    for name in (*Binner.settings, *Binner.outputs[1:]):
        assert "--" + name.replace("_", "-") in text
    assert re.search(r"-o (\w+), --output \1 Folder receiving", text)
    assert "--output-folder" not in text and "--measurements" not in text
    b = make(sim, tmp_path / "out")
    quiet(b.save)
    parameters = json.loads((tmp_path / "out" / "binned.json").read_text())["parameters"]
    assert list(parameters) == [*Binner.settings, "seed_given"]
    assert parameters["n_patches"] == 40 and parameters["pixel_size"] == 100.0 and parameters["seed"] == 5


def test_the_pool_is_a_pure_function_of_index_settings_and_generator(sim):
    from imagebinner.tools.binner.inputs import GlobalIndex
    from imagebinner.tools.binner.pool import PoolSettings, draw_pool

    b = composed(sim, seed=9)
    index = GlobalIndex.build(b.loaded, b.pixel_size_used)
    settings = PoolSettings(patch_size=16, n_patches=40, min_emitters=1, max_attempts=2_000_000, seed=9)
    again = draw_pool(index, settings, np.random.default_rng(9))
    np.testing.assert_array_equal(again.table(), b.pool.table())
    assert again.seed == 9 and again.draw_stats == b.pool.draw_stats
    other = draw_pool(index, settings, np.random.default_rng(10))
    assert not np.array_equal(other.table(), again.table())


CHANGED = {"pixel_size": 100.0, "camera_offset": 50, "patch_size": 12, "n_patches": 70, "n_binned": 5,
           "bin_size": 3, "min_emitters": 2, "seed": 6, "reuse_patches": False, "output_dtype": "float32",
           "half_pixel": False, "max_attempts": 10**6, "target_density": "5", "target_spread": "test"}


def test_every_setting_makes_the_plan_stale(sim):
    """A new setting must join one of the invalidation groups (and this table) to pass."""
    assert set(CHANGED) == set(Binner.settings)
    for name, value in CHANGED.items():
        b = composed(sim, n_patches=60)
        setattr(b, name, value)
        assert b.plan is None, name
    for name in ("target_density_from", "test_movie"):  # the test movie's inputs
        b = composed(sim, n_patches=60)
        setattr(b, name, "elsewhere")
        assert b.plan is None, name
