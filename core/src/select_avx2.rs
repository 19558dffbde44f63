//! The partial selection of [`crate::select`] for `f32` rows, written with AVX2 intrinsics
//! (x86-64; chosen at compile time where the target has AVX2 and POPCNT, else at run time
//! from `cpuid`, see [`crate::cpu`]): the same indices in the same order as
//! the portable code. Measured on the development machine by the `bench_select` example (2048
//! fresh rows of normal logits, 15 selected beside the label, three runs): 2.4–3.0× faster at
//! n = 100 (≈ 210–220 ns a row against 510–660) and 1.7–2.1× at n = 1000 (≈ 550–740 ns against
//! 1130–1500).
//!
//! The steps, each as whole-register work:
//! 1. the smallest and largest entry (8 lanes of running minima and maxima);
//! 2. a threshold `t` with `count` to `count + SLACK` entries at or above it, by bisection of the
//!    value range (each step one compare-and-subtract per block of 8 and a horizontal sum; three
//!    or four steps on typical rows);
//! 3. the entries at or above `t` compacted into a candidate list, branch-free: a compress
//!    permutation (`vpermps`, the lane order looked up from the comparison's 8-bit mask) and a
//!    whole-register store per block, the length advancing by the mask's population count;
//! 4. each candidate's rank = how many candidates rank above it (value descending, ties by index:
//!    lower first, or higher with `TIES_HIGH`), counted against 8 candidates per compare; the
//!    first `count` ranks are the output.
//!
//! Long rows (n ≥ 32·(count + 1)) first keep only the entries at or above a lower bound from the
//! maxima of 64 groups (see [`group_maxima_bound`]), typically a few dozen of 1000, and select
//! among those. NaN entries are never selected (the portable code places them somewhere
//! unspecified). What this path does not handle (infinite entries, ties that straddle the
//! threshold beyond the slack, too many candidates, fewer than `count` ordered entries) it
//! declines, and the portable code runs instead.

use core::arch::x86_64::{
    _mm256_add_epi32, _mm256_and_ps, _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmp_ps,
    _mm256_cmpgt_epi32, _mm256_cvtepu8_epi32, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_max_ps,
    _mm256_min_ps, _mm256_movemask_ps, _mm256_or_ps, _mm256_permutevar8x32_epi32,
    _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32,
    _mm256_setzero_si256, _mm256_storeu_ps, _mm256_storeu_si256, _mm256_sub_epi32,
    _mm_cvtsi64_si128, _CMP_EQ_OQ, _CMP_GE_OQ, _CMP_GT_OQ,
};

// The portable threshold selection's slack, its candidates at most (count ≤ 56 plus the
// slack) and its largest count: the same limits here.
use crate::select::{BOUND_MAX_COUNT as MAX_COUNT, RANKED, SLACK};

/// Candidates kept by a long row's lower-bound pass at most.
const BOUNDED: usize = 256;
/// Slots a candidate list needs beyond its capacity: the compaction checks the capacity once
/// every 8 blocks (at most 64 entries) and stores whole registers (8 more).
const OVERRUN: usize = 72;
/// Bisection steps before the path declines (values spread over many binades).
const MAX_STEPS: usize = 64;

/// For each 8-bit mask, the lanes whose bit is set, in order, packed one per byte: the
/// permutation that moves the chosen lanes of a register to its front.
const COMPRESS: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut mask = 0;
    while mask < 256 {
        let mut packed = 0u64;
        let mut filled = 0;
        let mut lane = 0;
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                packed |= (lane as u64) << (8 * filled);
                filled += 1;
            }
            lane += 1;
        }
        table[mask] = packed;
        mask += 1;
    }
    table
};

