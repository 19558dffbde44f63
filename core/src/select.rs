//! Partial selection: the largest few values of a row, in O(n) for a small count.

use crate::{Error, Real};

/// Writes into `out` the indices of the `out.len()` largest entries of `values` whose index is
/// not `skip`, in descending order of value, ties broken by the lower index first (so the result
/// is deterministic). Without a data-dependent branch per entry for a small count
/// (≤ 56): a threshold with `count` to `count + 8` entries at or above it is found by bisection
/// (three or four vectorised counting passes on typical rows), those entries are compacted, and
/// each is placed by its rank among them (ties straddling the count-th largest: the entries
/// above it, then its ties in tie order). On a long row (n ≥ 16·(count + 1)) a lower bound from
/// group maxima first leaves only the few entries that can qualify (a few dozen of 1000). For
/// `f32` on x86-64 with AVX2 and POPCNT, hand-written AVX2 code (`select_avx2.rs`: a
/// threshold from one pass instead of the bisection, the same compaction and ranking) gives the
/// same result 2.8–3.8× faster. Larger counts go through
/// insertion, most entries rejected by one comparison with the current minimum.
/// O(n + candidates²) for a small count. NaN entries have no rank: where they land is unspecified (the AVX2 code
/// never selects them), but the indices written are always distinct, in range and never
/// `skip`.
///
/// # Errors
/// [`Error::TopkLargerThanInputs`] when `out.len()` exceeds the entries available,
/// `values.len() − (skip is in range) as usize`.
pub fn largest_indices<F: Real>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) -> Result<(), Error> {
    check_count(values.len(), skip, out.len())?;
    select::<F, false>(values, skip, out);
    Ok(())
}

/// As [`largest_indices`], but ties go to the *higher* index first: the order a stable ascending
/// sort gives when read from its end (torch's `sort(-s, descending=True)`, which SoftSort uses).
///
/// # Errors
/// As [`largest_indices`].
pub fn largest_indices_ties_high<F: Real>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) -> Result<(), Error> {
    check_count(values.len(), skip, out.len())?;
    select::<F, true>(values, skip, out);
    Ok(())
}

/// `count` of the `n` entries, `skip` (when in range) left out.
fn check_count(n: usize, skip: Option<usize>, count: usize) -> Result<(), Error> {
    let available = n - usize::from(skip.is_some_and(|s| s < n));
    if count > available {
        return Err(Error::TopkLargerThanInputs {
            k: count,
            inputs: available,
        });
    }
    Ok(())
}

/// [`largest_indices`] without the check (the caller guarantees the count).
#[inline]
pub(crate) fn largest_indices_unchecked<F: Real>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) {
    select::<F, false>(values, skip, out)
}

/// [`largest_indices_ties_high`] without the check.
#[inline]
pub(crate) fn largest_indices_ties_high_unchecked<F: Real>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) {
    select::<F, true>(values, skip, out)
}

/// [`largest_indices_ties_high`] over a preselected row, without a search: `values[0]` is any
/// value (the label's logit) and `values[1..]` is in the order [`largest_indices`] writes
/// (descending, ties by lower index first), so the result is a merge. Reading the list in
/// order with each run of equal values reversed (higher index first), the first entry placed
/// after every value at or above `values[0]` is index 0 (the lowest index goes last among its
/// ties). O(out.len() + the longest run of ties read). The same indices as
/// `largest_indices_ties_high(values, None, out)` (a test checks it).
pub(crate) fn largest_indices_ties_high_of_preselected<F: Real>(values: &[F], out: &mut [u32]) {
    let n = values.len();
    debug_assert!(out.len() <= n);
    let label = values[0];
    // Without ties among the list's first k + 1 (a run from the k-th on would be read
    // reversed), index 0 goes at p = #{1 ≤ i ≤ k: values[i] ≥ label}, the list's first k in
    // order around it. Branch-free but for the tie test (which rows rarely fail).
    let k = out.len();
    if values[1..(k + 2).min(n)]
        .windows(2)
        .all(|pair| pair[0] > pair[1])
    {
        let mut at_or_above = 0u32;
        for &value in &values[1..(k + 1).min(n)] {
            at_or_above += u32::from(value >= label);
        }
        for (position, slot) in out.iter_mut().enumerate() {
            let position = position as u32;
            *slot = if position < at_or_above {
                position + 1
            } else if position == at_or_above {
                0
            } else {
                position
            };
        }
        return;
    }
    let mut label_placed = false;
    let mut written = 0;
    let mut start = 1;
    while written < out.len() {
        if start == n || (!label_placed && values[start] < label) {
            // Index 0 comes before the first value below it, or after the whole list.
            out[written] = 0;
            written += 1;
            label_placed = true;
            continue;
        }
        let mut end = start + 1;
        while end < n && values[end] == values[start] {
            end += 1;
        }
        // The run start..end, higher index first.
        for index in (start..end).rev() {
            if written == out.len() {
                break;
            }
            out[written] = index as u32;
            written += 1;
        }
        start = end;
    }
}

