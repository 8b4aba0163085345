"""Assembling binned frames: reading pool patches (cached or streamed), summing them, labels, the binned TIF.

A binned frame is the sum of its parts minus ``camera_offset * (parts - 1)``, converted to the output dtype by
:func:`~imagebinner.io.to_output_dtype`, which is also the one place clipped pixels are counted (after rounding).
Plans are ``(n_binned, parts)`` arrays of pool indices; frames with fewer parts (binning to a target density) are
padded with ``-1`` (:func:`frame_parts`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from imagebinner.io import LocMeta, LocTable, TifWriter, to_output_dtype
from imagebinner.tools.binner.inputs import GlobalIndex, Measurement
from imagebinner.tools.binner.pool import PART_FIELDS, Pool

PATCH_CACHE_BYTES = 64 * 2**20  # pool patches kept in memory while writing (read on demand beyond)
STACK_WRITE_BYTES = 32 * 2**20  # binned movies up to this size are written in one contiguous write


@dataclasses.dataclass
class BinnedFrame:
    """One binned frame: the wide sum, the image in the output dtype, its labels and its parts."""

    index: int  # 0-based binned frame number
    sum: np.ndarray  # int64 (integer movies) or float64, after the offset subtraction, before clipping
    image: np.ndarray  # output dtype (uint16 clipped or float32)
    clipped: int
    locs: LocTable  # patch-local nm coordinates, frame = index
    parts: list[dict]  # pool_index, measurement, frame, row, column, n_locs of each patch


def frame_parts(row: np.ndarray) -> np.ndarray:
    """The pool indices of one plan row without the ``-1`` padding."""
    row = np.asarray(row)
    return row[row >= 0]


def is_padded(plan: np.ndarray) -> bool:
    """True when some binned frame of ``plan`` has fewer parts than the row length."""
    return bool((np.asarray(plan) < 0).any())


def wide_dtype(ms: Sequence[Measurement]) -> np.dtype:
    """The type binned sums are computed in: int64 for integer movies, else float64."""
    kinds = {m.movie.dtype.kind for m in ms}
    return np.dtype(np.int64) if kinds <= {"u", "i", "b"} else np.dtype(np.float64)


class PatchReader:
    """Reads the pixels of pool patches from their movies; :meth:`prefetch` keeps the used ones in one stack."""

    def __init__(self, ms: Sequence[Measurement], pool: Pool, patch_size: int):
        self.ms = list(ms)
        self.pool = pool
        self.patch_size = patch_size
        self.wide = wide_dtype(ms)
        #: cached patches ``(len(pool), P, P)``, or None (read on demand); ``cached[k]``: patch ``k`` is in it
        self.stack: np.ndarray | None = None
        self.cached = np.zeros(len(pool), dtype=bool)

    def covers(self, parts: np.ndarray) -> bool:
        """True when every patch of ``parts`` is in the stack."""
        parts = np.asarray(parts)
        return self.stack is not None and bool(self.cached[parts[parts >= 0]].all())

    def image(self, k: int) -> np.ndarray:
        """Pixels of pool patch ``k`` (stored dtype, native order; from the stack when prefetched)."""
        if self.stack is not None and self.cached[k]:
            return self.stack[k]
        p = self.pool
        movie = self.ms[int(p.measurement[k])].movie
        return movie.window(int(p.frame[k]), int(p.row[k]), int(p.column[k]), self.patch_size)

    def stack_dtype(self) -> np.dtype:
        """int32 holds any (u)int8/(u)int16 movie exactly, else the wide type."""
        if all(m.movie.dtype.kind in "uib" and m.movie.dtype.itemsize <= 2 for m in self.ms):
            return np.dtype(np.int32)
        return self.wide

    def prefetch(self, indices: np.ndarray) -> None:
        """Read the patches ``indices`` not cached yet, in file order, into the stack (when the stack of the whole
        pool fits in ``PATCH_CACHE_BYTES``; else they are read on demand)."""
        p, size = self.pool, self.patch_size
        if self.stack is None:
            dtype = self.stack_dtype()
            if len(p) * size**2 * dtype.itemsize > PATCH_CACHE_BYTES:
                return
            self.stack = np.zeros((len(p), size, size), dtype=dtype)
        indices = np.unique(indices)
        indices = indices[indices >= 0]
        indices = indices[~self.cached[indices]]
        for meas in self.ms:
            mine = indices[p.measurement[indices] == meas.index]
            if not len(mine):
                continue
            # in file order; announced to the OS first so that cold reads happen in parallel
            mine = mine[np.lexsort((p.row[mine], p.frame[mine]))]
            frames, rows, cols = p.frame[mine], p.row[mine], p.column[mine]
            meas.movie.advise_windows(zip(frames, rows, cols), size)
            self.stack[mine] = meas.movie.windows(frames, rows, cols, size)  # one vectorised gather
            self.cached[mine] = True

    def offset_sum(self, parts: np.ndarray, camera_offset: float) -> np.ndarray:
        """Sum of the patches ``parts`` minus ``camera_offset * (len(parts) - 1)`` (int64 or float64)."""
        if self.covers(parts):
            total = self.stack[parts].sum(axis=0, dtype=self.wide)
        else:
            total = np.zeros((self.patch_size, self.patch_size), dtype=self.wide)
            for k in parts:
                total += self.image(int(k))
        return subtract_offset(total, camera_offset * (len(parts) - 1))

    def chunks(self, plan: np.ndarray, camera_offset: float, dtype: str) -> Iterator[tuple[int, np.ndarray, int]]:
        """Yield ``(start, images, clipped)`` for consecutive chunks of binned frames from the stack (which must
        cover ``plan``).

        Integer sums are exact in any order: accumulated part by part, in int32 when no sum can overflow it
        (uint16 movies up to ~30000 parts), else in int64; float movies are summed in float64.
        """
        if is_padded(plan):  # frames of different part counts: one by one (binning to a target density)
            for start in range(0, len(plan), 256):
                sums = [self.offset_sum(frame_parts(parts), camera_offset) for parts in plan[start : start + 256]]
                images, clipped = to_output_dtype(np.stack(sums), dtype)
                yield start, images, clipped
            return
        stack, wide = self.stack, self.wide
        offset = camera_offset * (plan.shape[1] - 1)
        accumulator = wide
        if stack.dtype.kind == "i" and stack.dtype.itemsize == 4:
            # the cached patches come from (u)int8/(u)int16 movies: |sum| <= bin_size * 65535 (+ the offset)
            bound = plan.shape[1] * 65536 + abs(int(np.ceil(offset)))
            accumulator = np.dtype(np.int32) if bound < 2**31 - 1 else np.dtype(np.int64)
        # chunks of ~1 MB of sums (and for float movies of the (chunk, bin_size, P, P) gather): they stay in the CPU
        # cache, which makes the summing about twice as fast as on the whole movie at once
        frame_bytes = stack[0].size * accumulator.itemsize * (plan.shape[1] if wide.kind == "f" else 1)
        chunk = int(max(1, min(256, (1 << 20) // max(frame_bytes, 1))))
        for start in range(0, len(plan), chunk):
            rows = plan[start : start + chunk]
            if wide.kind == "f":
                sums = stack[rows].sum(axis=1, dtype=wide)
            else:
                sums = stack[rows[:, 0]].astype(accumulator)
                for b in range(1, rows.shape[1]):
                    sums += stack[rows[:, b]]
            images, clipped = to_output_dtype(subtract_offset(sums, offset), dtype)
            yield start, images, clipped

    def images(self, plan: np.ndarray, camera_offset: float, dtype: str) -> Iterator[tuple[np.ndarray, int]]:
        """Yield ``(image, clipped)`` for every binned frame: summed in chunks when prefetched, else frame by frame
        (``clipped`` of a chunk comes with its first frame)."""
        if self.covers(plan):
            for _, images, clipped in self.chunks(plan, camera_offset, dtype):
                for k, image in enumerate(images):
                    yield image, clipped if k == 0 else 0
            return
        for parts in plan:
            yield to_output_dtype(self.offset_sum(frame_parts(parts), camera_offset), dtype)


def subtract_offset(total: np.ndarray, offset: float) -> np.ndarray:
    """``total - offset``: integer sums stay integers when the offset is integral, else float64."""
    if total.dtype.kind == "i" and float(offset).is_integer():
        total -= int(offset)
        return total
    return total.astype(np.float64) - offset


def write_binned_tif(
    path: Path,
    reader: PatchReader,
    plan: np.ndarray,
    camera_offset: float,
    dtype: str,
    pixel_size: float,
    advance: Callable[[int], None],
) -> int:
    """Write every binned frame of ``plan`` to ``path``; returns the clipped pixel count.

    A small movie (at most ``STACK_WRITE_BYTES``, with the patches prefetched) is built in memory and written in one
    contiguous write, a large one streamed frame by frame. ``advance(n)`` reports ``n`` more frames done.
    """
    writer = TifWriter(path, pixel_size=pixel_size, dtype=dtype, overwrite=True)
    n, P = len(plan), reader.patch_size
    clipped = 0
    if reader.covers(plan) and n * P * P * np.dtype(dtype).itemsize <= STACK_WRITE_BYTES:
        images = np.empty((n, P, P), dtype=dtype)
        for start, chunk, chunk_clipped in reader.chunks(plan, camera_offset, dtype):
            images[start : start + len(chunk)] = chunk
            clipped += chunk_clipped
        advance(n)  # all frames summed (a few ms; progress per chunk would cost more than it shows)
        with writer:
            writer.write_array(images)
        return clipped
    every = max(1, n // 20)  # progress updates cost a param event each
    done = 0

    def frames() -> Iterator[np.ndarray]:
        nonlocal clipped, done
        for j, (image, n_clipped) in enumerate(reader.images(plan, camera_offset, dtype), start=1):
            clipped += n_clipped
            if j % every == 0 or j == n:
                advance(j - done)
                done = j
            yield image

    with writer:
        writer.write_stream(frames(), n)
    return clipped


def output_meta(pixel_size: float, patch_size: int, n_binned: int) -> LocMeta:
    """Metadata of the binned labels (patch-local nm, corner convention)."""
    return LocMeta(
        pixel_size=pixel_size,
        image_shape=(patch_size, patch_size),
        n_frames=n_binned,
        source_format="binner",
        conversion="patch-local nm, corner convention: x' = x - m*ps, y' = y - n*ps",
    )


def patch_locs(index: GlobalIndex, pool: Pool, indices: np.ndarray, patch_size: int
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Patch-local localizations of the pool patches ``indices``, concatenated in that order, and their counts."""
    indices = np.asarray(indices, dtype=np.int64)
    return index.window_locs(pool.measurement[indices], pool.frame[indices], pool.row[indices],
                             pool.column[indices], patch_size)