/// The `out.len()` largest of `values` except `skip`, as [`crate::select::largest_indices`]
/// (`TIES_HIGH = false`) or [`crate::select::largest_indices_ties_high`] would write them.
/// `false` (with `out` unspecified) where this path declines; the caller then runs the
/// portable selection. NaN entries are never selected here (the portable code places them
/// somewhere unspecified); a row with fewer than `count` other entries is declined.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT.
#[target_feature(enable = "avx2,popcnt")]
pub(crate) unsafe fn largest_indices_f32<const TIES_HIGH: bool>(
    values: &[f32],
    skip: Option<usize>,
    out: &mut [u32],
) -> bool {
    let count = out.len();
    let skip = skip.filter(|&position| position < values.len());
    if count == 0
        || count > MAX_COUNT
        || values.len() > i32::MAX as usize
        || values.len() < count + usize::from(skip.is_some())
    {
        return false;
    }
    // Shorter rows go straight to the bisection: below 32·(count + 1) entries that was faster
    // than the lower-bound pass first (5 of 100: ≈ 176 against 252 ns a row, 15 of 300: 315
    // against 375; at 64·(count + 1), 15 of 1000 took 960–1320 ns against 650).
    if values.len() < 32 * (count + 1) {
        return select_among::<TIES_HIGH>(values, None, skip, out);
    }
    // A long row: only entries at or above a lower bound of the count(+1)-th largest can
    // qualify (typically a few dozen of 1000).
    let rank = count + usize::from(skip.is_some());
    let Some(bound) = group_maxima_bound(values, rank) else {
        return false;
    };
    let mut candidate_values = [f32::NAN; BOUNDED + OVERRUN];
    let mut candidate_indices = [0u32; BOUNDED + OVERRUN];
    let Some(mut len) = compact_at_or_above::<false, false>(
        values,
        &[],
        bound,
        &mut [],
        &mut candidate_indices,
        BOUNDED,
    ) else {
        return false;
    };
    for (value, &position) in candidate_values[..len]
        .iter_mut()
        .zip(&candidate_indices[..len])
    {
        *value = values[position as usize];
    }
    if let Some(skip) = skip {
        if values[skip] >= bound {
            remove_index(
                &mut candidate_values,
                &mut candidate_indices,
                &mut len,
                skip as u32,
            );
        }
    }
    // Pad to whole registers with NaN, which no ordered comparison counts.
    let padded = len.div_ceil(8) * 8;
    candidate_values[len..padded].fill(f32::NAN);
    select_among::<TIES_HIGH>(
        &candidate_values[..padded],
        Some(&candidate_indices[..padded]),
        None,
        out,
    )
}

/// A value with at least `rank` entries of `values` at or above it (`rank ≤ 64`,
/// `values.len() ≥ 64`), from the maxima of 64 disjoint groups (lane l of every eighth block,
/// so that eight running maxima are independent and the pass runs at load speed): each lane's
/// eight group maxima sorted by a 19-comparator network, the j-th largest taken (j = ⌈rank/8⌉),
/// and the smallest of those over the lanes: every lane has j maxima at or above it, so 8·j ≥
/// rank entries are. NaN entries are passed over; `None` where the bound is not finite.
#[inline(always)]
unsafe fn group_maxima_bound(values: &[f32], rank: usize) -> Option<f32> {
    let blocks = values.len() / 8;
    if rank == 0 || rank > 64 || blocks < 8 {
        return None;
    }
    let mut maxima = [_mm256_set1_ps(f32::NEG_INFINITY); 8];
    let pointer = values.as_ptr();
    let mut first = 0;
    while first < blocks {
        // Eight blocks at a time (fewer at the end), block `first + group` into `group`; a NaN
        // in the first operand leaves the running maximum (the second) as it is.
        for (group, maximum) in maxima.iter_mut().enumerate().take(blocks - first) {
            let block_values = _mm256_loadu_ps(pointer.add((first + group) * 8));
            *maximum = _mm256_max_ps(block_values, *maximum);
        }
        first += 8;
    }
    // The last partial block's entries join the groups of block 0's lanes.
    let mut tail = [f32::NAN; 8];
    tail[..values.len() - blocks * 8].copy_from_slice(&values[blocks * 8..]);
    maxima[0] = _mm256_max_ps(_mm256_loadu_ps(tail.as_ptr()), maxima[0]);
    // Per lane, descending: maxima[0] ≥ maxima[1] ≥ … ≥ maxima[7].
    const NETWORK: [(usize, usize); 19] = [
        (0, 2),
        (1, 3),
        (4, 6),
        (5, 7),
        (0, 4),
        (1, 5),
        (2, 6),
        (3, 7),
        (0, 1),
        (2, 3),
        (4, 5),
        (6, 7),
        (2, 4),
        (3, 5),
        (1, 4),
        (3, 6),
        (1, 2),
        (3, 4),
        (5, 6),
    ];
    for (upper, lower) in NETWORK {
        let (a, b) = (maxima[upper], maxima[lower]);
        maxima[upper] = _mm256_max_ps(a, b);
        maxima[lower] = _mm256_min_ps(a, b);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), maxima[rank.div_ceil(8) - 1]);
    let bound = lanes
        .iter()
        .fold(f32::INFINITY, |low, &value| low.min(value));
    bound.is_finite().then_some(bound)
}