/// [`largest_indices`] through the portable code only (no AVX2 path): the baseline of the
/// `bench_select` example.
#[doc(hidden)]
pub fn largest_indices_portable<F: Real>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) -> Result<(), Error> {
    check_count(values.len(), skip, out.len())?;
    select_body::<F, false>(values, skip, out);
    Ok(())
}

/// Lanes of the lower-bound pass: each lane keeps the maximum of its strided share of a segment.
const BOUND_LANES: usize = 8;
/// Candidates listed by the bounded pass before it gives up and walks every entry.
const CANDIDATES: usize = 256;
/// Selections up to this size use the lower-bound pass and the threshold selection.
pub(crate) const BOUND_MAX_COUNT: usize = 56;
/// Segments of the lower-bound pass at most (8 lanes each).
const MAX_SEGMENTS: usize = 8;
/// Selections up to this size keep the selected values in a stack array beside their indices.
const DENSE_SLOTS: usize = 64;

fn select<F: Real, const TIES_HIGH: bool>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx2() {
            if let Some(values) = F::as_f32_slice(values) {
                if crate::cpu::has_popcnt()
                    // SAFETY: the CPU supports AVX2 and POPCNT, checked above and here.
                    && unsafe { crate::select_avx2::largest_indices_f32::<TIES_HIGH>(values, skip, out) }
                {
                    return;
                }
            }
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { select_avx2::<F, TIES_HIGH>(values, skip, out) };
        }
    }
    select_body::<F, TIES_HIGH>(values, skip, out)
}

/// [`select_body`] compiled for AVX2: the counting and extreme-value loops run 8 f32 (4 f64)
/// lanes per instruction. The same operations in the same order: results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn select_avx2<F: Real, const TIES_HIGH: bool>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) {
    select_body::<F, TIES_HIGH>(values, skip, out)
}

#[inline(always)]
pub(crate) fn select_body<F: Real, const TIES_HIGH: bool>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
) {
    let count = out.len();
    if count == 0 {
        return;
    }
    let skip = skip.filter(|&s| s < values.len());
    let long_row = values.len() >= 16 * (count + 1);
    if count <= BOUND_MAX_COUNT {
        if long_row {
            let Some(bound) = lower_bound(values, count + usize::from(skip.is_some())) else {
                return insertion_select::<F, TIES_HIGH>(values, skip, out, None);
            };
            let mut candidates = Candidates {
                values: [F::zero(); CANDIDATES + 1],
                indices: [0; CANDIDATES + 1],
                len: 0,
            };
            if candidates.list(values, skip, bound)
                && threshold_select::<F, TIES_HIGH>(
                    &candidates.values[..candidates.len],
                    Some(&candidates.indices[..candidates.len]),
                    None,
                    out,
                )
            {
                return;
            }
        } else if values.len() <= CANDIDATES
            && threshold_select::<F, TIES_HIGH>(values, None, skip, out)
        {
            return;
        }
    }
    let bound = if count <= BOUND_MAX_COUNT && long_row {
        lower_bound(values, count + usize::from(skip.is_some()))
    } else {
        None
    };
    insertion_select::<F, TIES_HIGH>(values, skip, out, bound);
}

/// Entries of a row that may be among the largest, in index order, values beside indices.
struct Candidates<F> {
    values: [F; CANDIDATES + 1],
    indices: [u32; CANDIDATES + 1],
    len: usize,
}

