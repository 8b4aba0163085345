"""Match status and metrics at any threshold as lookups: per-frame sums and per-row status without re-matching.

Built once per load or tolerance change from a :class:`~imagebinner.tools.matching.Matcher` (or from the predictions
alone without ground truth). Edges alone in their component and stars (one ground truth or one prediction) give every
prediction an interval of thresholds ``lo < t <= hi`` in which it is a true positive (with a fixed partner) and every
ground truth a threshold ``hi`` up to which it is matched. Isolated edges (the vast majority) are sorted by (frame,
confidence) with cumulative sums of their distances, so the per-frame true positives, squared errors and biases at a
threshold are two binary searches per frame; stars are masked directly (few); general components (several of each)
depend only on how many of their predictions are kept: the matcher solved every per-count state once, so a
threshold selects them with a mask. Results equal ``Matcher.match(t)`` exactly (tests check it).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from imagebinner.io.table import LocTable
from imagebinner.tools.matching import Matcher, metrics_from_sums
from imagebinner.tools.pairs import sort_keys

#: status codes of a prediction at a threshold
DROPPED, TP, FP = 0, 1, 2


def _levels(confidence: np.ndarray, order: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(confidence, return_inverse=True)``, from an ascending ``order`` of the confidences when known."""
    if order is None:
        order = np.argsort(confidence, kind="stable")
    ordered = confidence[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.empty(0, bool)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.cumsum(new) - 1
    return ordered[new], rank


def _suffix_per_frame(keys: np.ndarray, cums: list[np.ndarray], n: int, stride: int, rank: int):
    """Per frame ``f``: entries with key in ``[f·stride + rank, (f+1)·stride)`` (counts and cumulative sums)."""
    f = np.arange(n, dtype=np.int64)
    start = np.searchsorted(keys, f * stride + rank, side="left")
    end = np.searchsorted(keys, (f + 1) * stride, side="left")
    return end - start, [c[end] - c[start] for c in cums]


class ThresholdIndex:
    """Per-threshold results as lookups (see the module docstring); ``at(threshold)`` gives them."""

    def __init__(self, pred: LocTable, matcher: Matcher | None, n_frames: int):
        self.pred, self.matcher, self.n_frames = pred, matcher, int(n_frames)
        conf = np.asarray(pred["confidence"], dtype=float) if "confidence" in pred else np.full(len(pred), np.inf)
        self.confidence = np.where(np.isnan(conf), -np.inf, conf)
        # threshold t keeps the ranks >= searchsorted(levels, t)
        self.levels, rank = _levels(self.confidence, None if matcher is None else matcher.confidence_order)
        self.stride = len(self.levels) + 1
        rank = rank.astype(np.int64)
        self._kept_keys = np.sort(pred.frame.astype(np.int64) * self.stride + rank)
        if matcher is None:
            return
        m = matcher
        n_p, n_g = m.n_pred, m.n_gt
        self.p_lo = np.full(n_p, np.nan)  # TP iff lo < t <= hi (lo NaN: no lower bound; hi NaN: never)
        self.p_hi = np.full(n_p, np.nan)
        self.g_hi = np.full(n_g, np.nan)  # matched iff t <= hi
        # isolated edges: TP while kept; sorted by (frame, rank) with cumulative d², dx, dy
        gi, pi = m._s_gi, m._s_pi
        self.p_hi[pi] = self.confidence[pi]
        self.g_hi[gi] = self.confidence[pi]
        self._iso_keys, order = sort_keys(pred.frame[pi].astype(np.int64) * self.stride + rank[pi])
        dx, dy = m._s_dx[order], m._s_dy[order]
        self._iso_cums = [np.r_[0.0, np.cumsum(v)] for v in (dx * dx + dy * dy, dx, dy)]
        # stars: each chosen edge has its interval lo < t <= hi (from the matcher)
        sg, sp, lo, hi, sdx, sdy = m.stars
        self.p_lo[sp], self.p_hi[sp] = lo, hi
        g_hi = np.full(n_g, -np.inf)
        np.maximum.at(g_hi, sg, hi)
        touched = g_hi > -np.inf
        self.g_hi[touched] = g_hi[touched]
        self._stars = (pred.frame[sp].astype(np.int64), lo, hi, sdx, sdy)

    def _general(self, t: float) -> tuple[np.ndarray, ...]:
        """The matched pairs of the general components at ``t``: a mask over the matcher's solved states."""
        _, state, gi, pi, dx, dy, n_states = self.matcher.states
        active = np.zeros(n_states + 1, bool)
        active[self.matcher.active_states(t)] = True
        sel = active[state]
        gi, pi, dx, dy = gi[sel], pi[sel], dx[sel], dy[sel]
        order = np.argsort(pi)
        return gi[order], pi[order], dx[order], dy[order]

    def at(self, threshold: float) -> "ThresholdResult":
        """Status and per-frame counts and sums at ``threshold`` (predictions kept when confidence >= threshold)."""
        t, n = float(threshold), self.n_frames
        rank = int(np.searchsorted(self.levels, t, side="left"))
        kept, _ = _suffix_per_frame(self._kept_keys, [], n, self.stride, rank)
        if self.matcher is None:
            return ThresholdResult(MatchStatus(t, self), kept, None)
        tp, sums = _suffix_per_frame(self._iso_keys, self._iso_cums, n, self.stride, rank)
        sums = [s.astype(float) for s in sums]
        sf, slo, shi, sdx, sdy = self._stars
        on = (shi >= t) & ~(slo >= t)
        g_gi, g_pi, g_dx, g_dy = self._general(t)
        frames = np.r_[sf[on], self.pred.frame[g_pi]].astype(np.int64)
        dx, dy = np.r_[sdx[on], g_dx], np.r_[sdy[on], g_dy]
        tp = tp + np.bincount(frames, minlength=n)[:n]
        for k, w in enumerate((dx * dx + dy * dy, dx, dy)):
            sums[k] += np.bincount(frames, weights=w, minlength=n)[:n]
        status = MatchStatus(t, self, g_pi, np.sort(g_gi))
        return ThresholdResult(status, kept, {"tp": tp, "sse": sums[0], "sum_dx": sums[1], "sum_dy": sums[2]})


@dataclasses.dataclass(frozen=True)
class ThresholdResult:
    """What a threshold gives: the status, kept predictions per frame, per-frame sums of the matched pairs."""

    status: "MatchStatus"
    kept_per_frame: np.ndarray
    frame_sums: dict | None  # tp, sse, sum_dx, sum_dy per frame (None without ground truth)

    def metrics(self, n_gt: int) -> dict:
        s = self.frame_sums
        return metrics_from_sums(int(s["tp"].sum()), n_gt, int(self.kept_per_frame.sum()), float(s["sse"].sum()),
                                 float(s["sum_dx"].sum()), float(s["sum_dy"].sum()))

    def frame_metrics(self, gt_counts: np.ndarray) -> dict:
        s, n = self.frame_sums, len(gt_counts)
        out = {"frame": np.arange(n, dtype=np.int64)}
        out.update(metrics_from_sums(s["tp"], gt_counts, self.kept_per_frame, s["sse"], s["sum_dx"], s["sum_dy"]))
        return out


class MatchStatus:
    """Match status at one threshold, computed per slice of rows (a frame's ``frame_rows``) when asked.

    ``frame(pred_rows, truth_rows)`` → (int8 codes per prediction: :data:`DROPPED`, :data:`TP`, :data:`FP`; bool per
    ground truth: matched, or None without ground truth). ``prediction`` / ``truth_matched``: every row (computed on
    first use). Without ground truth every kept prediction is coded :data:`FP` (not confirmed).
    """

    def __init__(self, threshold: float, index: ThresholdIndex, general_pred: np.ndarray | None = None,
                 general_gt: np.ndarray | None = None):
        self.threshold, self.index = float(threshold), index
        self._g_pred, self._g_gt = general_pred, general_gt
        self._all: tuple | None = None

    @property
    def has_truth(self) -> bool:
        return self.index.matcher is not None

    def predictions_of(self, rows: slice) -> np.ndarray:
        ix, t = self.index, self.threshold
        kept = ix.confidence[rows] >= t
        if not self.has_truth:
            return (kept * FP).astype(np.int8)
        tp = (ix.p_hi[rows] >= t) & ~(ix.p_lo[rows] >= t)
        start = rows.start or 0
        lo, hi = np.searchsorted(self._g_pred, [start, rows.stop if rows.stop is not None else len(ix.confidence)])
        tp[self._g_pred[lo:hi] - start] = True
        return np.where(tp, TP, kept * FP).astype(np.int8)

    def truth_of(self, rows: slice) -> np.ndarray | None:
        if not self.has_truth:
            return None
        ix, t = self.index, self.threshold
        matched = ix.g_hi[rows] >= t
        start = rows.start or 0
        lo, hi = np.searchsorted(self._g_gt, [start, rows.stop if rows.stop is not None else len(ix.g_hi)])
        matched[self._g_gt[lo:hi] - start] = True
        return matched

    def frame(self, pred_rows: slice, truth_rows: slice | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The statuses of one frame's rows."""
        return self.predictions_of(pred_rows), (None if truth_rows is None else self.truth_of(truth_rows))

    @property
    def prediction(self) -> np.ndarray:
        return self.predictions_of(slice(0, len(self.index.confidence)))

    @property
    def truth_matched(self) -> np.ndarray | None:
        return self.truth_of(slice(0, len(self.index.g_hi))) if self.has_truth else None

    @property
    def kept(self) -> np.ndarray:
        return self.index.confidence >= self.threshold


def kept_rows(table: LocTable, mask_of) -> LocTable:
    """The rows of ``table`` selected by ``mask_of()`` as a LocTable built on first use (a threshold change does not
    copy millions of rows that only a save or a script reads); its length is known at once when given."""
    return _LazyTake(table, mask_of)


class _LazyTake(LocTable):
    """A LocTable whose columns are ``source[mask]``, materialised on first access."""

    __slots__ = ("_source", "_mask_of", "_taken", "_n")

    def __init__(self, source: LocTable, mask_of):  # noqa: D107 (nothing copied here)
        self._source, self._mask_of, self._taken, self._n = source, mask_of, None, None
        self.meta = source.meta
        self._offsets = None

    @property
    def _columns(self) -> dict:
        if self._taken is None:
            mask = self._mask_of()
            self._taken = {k: v[mask] for k, v in self._source.to_dict().items()}
        return self._taken

    def __len__(self) -> int:
        if self._n is None:
            self._n = len(self._columns["frame"])
        return self._n

    def with_length(self, n: int) -> "_LazyTake":
        self._n = int(n)
        return self

    @property
    def materialised(self) -> bool:
        """True once the rows were copied (tests count this work)."""
        return self._taken is not None