/// Lists the entries of `values` at or above `threshold` at the front of `listed_indices`
/// (their reported index: `indices[p]` with `WITH_INDICES`, else p) and, with `WITH_VALUES`,
/// of `listed_values`; their number, or `None` when more than `capacity` qualify. Branch-free
/// per block (a compress permutation and a whole-register store each time, the length
/// advancing by the mask's population count): which blocks hold candidates is a coin toss a
/// branch would mispredict. A long row's pass lists positions only (one permutation and one
/// store per block; the few candidates' values are read back afterwards). The lists need
/// `capacity + OVERRUN` slots.
#[inline(always)]
unsafe fn compact_at_or_above<const WITH_INDICES: bool, const WITH_VALUES: bool>(
    values: &[f32],
    indices: &[u32],
    threshold: f32,
    listed_values: &mut [f32],
    listed_indices: &mut [u32],
    capacity: usize,
) -> Option<usize> {
    assert!(!WITH_VALUES || listed_values.len() >= capacity + OVERRUN);
    assert!(listed_indices.len() >= capacity + OVERRUN);
    assert!(!WITH_INDICES || indices.len() >= values.len());
    let bound = _mm256_set1_ps(threshold);
    let blocks = values.len() / 8;
    let mut positions = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let eight = _mm256_set1_epi32(8);
    let mut listed = 0usize;
    let mut first = 0;
    while first < blocks {
        // At most 64 entries join per 8 blocks: within the OVERRUN slots.
        if listed > capacity {
            return None;
        }
        for block in first..(first + 8).min(blocks) {
            let block_values = _mm256_loadu_ps(values.as_ptr().add(block * 8));
            let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(block_values, bound));
            let permutation =
                _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(COMPRESS[mask as usize] as i64));
            let block_indices = if WITH_INDICES {
                _mm256_loadu_si256(indices.as_ptr().add(block * 8).cast())
            } else {
                positions
            };
            if WITH_VALUES {
                _mm256_storeu_ps(
                    listed_values.as_mut_ptr().add(listed),
                    _mm256_permutevar8x32_ps(block_values, permutation),
                );
            }
            _mm256_storeu_si256(
                listed_indices.as_mut_ptr().add(listed).cast(),
                _mm256_permutevar8x32_epi32(block_indices, permutation),
            );
            listed += mask.count_ones() as usize;
            positions = _mm256_add_epi32(positions, eight);
        }
        first += 8;
    }
    for (position, &value) in values.iter().enumerate().skip(blocks * 8) {
        if listed > capacity {
            return None;
        }
        if value >= threshold {
            if WITH_VALUES {
                listed_values[listed] = value;
            }
            listed_indices[listed] = if WITH_INDICES {
                indices[position]
            } else {
                position as u32
            };
            listed += 1;
        }
    }
    (listed <= capacity).then_some(listed)
}

/// Removes the entry with reported index `index` (if listed) from the first `*len` entries,
/// moving the last one into its place.
#[inline(always)]
fn remove_index(values: &mut [f32], indices: &mut [u32], len: &mut usize, index: u32) {
    if let Some(position) = indices[..*len].iter().position(|&listed| listed == index) {
        let last = *len - 1;
        values[position] = values[last];
        indices[position] = indices[last];
        *len = last;
    }
}

/// The number of `values` at or above `threshold` (8 lanes of counts, the tail scalar).
#[inline(always)]
unsafe fn count_at_or_above(values: &[f32], threshold: f32) -> usize {
    let bound = _mm256_set1_ps(threshold);
    let blocks = values.len() / 8;
    let mut counts = _mm256_setzero_si256();
    for block in 0..blocks {
        let at_or_above =
            _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_loadu_ps(values.as_ptr().add(block * 8)), bound);
        counts = _mm256_sub_epi32(counts, _mm256_castps_si256(at_or_above));
    }
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), counts);
    let tail = values[blocks * 8..]
        .iter()
        .filter(|&&value| value >= threshold)
        .count();
    lanes.iter().sum::<u32>() as usize + tail
}