impl<F: Real> Candidates<F> {
    /// Lists the entries at or above `bound` (except `skip`): a vectorised test per block of 8
    /// entries, and a branch-free compaction (every entry written, the length advancing when it
    /// counts) of the few blocks that hold one. `false` when more than [`CANDIDATES`] pass.
    #[inline(always)]
    fn list(&mut self, values: &[F], skip: Option<usize>, bound: F) -> bool {
        let skip = skip.unwrap_or(usize::MAX);
        let mut len = 0usize;
        let mut take = |i: usize, value: F| {
            let slot = len.min(CANDIDATES);
            self.values[slot] = value;
            self.indices[slot] = i as u32;
            len += usize::from((value >= bound) & (i != skip));
        };
        let blocks = values.chunks_exact(8);
        let tail_start = values.len() - blocks.remainder().len();
        for (block_index, block) in blocks.enumerate() {
            if F::any_at_or_above(block.try_into().expect("blocks of 8"), bound) {
                for (offset, &value) in block.iter().enumerate() {
                    take(block_index * 8 + offset, value);
                }
            }
        }
        for (i, &value) in values.iter().enumerate().skip(tail_start) {
            take(i, value);
        }
        self.len = len;
        len <= CANDIDATES
    }
}

/// The number of `values` at or above `threshold` (a compare-and-add loop that vectorises).
#[inline(always)]
fn count_at_or_above<F: Real>(values: &[F], threshold: F) -> usize {
    let mut counts = [0u32; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for lane in 0..8 {
            counts[lane] += u32::from(chunk[lane] >= threshold);
        }
    }
    let tail_count: u32 = tail.iter().map(|&v| u32::from(v >= threshold)).sum();
    (counts.iter().sum::<u32>() + tail_count) as usize
}

/// The smallest and largest of `values` (8 lanes of running minima and maxima, so the loop
/// vectorises; NaN entries may be ignored).
#[inline(always)]
fn extremes<F: Real>(values: &[F]) -> (F, F) {
    let mut smallest = [values[0]; 8];
    let mut largest = [values[0]; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for lane in 0..8 {
            smallest[lane] = if chunk[lane] < smallest[lane] {
                chunk[lane]
            } else {
                smallest[lane]
            };
            largest[lane] = if chunk[lane] > largest[lane] {
                chunk[lane]
            } else {
                largest[lane]
            };
        }
    }
    let mut low = values[0];
    let mut high = values[0];
    for &value in smallest.iter().chain(tail) {
        low = if value < low { value } else { low };
    }
    for &value in largest.iter().chain(tail) {
        high = if value > high { value } else { high };
    }
    (low, high)
}

/// A threshold `t` for the `count` largest of `values` except position `skip` (`count ≥ 1`, at
/// most the number of entries left): between `count` and `count + slack` entries are at or
/// above `t` (second field `true`), or, where no such value exists because ties straddle the
/// `count`-th largest, `t` is that `count`-th largest itself (`false`). With `slack = 0`: the
/// `count`-th largest, or any value that leaves exactly `count` entries at or above it.
/// Bisection between the smallest and the largest entry: halving the value range while that
/// makes progress (a handful of steps on typical rows, fewer the larger the slack), then the
/// integer order keys (at most 65 steps in all); each step is one vectorised count. `None`
/// when fewer than `count` entries compare at all (NaN).
#[inline(always)]
fn rank_threshold<F: Real>(
    values: &[F],
    skip: Option<usize>,
    count: usize,
    slack: usize,
) -> Option<(F, bool)> {
    let count_from = |threshold: F| {
        count_at_or_above(values, threshold)
            - skip.map_or(0, |s| usize::from(values[s] >= threshold))
    };
    let within = |at_or_above: usize| at_or_above >= count && at_or_above - count <= slack;
    // Including the skipped entry in the extremes keeps both bounds valid.
    let (smallest, largest) = extremes(values);
    if smallest.partial_cmp(&smallest).is_none() || largest.partial_cmp(&largest).is_none() {
        return None;
    }
    // Invariant: at least `count` entries ≥ key `low`, fewer than `count` ≥ key `high` (true
    // unless NaN entries leave fewer than `count` comparable ones; the callers then see too
    // few entries at or above the result and fall back).
    let mut low = smallest.order_key();
    let mut high = largest.order_key() + 1;
    let mut done = within(count_from(largest));
    if done {
        low = largest.order_key();
    }
    // Keys span all of i64 in f64 (−∞ to +∞): differences and midpoints in i128.
    let mut steps = 0;
    while !done && i128::from(high) - i128::from(low) > 1 {
        let (low_value, high_value) = (F::from_order_key(low), F::from_order_key(high));
        let half = F::of(0.5);
        let value_middle = low_value * half + high_value * half;
        steps += 1;
        let middle = if steps <= 24 && value_middle > low_value && value_middle < high_value {
            value_middle.order_key()
        } else {
            ((i128::from(low) + i128::from(high)).div_euclid(2)) as i64
        };
        let at_or_above = count_from(F::from_order_key(middle));
        // Selects rather than branches: the direction is a coin toss on random rows.
        let above = at_or_above >= count;
        low = if above { middle } else { low };
        high = if above { high } else { middle };
        done = within(at_or_above);
    }
    Some((F::from_order_key(low), done))
}