def binned_labels(index: GlobalIndex, pool: Pool, plan: np.ndarray, patch_size: int) -> LocTable:
    """Labels of every binned frame of ``plan`` (frame = 0-based binned frame, patch-local nm)."""
    used = np.unique(plan)
    used = used[used >= 0]
    per_used, counts = patch_locs(index, pool, used, patch_size)  # every used patch once, patch after patch
    lengths = np.zeros(len(pool), dtype=np.int64)
    lengths[used] = counts
    starts = np.zeros_like(lengths)
    starts[used] = np.cumsum(counts) - counts
    valid = plan >= 0
    flat = plan[valid]  # row by row, the padding left out
    n_each = lengths[flat]
    rows = np.arange(int(n_each.sum()), dtype=np.int64) - np.repeat(np.cumsum(n_each) - n_each, n_each)
    rows += np.repeat(starts[flat], n_each)
    cols = {name: values[rows] for name, values in per_used.items()}
    per_frame = np.zeros(plan.shape, dtype=np.int64)
    per_frame[valid] = n_each
    per_frame = per_frame.sum(axis=1)
    cols["frame"] = np.repeat(np.arange(len(plan), dtype=np.int64), per_frame)
    return LocTable(cols, output_meta(index.pixel_size, patch_size, len(plan)), presorted=True, validate=False)


def binned_frame(
    j: int, index: GlobalIndex, reader: PatchReader, plan: np.ndarray, camera_offset: float, dtype: str
) -> BinnedFrame:
    """Binned frame ``j`` of ``plan``: its sum, image, clipped pixels, labels and parts."""
    pool, parts_idx = reader.pool, frame_parts(plan[j])
    total = reader.offset_sum(parts_idx, camera_offset)
    image, clipped = to_output_dtype(total, dtype)
    cols, _ = patch_locs(index, pool, parts_idx, reader.patch_size)
    cols["frame"] = np.full(len(cols["x"]), j, dtype=np.int64)
    locs = LocTable(cols, output_meta(index.pixel_size, reader.patch_size, len(plan)), presorted=True,
                    validate=False)
    rows = pool.table()[parts_idx].tolist()
    parts = [{"pool_index": int(k), **dict(zip(PART_FIELDS, row))} for k, row in zip(parts_idx.tolist(), rows)]
    return BinnedFrame(j, total, image, clipped, locs, parts)