/// The smallest and largest of the ordered entries, and whether those are finite; `None` when
/// no entry is ordered. NaN entries (the padding of candidate lists among them) are passed over.
#[inline(always)]
unsafe fn extremes(values: &[f32]) -> Option<(f32, f32)> {
    let blocks = values.len() / 8;
    let mut smallest = _mm256_set1_ps(f32::INFINITY);
    let mut largest = _mm256_set1_ps(f32::NEG_INFINITY);
    for block in 0..blocks {
        let block_values = _mm256_loadu_ps(values.as_ptr().add(block * 8));
        // A NaN in the first operand leaves the running extreme (the second) as it is.
        smallest = _mm256_min_ps(block_values, smallest);
        largest = _mm256_max_ps(block_values, largest);
    }
    let mut low = [0f32; 8];
    let mut high = [0f32; 8];
    _mm256_storeu_ps(low.as_mut_ptr(), smallest);
    _mm256_storeu_ps(high.as_mut_ptr(), largest);
    let tail = &values[blocks * 8..];
    let low = low.iter().chain(tail).fold(f32::INFINITY, |a, &b| a.min(b));
    let high = high
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    (low <= high).then_some((low, high))
}

/// Steps 1–4 of the module docs over `values` (reported as `indices[p]`, or p), except
/// position `skip`.
#[inline(always)]
unsafe fn select_among<const TIES_HIGH: bool>(
    values: &[f32],
    indices: Option<&[u32]>,
    skip: Option<usize>,
    out: &mut [u32],
) -> bool {
    let count = out.len();
    let Some((smallest, largest)) = extremes(values) else {
        return false;
    };
    if !(smallest.is_finite() && largest.is_finite()) {
        return false;
    }
    let count_from = |threshold: f32| {
        count_at_or_above(values, threshold)
            - skip.map_or(0, |position| usize::from(values[position] >= threshold))
    };
    // Bisection of the value range: more than `count + SLACK` entries ≥ low, fewer than
    // `count` ≥ high, until a value leaves `count` to `count + SLACK` at or above it.
    let within = |at_or_above: usize| at_or_above >= count && at_or_above - count <= SLACK;
    let (mut low, mut high) = (smallest, largest);
    let mut threshold = None;
    let at_largest = count_from(largest);
    if within(at_largest) {
        threshold = Some(largest);
    } else if at_largest < count {
        for _ in 0..MAX_STEPS {
            let middle = low * 0.5 + high * 0.5;
            if !(middle > low && middle < high) {
                break; // adjacent values: ties straddle the count-th largest
            }
            let at_or_above = count_from(middle);
            if within(at_or_above) {
                threshold = Some(middle);
                break;
            }
            if at_or_above > count {
                low = middle;
            } else {
                high = middle;
            }
        }
    }
    let Some(threshold) = threshold else {
        return false;
    };
    let mut candidate_values = [f32::NAN; RANKED + OVERRUN];
    let mut candidate_indices = [0u32; RANKED + OVERRUN];
    let listed = match indices {
        Some(indices) => compact_at_or_above::<true, true>(
            values,
            indices,
            threshold,
            &mut candidate_values,
            &mut candidate_indices,
            RANKED,
        ),
        None => compact_at_or_above::<false, true>(
            values,
            &[],
            threshold,
            &mut candidate_values,
            &mut candidate_indices,
            RANKED,
        ),
    };
    let Some(mut len) = listed else {
        return false;
    };
    if let Some(skip) = skip {
        if values[skip] >= threshold {
            let index = indices.map_or(skip as u32, |indices| indices[skip]);
            remove_index(
                &mut candidate_values,
                &mut candidate_indices,
                &mut len,
                index,
            );
        }
    }
    if len < count {
        return false;
    }
    // Padding: NaN ranks above nothing.
    let padded = len.div_ceil(8) * 8;
    candidate_values[len..padded].fill(f32::NAN);
    // Rank by counting: distinct indices make the ranks a permutation of 0..len.
    let mut ranked = [0u32; RANKED];
    for candidate in 0..len {
        let value = _mm256_set1_ps(candidate_values[candidate]);
        let index = _mm256_set1_epi32(candidate_indices[candidate] as i32);
        let mut above = 0u32;
        for block in 0..padded / 8 {
            let others = _mm256_loadu_ps(candidate_values.as_ptr().add(block * 8));
            let other_indices =
                _mm256_loadu_si256(candidate_indices.as_ptr().add(block * 8).cast());
            let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(others, value);
            let equal = _mm256_cmp_ps::<_CMP_EQ_OQ>(others, value);
            let tie_before = if TIES_HIGH {
                _mm256_cmpgt_epi32(other_indices, index)
            } else {
                _mm256_cmpgt_epi32(index, other_indices)
            };
            let beats = _mm256_or_ps(
                greater,
                _mm256_and_ps(equal, _mm256_castsi256_ps(tie_before)),
            );
            above += _mm256_movemask_ps(beats).count_ones();
        }
        ranked[above as usize] = candidate_indices[candidate];
    }
    out.copy_from_slice(&ranked[..count]);
    true
}