/// Entries the threshold selection may leave above its threshold beyond the `count` wanted:
/// a larger slack ends the bisection sooner, a smaller one ranks fewer candidates.
pub(crate) const SLACK: usize = 8;
/// Candidates ranked by [`threshold_select`] at most, padded to whole blocks of 8.
pub(crate) const RANKED: usize = BOUND_MAX_COUNT + SLACK;

/// Selects the `out.len()` largest of `values` except position `skip`, without a
/// data-dependent branch per entry (`indices[p]` is reported for position p, or p itself):
/// 1. a threshold `t` with `count` to `count + SLACK` entries at or above it, by bisection
///    between the smallest and the largest entry ([`rank_threshold`]: each step one vectorised
///    count; a few steps on typical rows); where ties straddle the `count`-th largest so that no
///    such `t` exists, `t` is the `count`-th largest and the candidates are the entries above
///    it, then those equal to it in tie order until `count` are chosen;
/// 2. the candidates listed (a vectorised test per block of 8 entries, a branch-free
///    compaction of the blocks that hold one);
/// 3. each candidate's rank = the number of candidates ranked above it (value descending, ties
///    by index), counted in 8 lanes against all of them: the first `count` ranks are the
///    output, in order.
///
/// Returns `false` (leaving `out` to the caller's fallback) when fewer than `count` entries
/// compare at all (NaN).
#[inline(always)]
fn threshold_select<F: Real, const TIES_HIGH: bool>(
    values: &[F],
    indices: Option<&[u32]>,
    skip: Option<usize>,
    out: &mut [u32],
) -> bool {
    let count = out.len();
    let skipped = usize::from(skip.is_some());
    if values.len() < count + skipped || count > BOUND_MAX_COUNT {
        return false;
    }
    let index_of = |position: usize| indices.map_or(position as u32, |indices| indices[position]);
    let Some((threshold, within)) = rank_threshold(values, skip, count, SLACK) else {
        return false; // NaN among the entries
    };
    // Candidates, padded to whole blocks with entries that rank below every candidate (−∞ with
    // the index that loses every tie).
    let padding_index = if TIES_HIGH { 0 } else { u32::MAX };
    let mut candidate_values = [F::of(f64::NEG_INFINITY); RANKED + 8];
    let mut candidate_indices = [padding_index; RANKED + 8];
    // Slot `len` is written for every entry looked at and kept when it counts; past RANKED
    // (impossible, see below) the writes stay in the last slot.
    let mut len = 0usize;
    let skip = skip.unwrap_or(usize::MAX);
    // Plain loops (no closure capturing `len`): the counter stays in a register.
    if within {
        let blocks = values.chunks_exact(8);
        let tail_start = values.len() - blocks.remainder().len();
        for (block_index, block) in blocks.enumerate() {
            if F::any_at_or_above(block.try_into().expect("blocks of 8"), threshold) {
                for (offset, &value) in block.iter().enumerate() {
                    let position = block_index * 8 + offset;
                    let slot = len.min(RANKED);
                    candidate_values[slot] = value;
                    candidate_indices[slot] = index_of(position);
                    len += usize::from((value >= threshold) & (position != skip));
                }
            }
        }
        for (position, &value) in values.iter().enumerate().skip(tail_start) {
            let slot = len.min(RANKED);
            candidate_values[slot] = value;
            candidate_indices[slot] = index_of(position);
            len += usize::from((value >= threshold) & (position != skip));
        }
    } else {
        // Fewer than `count` entries lie above the count-th largest: those, then its ties.
        for (position, &value) in values.iter().enumerate() {
            let slot = len.min(RANKED);
            candidate_values[slot] = value;
            candidate_indices[slot] = index_of(position);
            len += usize::from((value > threshold) & (position != skip));
        }
        let mut take_tie = |position: usize, value: F| {
            let taken = (value == threshold) & (position != skip) & (len < count);
            let slot = len.min(RANKED);
            candidate_values[slot] = value;
            candidate_indices[slot] = index_of(position);
            len += usize::from(taken);
        };
        if TIES_HIGH {
            for (position, &value) in values.iter().enumerate().rev() {
                take_tie(position, value);
            }
        } else {
            for (position, &value) in values.iter().enumerate() {
                take_tie(position, value);
            }
        }
    }
    // Within the slack at most count + SLACK ≤ RANKED entries qualify; otherwise at most
    // `count`. Fewer than `count`: NaN entries.
    if len < count || len > RANKED {
        return false;
    }
    let padded = len.div_ceil(8) * 8;
    for slot in len..padded {
        candidate_values[slot] = F::of(f64::NEG_INFINITY);
        candidate_indices[slot] = padding_index;
    }
    // Rank by counting (distinct indices make the ranks distinct: a permutation of 0..len).
    let mut ranked = [0u32; RANKED + 8];
    for (&value, &index) in candidate_values[..len]
        .iter()
        .zip(&candidate_indices[..len])
    {
        let mut above = [0u32; 8];
        for (block_values, block_indices) in candidate_values[..padded]
            .chunks_exact(8)
            .zip(candidate_indices[..padded].chunks_exact(8))
        {
            for lane in 0..8 {
                let other = block_values[lane];
                let other_index = block_indices[lane];
                let tie_before = if TIES_HIGH {
                    other_index > index
                } else {
                    other_index < index
                };
                above[lane] += u32::from((other > value) | ((other == value) & tie_before));
            }
        }
        let rank: u32 = above.iter().sum();
        ranked[rank as usize] = index;
    }
    out.copy_from_slice(&ranked[..count]);
    true
}

