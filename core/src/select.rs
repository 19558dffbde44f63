//! Partial selection: the largest few values of a row, in O(n) for a small count.

use crate::Real;

/// Writes into `out` the indices of the `out.len()` largest entries of `values` whose index is
/// not `skip`, in descending order of value, ties broken by the lower index first (so the result
/// is deterministic). For a small count on a long row (count ≤ 56, n ≥ 16·(count + 1)) a
/// lower bound from group maxima and a branch-free pass leave only the few entries that can
/// qualify to the insertion step; otherwise every entry goes through insertion, most of them
/// rejected by one comparison with the current minimum. O(n + candidates · count).
///
/// Requires `out.len() ≤ values.len() − (skip is in range) as usize`.
pub fn largest_indices<F: Real>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    select::<F, false>(values, skip, out)
}

/// As [`largest_indices`], but ties go to the *higher* index first: the order a stable ascending
/// sort gives when read from its end (torch's `sort(-s, descending=True)`, which SoftSort uses).
pub fn largest_indices_ties_high<F: Real>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    select::<F, true>(values, skip, out)
}

/// Lanes of the lower-bound pass: each lane keeps the maximum of its strided share of a segment.
const BOUND_LANES: usize = 8;
/// Candidates listed by the bounded pass before it gives up and walks every entry.
const CANDIDATES: usize = 256;
/// Selections up to this size use the lower-bound pass (its maxima live on the stack).
const BOUND_MAX_COUNT: usize = 56;

fn select<F: Real, const TIES_HIGH: bool>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    let count = out.len();
    if count == 0 {
        return;
    }
    let bound = if count <= BOUND_MAX_COUNT && values.len() >= 16 * (count + 1) {
        Some(lower_bound(
            values,
            count + usize::from(skip.is_some_and(|s| s < values.len())),
        ))
    } else {
        None
    };
    insertion_select::<F, TIES_HIGH>(values, skip, out, bound);
}

/// A value `L` with at least `rank` entries of `values` at or above it, found without sorting:
/// the values are cut into `8·S ≥ rank` disjoint groups (8 strided lanes of S segments), whose
/// maxima are `8·S` distinct entries; the `rank`-th largest of those maxima is at most the
/// `rank`-th largest entry. Every entry that can be among the `rank` largest is therefore `≥ L`,
/// and the second pass only has to look at those (on typical data a few dozen of 1000). The lane
/// loop compiles to SIMD compares and blends. With `skip` in range the caller asks for one rank
/// more: removing one entry lowers any rank by at most one.
fn lower_bound<F: Real>(values: &[F], rank: usize) -> F {
    let segments = rank.div_ceil(BOUND_LANES);
    let segment_len = (values.len() / segments) / BOUND_LANES * BOUND_LANES;
    let mut maxima = [F::zero(); BOUND_MAX_COUNT + BOUND_LANES];
    let mut found = 0;
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
        maxima[found..found + BOUND_LANES].copy_from_slice(&lanes);
        found += BOUND_LANES;
    }
    // The rank-th largest of the maxima (a small insertion sort, descending).
    let maxima = &mut maxima[..found];
    for i in 1..maxima.len() {
        let value = maxima[i];
        let mut j = i;
        while j > 0 && maxima[j - 1] < value {
            maxima[j] = maxima[j - 1];
            j -= 1;
        }
        maxima[j] = value;
    }
    maxima[rank - 1]
}

/// The selection by insertion, over the values not below `bound` (all values when `None`).
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
    let walk_all = bound.is_none() || listed > CANDIDATES;
    let total = if walk_all { values.len() } else { listed };
    let walk = (0..total).map(|step| {
        if walk_all {
            step
        } else {
            candidates[step] as usize
        }
    });
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