#[cfg(test)]
mod tests {
    use super::largest_indices_f32;
    use crate::select::select_body;
    use alloc::vec::Vec;

    fn supported() -> bool {
        crate::cpu::has_avx2() && crate::cpu::has_popcnt()
    }

    /// Rows of `length` values: roughly normal, or drawn from `levels` values (ties), seeded.
    fn row(length: usize, levels: Option<u64>, seed: u64) -> Vec<f32> {
        let mut random = crate::test_random::Xorshift::seeded(seed);
        (0..length)
            .map(|_| {
                let bits = random.next_u64();
                match levels {
                    Some(levels) => (bits % levels) as f32 * 0.5 - 3.0,
                    None => {
                        let uniform = |shift: u32| ((bits >> shift) & 0xFFFF) as f32 / 65535.0;
                        (uniform(0) + uniform(16) + uniform(32) + uniform(48) - 2.0) * 3.4
                    }
                }
            })
            .collect()
    }

    /// Runs both paths; returns whether the AVX2 path took the row (its result then equal to
    /// the portable one, index for index).
    fn agrees<const TIES_HIGH: bool>(values: &[f32], skip: Option<usize>, count: usize) -> bool {
        let mut portable = alloc::vec![0u32; count];
        select_body::<f32, TIES_HIGH>(values, skip, &mut portable);
        let mut fast = alloc::vec![u32::MAX; count];
        // SAFETY: `supported()` was checked by the caller.
        let taken = unsafe { largest_indices_f32::<TIES_HIGH>(values, skip, &mut fast) };
        if taken {
            assert_eq!(
                fast,
                portable,
                "length {}, skip {skip:?}, count {count}, ties high {TIES_HIGH}",
                values.len()
            );
        }
        taken
    }

    #[test]
    fn equals_the_portable_selection_and_takes_typical_rows() {
        if !supported() {
            #[cfg(feature = "std")]
            std::eprintln!("no AVX2 on this CPU: the path is not used here");
            return;
        }
        let mut taken = 0;
        let mut total = 0;
        for length in [8usize, 9, 15, 31, 64, 100, 257, 300, 1000, 1003, 4000] {
            for levels in [None, Some(3), Some(40), Some(1000)] {
                for count in [1usize, 2, 5, 15, 16, 31, 56] {
                    for skip in [None, Some(0), Some(length / 3), Some(length - 1)] {
                        if count + usize::from(skip.is_some()) > length {
                            continue;
                        }
                        let values = row(length, levels, (length * 131 + count) as u64);
                        taken += usize::from(agrees::<false>(&values, skip, count));
                        taken += usize::from(agrees::<true>(&values, skip, count));
                        total += 2;
                    }
                }
            }
        }
        // The rows the loss preselects from (continuous logits, 15 of 100 or 1000 beside the
        // label) must take this path, not the fallback.
        for (length, seed) in [(100, 1), (100, 2), (1000, 3), (1000, 4)] {
            let values = row(length, None, seed);
            assert!(agrees::<false>(&values, Some(7), 15), "length {length}");
            assert!(agrees::<true>(&values, Some(7), 15), "length {length}");
        }
        assert!(
            taken * 2 > total,
            "only {taken} of {total} selections took the AVX2 path"
        );
    }

    #[test]
    fn declines_or_selects_validly_around_nan_and_infinities() {
        if !supported() {
            return;
        }
        let mut values = row(300, None, 9);
        values[5] = f32::NAN;
        values[17] = f32::NAN;
        let mut out = [0u32; 15];
        // SAFETY: checked above.
        if unsafe { largest_indices_f32::<false>(&values, Some(3), &mut out) } {
            let mut seen = [false; 300];
            for &index in &out {
                assert!(index != 3 && index != 5 && index != 17 && (index as usize) < 300);
                assert!(!seen[index as usize], "{index} twice");
                seen[index as usize] = true;
            }
        }
        values[5] = f32::INFINITY;
        values[17] = f32::NEG_INFINITY;
        // Infinite entries: declined (the portable path orders them).
        assert!(!unsafe { largest_indices_f32::<false>(&values, Some(3), &mut out) });
        // Fewer ordered entries than wanted: declined.
        let all_nan = [f32::NAN; 40];
        assert!(!unsafe { largest_indices_f32::<false>(&all_nan, None, &mut out) });
    }
}