/// A value `L` with at least `rank` entries of `values` at or above it, found without sorting:
/// the values are cut into `8·S ≥ rank` disjoint groups (8 strided lanes of S segments, S up to
/// 8 so that the groups stay small), whose maxima are `8·S` distinct entries; the `rank`-th
/// largest of those maxima is at most the `rank`-th largest entry. Every entry that can be among
/// the `rank` largest is therefore `≥ L`, and the second pass only has to look at those (on
/// typical data a few dozen of 1000). The lane loop compiles to SIMD compares and blends. With
/// `skip` in range the caller asks for one rank more: removing one entry lowers any rank by at
/// most one. Requires `values.len() ≥ 16 · rank`, `rank ≤ 64`; `None` when NaN entries leave
/// too few comparable maxima.
#[inline(always)]
pub(crate) fn lower_bound<F: Real>(values: &[F], rank: usize) -> Option<F> {
    let segments = rank
        .div_ceil(BOUND_LANES)
        .max((values.len() / (8 * BOUND_LANES)).min(MAX_SEGMENTS));
    let segment_len = (values.len() / segments) / BOUND_LANES * BOUND_LANES;
    let mut maxima = [F::zero(); MAX_SEGMENTS * BOUND_LANES];
    for segment in 0..segments {
        let start = segment * segment_len;
        let end = if segment + 1 == segments {
            values.len()
        } else {
            start + segment_len
        };
        let chunks = values[start..end].chunks_exact(BOUND_LANES);
        let tail = chunks.remainder();
        let mut lanes = [values[start]; BOUND_LANES];
        lanes.copy_from_slice(&values[start..start + BOUND_LANES]);
        for chunk in chunks {
            for lane in 0..BOUND_LANES {
                lanes[lane] = if chunk[lane] > lanes[lane] {
                    chunk[lane]
                } else {
                    lanes[lane]
                };
            }
        }
        // The tail's entries join the last lanes' groups (still disjoint groups).
        for (lane, &value) in tail.iter().enumerate() {
            if value > lanes[lane] {
                lanes[lane] = value;
            }
        }
        maxima[segment * BOUND_LANES..(segment + 1) * BOUND_LANES].copy_from_slice(&lanes);
    }
    let maxima = &maxima[..segments * BOUND_LANES];
    // NaN maxima: no usable bound unless `rank` maxima are still at or above it.
    rank_threshold(maxima, None, rank, SLACK)
        .map(|(bound, _)| bound)
        .filter(|&bound| count_at_or_above(maxima, bound) >= rank)
}

/// The selection by insertion, over the values not below `bound` (all values when `None`).
#[inline(always)]
fn insertion_select<F: Real, const TIES_HIGH: bool>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
    bound: Option<F>,
) {
    let count = out.len();
    if count == 0 {
        return;
    }
    let mut filled = 0usize;
    // The value of the last (smallest) selected entry; read only once the selection is full.
    let mut minimum = values[0];
    // With a bound, a branch-free pass first lists the entries at or above it (typically a few
    // dozen of 1000); only those are walked. Too many candidates: walk everything.
    let mut candidates = [0u32; CANDIDATES];
    let mut listed = 0usize;
    if let Some(bound) = bound {
        for (i, &value) in values.iter().enumerate() {
            candidates[listed % CANDIDATES] = i as u32;
            listed += usize::from(value >= bound);
        }
    }
    // From CANDIDATES on, later entries overwrite the last slot: walk everything then.
    let walk_all = bound.is_none() || listed >= CANDIDATES;
    let total = if walk_all { values.len() } else { listed };
    let walk = (0..total).map(|step| {
        if walk_all {
            step
        } else {
            candidates[step] as usize
        }
    });
    if count <= DENSE_SLOTS {
        return dense_insertion::<F, TIES_HIGH>(values, skip, out, walk);
    }
    for i in walk {
        let value = values[i];
        if Some(i) == skip {
            continue;
        }
        if filled == count {
            // The selection is full: `value` enters only if larger than its minimum (an equal
            // value has a larger index: it ranks lower, or higher with TIES_HIGH).
            if !(value > minimum || (TIES_HIGH && value == minimum)) {
                continue;
            }
            filled -= 1;
        }
        // Insertion position: after every entry that ranks above `value`.
        let mut position = filled;
        while position > 0
            && (values[out[position - 1] as usize] < value
                || (TIES_HIGH && values[out[position - 1] as usize] == value))
        {
            out[position] = out[position - 1];
            position -= 1;
        }
        out[position] = i as u32;
        filled += 1;
        minimum = values[out[filled - 1] as usize];
    }
}

/// The insertion step of [`insertion_select`] with the selected values kept in a stack array
/// beside their indices (`out.len() ≤ DENSE_SLOTS`): the shift loop compares against
/// `top[position − 1]` directly instead of loading `values[out[position − 1]]`, which takes the
/// dependent loads off the loop's critical path.
#[inline(always)]
fn dense_insertion<F: Real, const TIES_HIGH: bool>(
    values: &[F],
    skip: Option<usize>,
    out: &mut [u32],
    walk: impl Iterator<Item = usize>,
) {
    let count = out.len();
    let mut top = [F::zero(); DENSE_SLOTS];
    let top = &mut top[..count];
    let mut filled = 0usize;
    for i in walk {
        let value = values[i];
        if Some(i) == skip {
            continue;
        }
        if filled == count {
            let minimum = top[count - 1];
            if !(value > minimum || (TIES_HIGH && value == minimum)) {
                continue;
            }
            filled -= 1;
        }
        let mut position = filled;
        while position > 0
            && (top[position - 1] < value || (TIES_HIGH && top[position - 1] == value))
        {
            top[position] = top[position - 1];
            out[position] = out[position - 1];
            position -= 1;
        }
        top[position] = value;
        out[position] = i as u32;
        filled += 1;
    }
}

/// A guess, carried from one row of a batch to the next, of a value that a few more than
/// `count` entries of the next row reach: the running average of the rows' `count`-th largest
/// entries (the label left out) less ¾ of the running average of their spreads (between that
/// entry and the row's middle selected entry); no guess for selections of fewer than 8. The
/// averages are exponential, each row weighing `HINT_SMOOTHING` = ¼: averaged, the guess
/// misses less often than one from the previous row alone, and lists fewer candidates (rows of
/// 100 and 1000 entries roughly normal, 16 selected: the lower second guess was needed for
/// 3.5 % of the rows instead of 10.5 %, both guesses missed for 0.02 % instead of 0.65 %, and
/// 25.9 candidates were listed on average instead of 27.5). Where the guess holds, the row is read once, its
/// candidates listed straight away (no bound pass): for rows of similar scale, as the rows of
/// one batch of logits are. Where too few reach it, a lower second guess is tried; where that
/// fails too, or too many reach a guess, the row runs the unhinted selection. The last row of
/// each block of eight joins the averages ([`SelectionHint::update`]; every row's joining cost
/// 3 % of NeuralSort's and SoftSort's loss at n = 100, m = 16, for a guess of the same
/// quality), and the guess is made from them once per block ([`SelectionHint::refresh`]): a
/// row's selection then does not wait on the previous row's, and the rows of a block overlap
/// in the CPU (SoftSort and NeuralSort at n = 100, m = 16, batch 128: 2–7 % faster in each of
/// three code layouts; n = 1000 unchanged). The result is the same either way: the hint only
/// decides how it is found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SelectionHint {
    /// NaN: no guess.
    pub(crate) bound: f32,
    /// A lower second guess, for a row that too few entries reach the first for (NaN with
    /// the first): the running average of the rows' lowest selected entries less three times
    /// the margin.
    pub(crate) lower: f32,
    /// Rows still to select without guessing: where both guesses miss, the next 1, then 2,
    /// 4, … 16 rows (after consecutive misses) take the unhinted steps at once, so that rows
    /// whose scales vary too much for a guess pay for a missed pass on one row in up to 17.
    pub(crate) skip: u8,
    /// The rows the last miss skipped (doubled at the next miss, up to 16; 0 after a guess that
    /// held).
    pub(crate) backoff: u8,
    /// The running averages of the rows' lowest selected entries and of their spreads (NaN:
    /// none yet).
    lowest: f32,
    spread: f32,
}

impl SelectionHint {
    /// No guess yet.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(crate) const NONE: Self = Self {
        bound: f32::NAN,
        lower: f32::NAN,
        skip: 0,
        backoff: 0,
        lowest: f32::NAN,
        spread: f32::NAN,
    };

    /// Whether this row should start from the guess (there is one and no miss asks to skip
    /// it); counts a skipped row.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn take(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        !self.bound.is_nan()
    }

    /// Records whether a row's guesses held (see `skip`).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn record(&mut self, held: bool) {
        if held {
            self.backoff = 0;
        } else {
            self.backoff = (self.backoff * 2).clamp(1, MAX_SKIPPED_ROWS);
            self.skip = self.backoff;
        }
    }

    /// Adds a row's selection `out` (in rank order) over `values` to the running averages;
    /// the guess itself changes at the next [`SelectionHint::refresh`]. (Only the AVX2
    /// selection takes a hint.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn update(&mut self, values: &[f32], out: &[u32]) {
        let count = out.len();
        if count < HINTED_MIN_COUNT {
            return;
        }
        let lowest = values[out[count - 1] as usize];
        let spread = values[out[(count - 1) / 2] as usize] - lowest;
        if self.lowest.is_nan() {
            (self.lowest, self.spread) = (lowest, spread);
        } else {
            self.lowest += HINT_SMOOTHING * (lowest - self.lowest);
            self.spread += HINT_SMOOTHING * (spread - self.spread);
        }
    }

    /// The guess from the running averages, made once per block of rows so that a row's
    /// selection does not wait on the previous row's.
    #[cfg_attr(not(all(target_arch = "x86_64", feature = "alloc")), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn refresh(&mut self) {
        let margin = self.spread * HINT_MARGIN;
        let (bound, lower) = (self.lowest - margin, self.lowest - 3.0 * margin);
        if bound.is_finite() && lower.is_finite() {
            (self.bound, self.lower) = (bound, lower);
        } else {
            (self.bound, self.lower) = (f32::NAN, f32::NAN);
            (self.lowest, self.spread) = (f32::NAN, f32::NAN);
        }
    }
}

/// Selections of fewer entries take no hint: the spread of a few entries says little (for 4
/// or 5 of 37–1000 uniform entries the guess held for half the rows, and a guess that fails
/// costs a pass over the row).
const HINTED_MIN_COUNT: usize = 8;
/// The most rows skipped after consecutive missed guesses.
const MAX_SKIPPED_ROWS: u8 = 16;
/// The guess's distance below the running average of the rows' lowest selected entries, in
/// units of the running average of their spreads.
const HINT_MARGIN: f32 = 0.75;
/// The weight of a row's entries in the running averages of the guess.
const HINT_SMOOTHING: f32 = 0.25;

#[cfg(test)]
mod tests {
    use super::rank_threshold;
    use crate::Real;

    /// After consecutive missed guesses the hint sits out 1, 2, 4, 8, 16, 16, … rows; a guess
    /// that holds resets that; without a guess there is nothing to take.
    #[test]
    fn missed_guesses_back_off() {
        let mut hint = super::SelectionHint::NONE;
        assert!(!hint.take());
        hint.update(
            &[5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.25],
            &[0, 1, 2, 3, 4, 5, 6, 7],
        );
        hint.refresh();
        assert!(hint.bound < 0.5 && hint.lower < hint.bound);
        let mut skipped = alloc::vec::Vec::new();
        for _ in 0..7 {
            assert!(hint.take());
            hint.record(false);
            let mut rows = 0;
            while !hint.take() {
                rows += 1;
            }
            skipped.push(rows);
        }
        assert_eq!(skipped, [1, 2, 4, 8, 16, 16, 16]);
        hint.record(true);
        hint.record(false);
        assert!(!hint.take() && hint.take());
    }

    /// The count-th largest value (without `skip`) by sorting, and whether exactly `count` are
    /// at or above it.
    fn expected<F: Real>(values: &[F], skip: Option<usize>, count: usize) -> (F, bool) {
        let mut kept: alloc::vec::Vec<F> = values
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != skip)
            .map(|(_, &v)| v)
            .collect();
        kept.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let threshold = kept[count - 1];
        (
            threshold,
            kept.iter().filter(|&&v| v >= threshold).count() == count,
        )
    }

    fn check<F: Real>(values: &[F]) {
        for count in 1..values.len() {
            for skip in [None, Some(0), Some(values.len() / 2)] {
                let (threshold, exact) = rank_threshold(values, skip, count, 0).unwrap();
                let (want, want_exact) = expected(values, skip, count);
                // The search may stop at any value strictly between the count-th and the
                // (count+1)-th largest when that separates exactly `count` entries.
                if exact {
                    assert!(
                        want_exact,
                        "count {count}: exact at {threshold:?}, want {want:?}"
                    );
                    assert!(threshold <= want);
                } else {
                    assert_eq!(threshold, want, "count {count}, skip {skip:?}");
                }
            }
        }
    }

    #[test]
    fn the_threshold_is_the_count_th_largest_in_f32_and_f64() {
        let wide = [
            -4.8, 1.6, 0.3, -0.35, -2.9, 2.2, 0.43, 0.57, 0.75, -0.15, 1e30, -1e30, 1e-30, -1e-30,
            0.0, -0.0, 2.2, 2.2, 5e-320, -5e-320,
        ];
        check::<f64>(&wide);
        check::<f64>(&[
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.0,
            1.0,
            -1.0,
            f64::MAX,
            f64::MIN,
        ]);
        let narrow: alloc::vec::Vec<f32> = wide.iter().map(|&v| v as f32).collect();
        check::<f32>(&narrow);
        check::<f32>(&[
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN,
        ]);
    }

    /// The branch-free path itself (not the insertion fallback) selects typical rows.
    #[test]
    fn typical_rows_take_the_threshold_path() {
        let mut random = crate::test_random::Xorshift::new(99);
        let row: alloc::vec::Vec<f64> = (0..100).map(|_| random.uniform() * 8.0 - 4.0).collect();
        let mut out = [0u32; 15];
        assert!(super::threshold_select::<f64, false>(
            &row,
            None,
            Some(7),
            &mut out
        ));
        let mut out32 = [0u32; 15];
        let row32: alloc::vec::Vec<f32> = row.iter().map(|&v| v as f32).collect();
        assert!(super::threshold_select::<f32, true>(
            &row32,
            None,
            Some(7),
            &mut out32
        ));
        let mut order: alloc::vec::Vec<usize> = (0..100).filter(|&i| i != 7).collect();
        order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
        let want: alloc::vec::Vec<u32> = order[..15].iter().map(|&i| i as u32).collect();
        assert_eq!(&out[..], &want[..]);
    }

    /// The merge over a preselected row gives the search's indices, for every count, on rows
    /// with many ties (also with the label's value) and with −0 beside +0.
    #[test]
    fn the_merge_over_a_preselection_equals_the_search() {
        let mut random = crate::test_random::Xorshift::new(0x243f_6a88_85a3_08d3);
        for trial in 0..3000 {
            let n = 2 + (random.next_u64() % 60) as usize;
            let levels = [2u64, 3, 5, 1000][trial % 4];
            let row: alloc::vec::Vec<f32> = (0..n)
                .map(|_| {
                    let bits = random.next_u64();
                    let level = (bits % levels) as f32 - (levels / 2) as f32;
                    if level == 0.0 && bits & 1024 != 0 {
                        -0.0
                    } else {
                        level
                    }
                })
                .collect();
            let label = (random.next_u64() % n as u64) as usize;
            let m = 2 + (random.next_u64() % (n as u64 - 1)) as usize;
            let mut selection = alloc::vec![0u32; m];
            selection[0] = label as u32;
            super::largest_indices_unchecked(&row, Some(label), &mut selection[1..]);
            let selected: alloc::vec::Vec<f32> =
                selection.iter().map(|&i| row[i as usize]).collect();
            for count in 1..=m.min(super::RANKED) {
                let mut searched = alloc::vec![0u32; count];
                super::largest_indices_ties_high_unchecked(&selected, None, &mut searched);
                let mut merged = alloc::vec![u32::MAX; count];
                super::largest_indices_ties_high_of_preselected(&selected, &mut merged);
                assert_eq!(
                    merged, searched,
                    "trial {trial}: {selected:?}, count {count}"
                );
            }
        }
    }
}
