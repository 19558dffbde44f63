//! The partial selection of [`crate::select`] for `f32` rows, written with AVX2 intrinsics
//! (x86-64; chosen at compile time where the target has AVX2 and POPCNT, else at run time
//! from `cpuid`, see [`crate::cpu`]): the same indices in the same order as
//! the portable code. Measured on the development machine by the `bench_select` example (2048
//! fresh rows of normal logits, 15 selected beside the label, three runs alternating with the
//! previous version, which bisected for the threshold: 2.5–2.6× at n = 100 and 2.5–2.8× at
//! n = 1000 in those runs): 3.4–3.8× faster than the portable code at n = 100 (≈ 170–200 ns a
//! row) and 2.8–3.5× at n = 1000 (≈ 530–610 ns, the rows mostly outside the cache); five runs
//! at commit `c270969` (the long rows' network written out, the short rows' two insertion
//! chains), in a slower phase of the machine: 3.2–4.2× (170–204 ns) and 3.7–4.8× (408–511 ns).
//!
//! The steps, each as whole-register work:
//! 1. one pass keeps, in each of the 8 lanes, the `J` largest entries that lane sees (`J` =
//!    ⌈r/8⌉ + 1 for r = `count`, plus one for a skipped position, up to 4; 8 beyond r = 24);
//! 2. the threshold `t` is the r-th largest of those 8·`J` entries (each compared against all,
//!    8 at a time; beyond r = 8 only the lanes' second and lower entries are tried, see
//!    [`largest_with_rank`]): at least r entries reach it, typically a few more (16–18 of 100
//!    or 1000 normal logits for r = 16, see [`column_tops_bound`]);
//! 3. the entries at or above `t` compacted into a candidate list, branch-free: a compress
//!    permutation (`vpermps`, the lane order looked up from the comparison's 8-bit mask) and a
//!    whole-register store per block, the length advancing by the mask's population count;
//! 4. each candidate's rank = how many candidates rank above it (value descending, ties by index:
//!    lower first, or higher with `TIES_HIGH`), counted for 8 candidates at once against each
//!    candidate by one compare (the list is in index order, so the tie rule is `≥` on one side
//!    of a candidate and `>` on the other; first without the tie rule, one compare per pair,
//!    kept where the counts sum to 0 + 1 + … + (len − 1), which proves there is no tie); the
//!    first `count` ranks are the output.
//!
//! In the loss's batch path, a row may start from a guess carried over from the previous rows
//! ([`crate::select::SelectionHint`], made once per block of eight rows): where `count` (besides the skipped entry) to 64 (the
//! skipped one included) entries reach it, steps 1–2 (or the long rows' bound pass) are left
//! out, and the row is read once; where too few reach it, a lower second guess is tried; where
//! more than 64 reach either, the steps above run. After a row whose guesses both miss, the
//! next 1, 2, 4, … 16 rows skip guessing (rows of varying scale, 4× either way and shifted:
//! SoftSort n = 1000, m = 16 85–90 µs guessing every row, 70–73 µs with the back-off, 79 µs
//! without a guess). With normal logits 87 % of the rows keep the first guess. In alternating runs
//! of the loss (SoftSort, batch 128, m = 16, one thread), the guess with the ranking's no-tie
//! pass and the long rows' sparse listing below took n = 100 from 42.3–42.7 to 37.7–44.5 µs
//! and n = 1000 from 75.3–76.4 to 66.2–66.9 µs (commit `b54717c`).
//!
//! The loss's batch path also has the row's range check (every |v| ≤ 10³², no NaN) made in
//! step 1's pass, or the long rows' first pass ([`largest_indices_within`]): the row is read
//! once instead of twice.
//!
//! Long rows (n ≥ 32·(count + 1)) first keep only the entries at or above a lower bound from the
//! maxima of 64 groups (see [`group_maxima_bound`]), typically a few dozen of 1000, and select
//! among those; the listing of a long row ([`Candidates::list_sparse_at_or_above`]) first
//! keeps one comparison mask per block and then compresses only the blocks with a candidate.
//! NaN entries are never selected (the portable code places them somewhere unspecified);
//! infinite entries are ranked like any other. What this path does not handle
//! (a bound of −∞, where fewer than `count` (+1 with a skip) entries lie above −∞; an infinite
//! long-row bound; more than 256 or 128 candidates from ties at the bound) it declines, and the
//! portable code runs instead.

use core::mem::MaybeUninit;

use core::arch::x86_64::{
    __m256, __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_blendv_ps, _mm256_castps_si256,
    _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmpeq_epi8, _mm256_cmpgt_epi32,
    _mm256_cvtepu8_epi32, _mm256_extract_epi32, _mm256_loadu_ps, _mm256_loadu_si256,
    _mm256_max_epu32, _mm256_max_ps, _mm256_min_ps, _mm256_movemask_epi8, _mm256_movemask_ps,
    _mm256_permutevar8x32_epi32, _mm256_permutevar8x32_ps, _mm256_set1_epi32, _mm256_set1_ps,
    _mm256_setr_epi32, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_storeu_ps,
    _mm256_storeu_si256, _mm256_sub_epi32, _mm_cvtsi64_si128, _CMP_GE_OQ, _CMP_GT_OQ,
};

// The portable threshold selection's largest count: the same limit here.
use crate::select::BOUND_MAX_COUNT as MAX_COUNT;

/// Candidates kept by a long row's lower-bound pass at most.
const BOUNDED: usize = 256;
/// Slots a candidate list needs beyond its capacity: the compaction checks the capacity once
/// every 8 blocks (at most 64 entries) and stores whole registers (8 more).
const OVERRUN: usize = 72;
/// A long row's candidates are ranked directly up to this many (typically 20 for 16 of 1000),
/// else selected among by steps 1–4.
const DIRECTLY_RANKED: usize = 40;
/// Candidates a selection lists and ranks at most (it declines beyond: ties at the bound).
const LISTED: usize = 128;

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
    matches!(
        select_checked::<TIES_HIGH, false>(values, skip, out, f32::INFINITY),
        Outcome::Selected
    )
}

/// What [`largest_indices_within`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `out` holds the selection, and every entry of the row has `|v| ≤ limit`.
    Selected,
    /// This path declined (`out` unspecified, the range not known): run the check and the
    /// portable selection.
    Declined,
    /// Some entry is NaN or has `|v| > limit` (`out` unspecified).
    OutOfRange,
}

/// The range check folded into a pass over a row: whether every entry seen so far has
/// `|v| ≤ limit`, from the largest magnitude bit pattern per lane (the bits of non-negative
/// floats order as their values, NaN's lie above +∞'s: NaN fails). Without `CHECK` it does
/// nothing.
struct RangeCheck<const CHECK: bool> {
    /// Per lane, the largest magnitude bit pattern seen (`|v|`'s bits: ordered as the values,
    /// and NaN above every finite value and ∞).
    largest: __m256i,
    limit: f32,
    magnitude: __m256i,
    tail_within: bool,
}

impl<const CHECK: bool> RangeCheck<CHECK> {
    #[inline(always)]
    unsafe fn new(limit: f32) -> Self {
        Self {
            largest: _mm256_setzero_si256(),
            limit,
            magnitude: _mm256_set1_epi32(0x7fff_ffff),
            tail_within: true,
        }
    }

    /// Checks a block of 8 entries: one AND and one unsigned maximum.
    #[inline(always)]
    unsafe fn block(&mut self, values: __m256) {
        if CHECK {
            let bits = _mm256_and_si256(_mm256_castps_si256(values), self.magnitude);
            self.largest = _mm256_max_epu32(self.largest, bits);
        }
    }

    /// Checks the entries past the last whole block.
    #[inline(always)]
    fn tail(&mut self, values: &[f32]) {
        if CHECK {
            let limit = self.limit;
            self.tail_within = values.iter().all(|v| v.abs() <= limit);
        }
    }

    /// Whether every entry checked is within the limit (a non-negative `limit`, or +∞).
    #[inline(always)]
    unsafe fn passed(&self) -> bool {
        if !CHECK {
            return true;
        }
        let mut largest = [0u32; 8];
        _mm256_storeu_si256(largest.as_mut_ptr().cast(), self.largest);
        let limit = self.limit.to_bits();
        largest.iter().all(|&bits| bits <= limit) && self.tail_within
    }

    /// After a bound's pass over the row: `OutOfRange` where the check failed, else the bound,
    /// or `Declined` where there is none.
    #[inline(always)]
    unsafe fn bound_or_outcome(&self, bound: Option<f32>) -> Result<f32, Outcome> {
        if !self.passed() {
            return Err(Outcome::OutOfRange);
        }
        bound.ok_or(Outcome::Declined)
    }
}

/// [`largest_indices_f32`] with the range check of [`largest_indices_within`] where `CHECK`.
#[inline(always)]
unsafe fn select_checked<const TIES_HIGH: bool, const CHECK: bool>(
    values: &[f32],
    skip: Option<usize>,
    out: &mut [u32],
    limit: f32,
) -> Outcome {
    let count = out.len();
    let skip = skip.filter(|&position| position < values.len());
    if count == 0
        || count > MAX_COUNT
        || values.len() > i32::MAX as usize
        || values.len() < count + usize::from(skip.is_some())
    {
        return Outcome::Declined;
    }
    let mut check = RangeCheck::<CHECK>::new(limit);
    // Shorter rows go straight to the one-pass threshold (below 32·(count + 1) entries the
    // lower-bound pass first did not pay off, measured with the earlier bisection: 5 of 100 in
    // ≈ 176 against 252 ns a row, 15 of 300 in 315 against 375).
    if values.len() < 32 * (count + 1) {
        let rank = count + usize::from(skip.is_some());
        let threshold = rank_bound(values, rank, &mut check);
        let threshold = match check.bound_or_outcome(threshold) {
            Ok(threshold) => threshold,
            Err(outcome) => return outcome,
        };
        return outcome(select_among::<TIES_HIGH>(
            values, None, skip, out, threshold,
        ));
    }
    // A long row: only entries at or above a lower bound of the count(+1)-th largest can
    // qualify (typically a few dozen of 1000).
    let rank = count + usize::from(skip.is_some());
    let bound = group_maxima_bound(values, rank, &mut check);
    let bound = match check.bound_or_outcome(bound) {
        Ok(bound) => bound,
        Err(outcome) => return outcome,
    };
    let mut unchecked = RangeCheck::<false>::new(limit);
    match select_at_or_above::<TIES_HIGH, false>(values, skip, out, bound, BOUNDED, &mut unchecked)
    {
        FromBound::Selected => Outcome::Selected,
        // (The range check passed above; `unchecked` always passes.)
        FromBound::OutOfRange | FromBound::TooFew | FromBound::TooMany => Outcome::Declined,
    }
}

/// What [`select_at_or_above`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FromBound {
    /// `out` holds the selection (and the range check passed).
    Selected,
    /// The range check failed.
    OutOfRange,
    /// Fewer than `out.len()` entries (besides the skipped one) reach the bound.
    TooFew,
    /// More than the capacity reach it (or ties at a threshold among them overflowed).
    TooMany,
}

/// The `out.len()` largest entries except `skip`, from a value `bound` taken to have at least
/// that many at or above it: the entries at or above it listed (at most `capacity ≤ BOUNDED`,
/// the range check `check` made in the same pass), then ranked directly (up to
/// `DIRECTLY_RANKED`) or selected among by steps 1–4. Exact whatever the bound: where it is
/// too high, [`FromBound::TooFew`] says so.
#[inline(always)]
unsafe fn select_at_or_above<const TIES_HIGH: bool, const CHECK: bool>(
    values: &[f32],
    skip: Option<usize>,
    out: &mut [u32],
    bound: f32,
    capacity: usize,
    check: &mut RangeCheck<CHECK>,
) -> FromBound {
    let count = out.len();
    let mut candidates = Candidates::<{ BOUNDED + OVERRUN }>::new();
    // Short rows list every block (most hold a candidate); long rows note each block's
    // comparison first and compress only the blocks that hold one.
    let short = values.len() < SHORT_LISTING;
    let listed = if short {
        candidates.list_at_or_above::<false, CHECK>(values, &[], bound, capacity, check)
    } else {
        candidates.list_sparse_at_or_above::<CHECK>(values, bound, capacity, check)
    };
    if !listed {
        // (An early stop leaves the check incomplete: the caller falls back.)
        return FromBound::TooMany;
    }
    if !check.passed() {
        return FromBound::OutOfRange;
    }
    if let Some(skip) = skip {
        if values[skip] >= bound {
            candidates.remove(skip as u32);
        }
    }
    let len = candidates.len;
    if len < count {
        return FromBound::TooFew;
    }
    let (listed_values, listed_indices) = candidates.padded();
    if len <= DIRECTLY_RANKED {
        rank_candidates::<TIES_HIGH>(listed_values, listed_indices, len, out);
        return FromBound::Selected;
    }
    let mut unchecked = RangeCheck::<false>::new(f32::INFINITY);
    let Some(threshold) = rank_bound(listed_values, count, &mut unchecked) else {
        return FromBound::TooMany;
    };
    if select_among::<TIES_HIGH>(listed_values, Some(listed_indices), None, out, threshold) {
        FromBound::Selected
    } else {
        FromBound::TooMany
    }
}

/// Rows shorter than this list their candidates' values in the listing pass.
const SHORT_LISTING: usize = 256;
/// Candidates a hinted listing keeps at most (else the row falls back).
const HINTED: usize = 64;

/// [`largest_indices_f32`] (ties to the lower index) and, in the same pass over the row, the
/// loss's row check: whether every entry has `|v| ≤ limit` (NaN has not). The check costs one
/// AND and one unsigned maximum per 8 entries in the pass that reads the row anyway; as a
/// pass of its own it had cost about 8 % of the top-k loss at n = 1000, m = 16.
///
/// `hint` carries a guess from the previous rows of a batch (see
/// [`crate::select::SelectionHint`]): where at least `out.len()` entries besides `skip`, and
/// at most 64 with it, reach it, the row is read once, listing those entries, and they are
/// ranked; where too few reach it, its lower second guess is tried the same way; else the row
/// takes the steps of the module docs. The indices are the same either way. Where `learn`,
/// this row's selection then joins the hint's running averages (the hint is reset where the
/// row is declined or out of range, learning or not); the caller makes the next guess with
/// `refresh`.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT.
#[target_feature(enable = "avx2,popcnt")]
pub(crate) unsafe fn largest_indices_within(
    values: &[f32],
    skip: Option<usize>,
    out: &mut [u32],
    limit: f32,
    hint: &mut crate::select::SelectionHint,
    learn: bool,
) -> Outcome {
    let count = out.len();
    let skip = skip.filter(|&position| position < values.len());
    let fits = count > 0
        && count <= MAX_COUNT
        && values.len() <= i32::MAX as usize
        && values.len() >= count + usize::from(skip.is_some());
    if fits && hint.take() {
        let mut check = RangeCheck::<true>::new(limit);
        let mut found =
            select_at_or_above::<false, true>(values, skip, out, hint.bound, HINTED, &mut check);
        if found == FromBound::TooFew {
            // The first pass read the whole row and its range check passed: the second guess
            // needs no check.
            let mut unchecked = RangeCheck::<false>::new(limit);
            found = select_at_or_above::<false, false>(
                values,
                skip,
                out,
                hint.lower,
                HINTED,
                &mut unchecked,
            );
        }
        match found {
            FromBound::Selected => {
                hint.record(true);
                if learn {
                    hint.update(values, out);
                }
                return Outcome::Selected;
            }
            FromBound::TooFew | FromBound::TooMany => hint.record(false),
            FromBound::OutOfRange => {
                *hint = crate::select::SelectionHint::NONE;
                return Outcome::OutOfRange;
            }
        }
    }
    let outcome = select_checked::<false, true>(values, skip, out, limit);
    if outcome == Outcome::Selected {
        if learn {
            hint.update(values, out);
        }
    } else {
        *hint = crate::select::SelectionHint::NONE;
    }
    outcome
}

/// `Selected` or `Declined`.
#[inline(always)]
fn outcome(selected: bool) -> Outcome {
    if selected {
        Outcome::Selected
    } else {
        Outcome::Declined
    }
}

/// A value with at least `rank` entries of `values` at or above it (`rank ≤ 64`,
/// `values.len() ≥ 64`), from the maxima of 64 disjoint groups (lane l of every eighth block,
/// so that eight running maxima are independent and the pass runs at load speed): each lane's
/// eight group maxima sorted by a 19-comparator network, and the `rank`-th largest of the J
/// largest of each lane, or beyond rank 8 almost always that (J = ⌈rank/8⌉ + 1 up to rank 24,
/// 8 beyond; see [`largest_with_rank`]): those are distinct entries, so at least `rank` entries
/// reach it. For 16 of 1000 normal logits it leaves about 20 (27 at the 99th percentile, with
/// every entry tried as the threshold; the smallest of the lanes' second maxima, the previous
/// bound, left 37 and 71). NaN entries are passed over; `None` where the bound is not finite,
/// or before the pass where `rank` or the row does not fit (the range check `check` has then
/// seen nothing; else it sees every entry).
#[inline(always)]
unsafe fn group_maxima_bound<const CHECK: bool>(
    values: &[f32],
    rank: usize,
    check: &mut RangeCheck<CHECK>,
) -> Option<f32> {
    let blocks = values.len() / 8;
    if rank == 0 || rank > 64 || blocks < 8 {
        // (Declined before the pass: the caller checks the range itself.)
        return None;
    }
    let mut maxima = [_mm256_set1_ps(f32::NEG_INFINITY); 8];
    let pointer = values.as_ptr();
    // Eight blocks at a time, block `first + group` into `group` (a loop of constant length:
    // the maxima stay in registers); a NaN in the first operand leaves the running maximum (the
    // second) as it is.
    let mut first = 0;
    while first + 8 <= blocks {
        for (group, maximum) in maxima.iter_mut().enumerate() {
            let block_values = _mm256_loadu_ps(pointer.add((first + group) * 8));
            check.block(block_values);
            *maximum = _mm256_max_ps(block_values, *maximum);
        }
        first += 8;
    }
    for (group, block) in (first..blocks).enumerate() {
        let block_values = _mm256_loadu_ps(pointer.add(block * 8));
        check.block(block_values);
        maxima[group] = _mm256_max_ps(block_values, maxima[group]);
    }
    check.tail(&values[blocks * 8..]);
    // The last partial block's entries join the groups of block 0's lanes.
    let mut tail = [f32::NAN; 8];
    tail[..values.len() - blocks * 8].copy_from_slice(&values[blocks * 8..]);
    maxima[0] = _mm256_max_ps(_mm256_loadu_ps(tail.as_ptr()), maxima[0]);
    // Per lane, descending: maxima[0] ≥ maxima[1] ≥ … ≥ maxima[7].
    // (Written out: as a loop over a table of pairs the network stayed a loop, its registers
    // going through the stack, an eighth of a long row's selection.)
    macro_rules! compare_exchange {
        ($(($upper:literal, $lower:literal)),*) => {$(
            let (a, b) = (maxima[$upper], maxima[$lower]);
            maxima[$upper] = _mm256_max_ps(a, b);
            maxima[$lower] = _mm256_min_ps(a, b);
        )*};
    }
    compare_exchange!(
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
        (5, 6)
    );
    // The bound from the J largest group maxima of each lane, J = ⌈rank/8⌉ + 1 (8 beyond
    // rank 24).
    let bound = match rank.div_ceil(8) {
        1 => largest_with_rank::<2>(&[maxima[0], maxima[1]], rank),
        2 => largest_with_rank::<3>(&[maxima[0], maxima[1], maxima[2]], rank),
        3 => largest_with_rank::<4>(&[maxima[0], maxima[1], maxima[2], maxima[3]], rank),
        _ => largest_with_rank::<8>(&maxima, rank),
    }?;
    bound.is_finite().then_some(bound)
}

/// A list of candidate entries, their values and reported indices, on the stack; the slots
/// past its length stay uninitialised (initialising a few hundred slots cost a `memset` a
/// row, as long as the selection itself).
struct Candidates<const SLOTS: usize> {
    values: [MaybeUninit<f32>; SLOTS],
    indices: [MaybeUninit<u32>; SLOTS],
    len: usize,
}

impl<const SLOTS: usize> Candidates<SLOTS> {
    #[inline(always)]
    fn new() -> Self {
        Self {
            values: [MaybeUninit::uninit(); SLOTS],
            indices: [MaybeUninit::uninit(); SLOTS],
            len: 0,
        }
    }

    /// Lists the entries of `values` at or above `threshold`, their values and reported
    /// indices (`indices[p]` with `WITH_INDICES`, else p); `false` when more than `capacity`
    /// qualify. Branch-free per block (a compress permutation and whole-register stores each
    /// time, the length advancing by the mask's population count): which blocks hold
    /// candidates is a coin toss a branch would mispredict. (Long rows, where most blocks hold
    /// none, take [`Self::list_sparse_at_or_above`].) Needs `capacity + OVERRUN` slots.
    #[inline(always)]
    unsafe fn list_at_or_above<const WITH_INDICES: bool, const CHECK: bool>(
        &mut self,
        values: &[f32],
        indices: &[u32],
        threshold: f32,
        capacity: usize,
        check: &mut RangeCheck<CHECK>,
    ) -> bool {
        assert!(capacity + OVERRUN <= SLOTS);
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
                return false;
            }
            for block in first..(first + 8).min(blocks) {
                let block_values = _mm256_loadu_ps(values.as_ptr().add(block * 8));
                check.block(block_values);
                let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(block_values, bound));
                let block_indices = if WITH_INDICES {
                    _mm256_loadu_si256(indices.as_ptr().add(block * 8).cast())
                } else {
                    positions
                };
                listed = self.push_block(listed, block_values, block_indices, mask);
                positions = _mm256_add_epi32(positions, eight);
            }
            first += 8;
        }
        self.finish_listing::<WITH_INDICES, CHECK>(
            values, indices, threshold, capacity, listed, check,
        )
    }

    /// Appends the lanes of `block_values` (reported as those of `block_indices`) set in
    /// `mask` at slot `listed`, in lane order, by a compress permutation and whole-register
    /// stores (8 slots written); returns the new length.
    #[inline(always)]
    unsafe fn push_block(
        &mut self,
        listed: usize,
        block_values: __m256,
        block_indices: __m256i,
        mask: i32,
    ) -> usize {
        let permutation = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(COMPRESS[mask as usize] as i64));
        _mm256_storeu_ps(
            self.values.as_mut_ptr().cast::<f32>().add(listed),
            _mm256_permutevar8x32_ps(block_values, permutation),
        );
        _mm256_storeu_si256(
            self.indices.as_mut_ptr().cast::<u32>().add(listed).cast(),
            _mm256_permutevar8x32_epi32(block_indices, permutation),
        );
        listed + mask.count_ones() as usize
    }

    /// The end of a listing with `listed` entries so far: the entries past the last whole
    /// block (and the range check's look at them), then the length; `false` when more than
    /// `capacity` qualify.
    #[inline(always)]
    unsafe fn finish_listing<const WITH_INDICES: bool, const CHECK: bool>(
        &mut self,
        values: &[f32],
        indices: &[u32],
        threshold: f32,
        capacity: usize,
        mut listed: usize,
        check: &mut RangeCheck<CHECK>,
    ) -> bool {
        let whole = values.len() / 8 * 8;
        check.tail(&values[whole..]);
        for (position, &value) in values.iter().enumerate().skip(whole) {
            if listed > capacity {
                return false;
            }
            if value >= threshold {
                self.values[listed] = MaybeUninit::new(value);
                let index = if WITH_INDICES {
                    indices[position]
                } else {
                    position as u32
                };
                self.indices[listed] = MaybeUninit::new(index);
                listed += 1;
            }
        }
        self.len = listed;
        listed <= capacity
    }

    /// [`Self::list_at_or_above`] (positions and values) for long rows, where most blocks
    /// hold no candidate: a first pass over a stretch of up to `STRETCH` blocks keeps one
    /// comparison mask per block (load, compare, mask: no compress), then only the blocks
    /// with a candidate are read again and compressed, found 32 at a time from the masks
    /// (one byte compare and a bit scan). Needs `capacity + OVERRUN` slots.
    #[inline(always)]
    unsafe fn list_sparse_at_or_above<const CHECK: bool>(
        &mut self,
        values: &[f32],
        threshold: f32,
        capacity: usize,
        check: &mut RangeCheck<CHECK>,
    ) -> bool {
        const STRETCH: usize = 128;
        assert!(capacity + OVERRUN <= SLOTS);
        let bound = _mm256_set1_ps(threshold);
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let pointer = values.as_ptr();
        let blocks = values.len() / 8;
        let mut masks = [0u8; STRETCH];
        let mut listed = 0usize;
        let mut start = 0;
        while start < blocks {
            let stretch = (blocks - start).min(STRETCH);
            for (offset, mask) in masks[..stretch].iter_mut().enumerate() {
                let block_values = _mm256_loadu_ps(pointer.add((start + offset) * 8));
                check.block(block_values);
                *mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(block_values, bound)) as u8;
            }
            // (A shorter last stretch: the masks past it up to a whole word are zero.)
            masks[stretch..stretch.next_multiple_of(32)]
                .iter_mut()
                .for_each(|mask| *mask = 0);
            for word in 0..stretch.div_ceil(32) {
                let bytes = _mm256_loadu_si256(masks.as_ptr().add(word * 32).cast());
                let empty = _mm256_cmpeq_epi8(bytes, _mm256_setzero_si256());
                let mut hit = !(_mm256_movemask_epi8(empty) as u32);
                while hit != 0 {
                    let offset = word * 32 + hit.trailing_zeros() as usize;
                    hit &= hit - 1;
                    if listed > capacity {
                        return false;
                    }
                    let block = start + offset;
                    let block_values = _mm256_loadu_ps(pointer.add(block * 8));
                    let positions = _mm256_add_epi32(lanes, _mm256_set1_epi32((block * 8) as i32));
                    listed =
                        self.push_block(listed, block_values, positions, i32::from(masks[offset]));
                }
            }
            start += stretch;
        }
        self.finish_listing::<false, CHECK>(values, &[], threshold, capacity, listed, check)
    }

    /// The listed indices.
    #[inline(always)]
    fn indices(&self) -> &[u32] {
        // SAFETY: the first `len` slots are initialised (MaybeUninit<u32> has u32's layout).
        unsafe { core::slice::from_raw_parts(self.indices.as_ptr().cast(), self.len) }
    }

    /// Removes the entry with reported index `index` (if listed), keeping the others in order
    /// (the ranking reads list order as index order).
    #[inline(always)]
    fn remove(&mut self, index: u32) {
        if let Some(position) = self.indices().iter().position(|&listed| listed == index) {
            self.values.copy_within(position + 1..self.len, position);
            self.indices.copy_within(position + 1..self.len, position);
            self.len -= 1;
        }
    }

    /// The values and indices padded to whole registers with NaN (which no ordered
    /// comparison counts) and index 0.
    #[inline(always)]
    fn padded(&mut self) -> (&[f32], &[u32]) {
        let padded = self.len.div_ceil(8) * 8;
        for slot in self.len..padded {
            self.values[slot] = MaybeUninit::new(f32::NAN);
            self.indices[slot] = MaybeUninit::new(0);
        }
        // SAFETY: the first `padded` slots are initialised now.
        unsafe {
            (
                core::slice::from_raw_parts(self.values.as_ptr().cast(), padded),
                core::slice::from_raw_parts(self.indices.as_ptr().cast(), padded),
            )
        }
    }
}

/// A value with at least `rank` entries of `values` at or above it, from one pass: each of
/// the 8 lanes keeps the `J` largest entries it sees (lane l of every block, the last block
/// padded with −∞, NaN taken as −∞), and the bound is the `rank`-th largest of those 8·`J`
/// entries, or beyond rank 8 almost always that ([`largest_with_rank`]): one of them with
/// `rank` of them at or above it. They are distinct entries of the row, so at least `rank`
/// entries of the row reach it. With `J` = ⌈rank/8⌉ + 1 it leaves few entries above the
/// `rank`-th largest: for 16 of 100 normal logits about 18 on average. `None` where the bound
/// is −∞ (fewer than `rank` ordered entries among the 8·`J`). The range check `check` sees
/// every entry of the row.
#[inline(always)]
unsafe fn column_tops_bound<const J: usize, const CHECK: bool>(
    values: &[f32],
    rank: usize,
    check: &mut RangeCheck<CHECK>,
) -> Option<f32> {
    let lowest = _mm256_set1_ps(f32::NEG_INFINITY);
    // Two lists per lane, for the even and the odd blocks, merged at the end: two insertion
    // chains side by side (one chain ran at the latency of its compare-and-selects).
    let (mut even, mut odd) = ([lowest; J], [lowest; J]);
    let blocks = values.len() / 8;
    let mut tail = [f32::NEG_INFINITY; 8];
    tail[..values.len() - blocks * 8].copy_from_slice(&values[blocks * 8..]);
    check.tail(&values[blocks * 8..]);
    let pointer = values.as_ptr();
    let mut block = 0;
    while block + 2 <= blocks {
        let first = _mm256_loadu_ps(pointer.add(block * 8));
        let second = _mm256_loadu_ps(pointer.add(block * 8 + 8));
        check.block(first);
        check.block(second);
        insert_descending(&mut even, first);
        insert_descending(&mut odd, second);
        block += 2;
    }
    if block < blocks {
        let last = _mm256_loadu_ps(pointer.add(block * 8));
        check.block(last);
        insert_descending(&mut even, last);
    }
    insert_descending(&mut odd, _mm256_loadu_ps(tail.as_ptr()));
    largest_with_rank(&merged_largest(&even, &odd), rank)
}

/// Inserts a block into each lane's descending list of its `J` largest: the larger stays, the
/// smaller moves on. NaN enters as −∞ (`max(x, −∞)` returns the second operand where one is
/// NaN).
#[inline(always)]
unsafe fn insert_descending<const J: usize>(tops: &mut [__m256; J], values: __m256) {
    let mut entering = _mm256_max_ps(values, _mm256_set1_ps(f32::NEG_INFINITY));
    for top in tops.iter_mut() {
        let larger = _mm256_max_ps(entering, *top);
        entering = _mm256_min_ps(entering, *top);
        *top = larger;
    }
}

/// Per lane, the `J` largest of two descending lists of `J`, descending: the k-th largest of
/// the union is the largest, over the ways to take i entries from `a` and k + 1 − i from `b`,
/// of the smaller of the last ones taken, `max(a[k], b[k], max_{1 ≤ i ≤ k} min(a[i−1], b[k−i]))`
/// (the same values as one list over all the entries: ties included, as a multiset).
#[inline(always)]
unsafe fn merged_largest<const J: usize>(a: &[__m256; J], b: &[__m256; J]) -> [__m256; J] {
    let mut merged = *a;
    for k in 0..J {
        let mut largest = _mm256_max_ps(a[k], b[k]);
        for i in 1..=k {
            largest = _mm256_max_ps(largest, _mm256_min_ps(a[i - 1], b[k - i]));
        }
        merged[k] = largest;
    }
    merged
}

/// The largest of the 8·`J` entries in `tops` (each lane's entries descending) with at least
/// `rank` of them at or above it (the `rank`-th largest; each compared against all, 8 at a
/// time; beyond rank 8 the largest of the lanes' lower entries with that property, see the
/// comment below); `None` where that is −∞.
#[inline(always)]
unsafe fn largest_with_rank<const J: usize>(tops: &[__m256; J], rank: usize) -> Option<f32> {
    let mut listed = [[0f32; 8]; J];
    for (lanes, top) in listed.iter_mut().zip(tops) {
        _mm256_storeu_ps(lanes.as_mut_ptr(), *top);
    }
    let needed = _mm256_set1_epi32(rank as i32 - 1);
    // Beyond rank 8 the lanes' largest entries are left out as thresholds (they are still
    // counted): a third fewer comparisons for 16 of 24. The bound is then the largest of the
    // other entries with `rank` at or above it, still a valid bound and almost always the
    // same one (for 16 of 100 normal logits 17.9 entries reach it on average, 17.6 with every
    // entry as a threshold).
    // (Where none of those qualifies, on rows with few ordered entries, the lanes' largest
    // are tried after all, so that the bound is −∞ exactly where the r-th largest is.)
    let first = usize::from(rank > 8 && J > 2);
    let mut bound = thresholds_reaching(&tops[first..], &listed, needed);
    if bound == f32::NEG_INFINITY && first == 1 {
        bound = thresholds_reaching(&tops[..1], &listed, needed);
    }
    (bound > f32::NEG_INFINITY).then_some(bound)
}

/// The largest entry of `candidates` with more than `needed` (per lane, all equal) of the
/// entries in `listed` at or above it, or −∞.
#[inline(always)]
unsafe fn thresholds_reaching<const J: usize>(
    candidates: &[__m256],
    listed: &[[f32; 8]; J],
    needed: __m256i,
) -> f32 {
    let lowest = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut bound = lowest;
    for top in candidates {
        let mut at_or_above = _mm256_setzero_si256();
        // (Nested loops of constant length: a flattened iterator was left as a loop with
        // branches.)
        for row in listed {
            for &other in row {
                let reaches = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_set1_ps(other), *top);
                at_or_above = _mm256_sub_epi32(at_or_above, _mm256_castps_si256(reaches));
            }
        }
        let enough = _mm256_castsi256_ps(_mm256_cmpgt_epi32(at_or_above, needed));
        bound = _mm256_max_ps(bound, _mm256_blendv_ps(lowest, *top, enough));
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), bound);
    lanes
        .iter()
        .fold(f32::NEG_INFINITY, |high, &value| high.max(value))
}

/// [`column_tops_bound`] with `J` = ⌈rank/8⌉ + 1 entries per lane up to rank 24, 8 beyond.
#[inline(always)]
unsafe fn rank_bound<const CHECK: bool>(
    values: &[f32],
    rank: usize,
    check: &mut RangeCheck<CHECK>,
) -> Option<f32> {
    match rank.div_ceil(8) {
        0 | 1 => column_tops_bound::<2, CHECK>(values, rank, check),
        2 => column_tops_bound::<3, CHECK>(values, rank, check),
        3 => column_tops_bound::<4, CHECK>(values, rank, check),
        _ => column_tops_bound::<8, CHECK>(values, rank, check),
    }
}

/// For each lane `j` of a block, the lanes after it (`LATER`) or before it: all bits set
/// where `l > j` (`l < j`).
const fn lane_masks<const LATER: bool>() -> [[i32; 8]; 8] {
    let mut masks = [[0i32; 8]; 8];
    let mut j = 0;
    while j < 8 {
        let mut lane = 0;
        while lane < 8 {
            if (LATER && lane > j) || (!LATER && lane < j) {
                masks[j][lane] = -1;
            }
            lane += 1;
        }
        j += 1;
    }
    masks
}

/// Steps 3–4 of the module docs over `values` (reported as `indices[p]`, or p; `indices`
/// ascending), except position `skip`, from step 2's `threshold` ([`rank_bound`] for
/// `out.len()` entries, plus one with a skip).
#[inline(always)]
unsafe fn select_among<const TIES_HIGH: bool>(
    values: &[f32],
    indices: Option<&[u32]>,
    skip: Option<usize>,
    out: &mut [u32],
    threshold: f32,
) -> bool {
    let count = out.len();
    let mut candidates = Candidates::<{ LISTED + OVERRUN }>::new();
    let listed = match indices {
        Some(indices) => candidates.list_at_or_above::<true, false>(
            values,
            indices,
            threshold,
            LISTED,
            &mut RangeCheck::new(f32::INFINITY),
        ),
        None => candidates.list_at_or_above::<false, false>(
            values,
            &[],
            threshold,
            LISTED,
            &mut RangeCheck::new(f32::INFINITY),
        ),
    };
    if !listed {
        return false;
    }
    if let Some(skip) = skip {
        if values[skip] >= threshold {
            candidates.remove(indices.map_or(skip as u32, |indices| indices[skip]));
        }
    }
    let len = candidates.len;
    if len < count {
        return false;
    }
    let (candidate_values, candidate_indices) = candidates.padded();
    rank_candidates::<TIES_HIGH>(candidate_values, candidate_indices, len, out);
    true
}

/// Step 4: the first `out.len()` of the `len` candidates (`values` padded with NaN to whole
/// registers, `indices` ascending) in rank order into `out` (`out.len() ≤ len ≤ LISTED`).
#[inline(always)]
unsafe fn rank_candidates<const TIES_HIGH: bool>(
    candidate_values: &[f32],
    candidate_indices: &[u32],
    len: usize,
    out: &mut [u32],
) {
    let padded = candidate_values.len();
    assert!(out.len() <= len && len <= padded && len <= LISTED);
    // Every candidate compares (it reached a bound), so the ranks are a permutation of 0..len
    // and every slot read below was written.
    debug_assert!(candidate_values[..len].iter().all(|v| !v.is_nan()));
    // Rank by counting, 8 candidates at a time against each candidate j: the list is in index
    // order, so j ranks above candidate p where its value is larger, or equal and j comes
    // first in tie order (j < p, or j > p with TIES_HIGH): `≥` for the j on that side of p,
    // `>` on the other (and for p itself). Distinct positions make the ranks a permutation.
    let mut ranks = [MaybeUninit::<i32>::uninit(); LISTED + 8];
    // First without the tie rule: how many candidates are strictly larger (one compare per
    // pair instead of the tie rule's blend). Each count is at most the candidate's rank, and
    // equal to it unless an equal candidate comes first in tie order: the counts sum to
    // 0 + 1 + … + (len − 1) exactly where no two candidates are equal, and they are the ranks
    // then. (The NaN padding lanes count 0.)
    let others = &candidate_values[..len];
    let total = match padded / 8 {
        1 => counts_against::<1>(candidate_values, others, &mut ranks),
        2 => counts_against::<2>(candidate_values, others, &mut ranks),
        3 => counts_against::<3>(candidate_values, others, &mut ranks),
        4 => counts_against::<4>(candidate_values, others, &mut ranks),
        5 => counts_against::<5>(candidate_values, others, &mut ranks),
        // (More than 40 candidates: rare, a block at a time.)
        _ => (0..padded).step_by(8).fold(0, |total, first| {
            let own = &candidate_values[first..first + 8];
            total + counts_against::<1>(own, others, &mut ranks[first..])
        }),
    };
    if total as usize == len * (len - 1) / 2 {
        place_ranked(&ranks, candidate_indices, len, out);
        return;
    }
    for block in 0..padded / 8 {
        let first = block * 8;
        let own = _mm256_loadu_ps(candidate_values.as_ptr().add(first));
        let mut above = _mm256_setzero_si256();
        for &other in &candidate_values[..first] {
            let other = _mm256_set1_ps(other);
            let beats = if TIES_HIGH {
                _mm256_cmp_ps::<_CMP_GT_OQ>(other, own)
            } else {
                _mm256_cmp_ps::<_CMP_GE_OQ>(other, own)
            };
            above = _mm256_sub_epi32(above, _mm256_castps_si256(beats));
        }
        for (offset, &other) in candidate_values[first..len.min(first + 8)]
            .iter()
            .enumerate()
        {
            let other = _mm256_set1_ps(other);
            let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(other, own);
            let at_least = _mm256_cmp_ps::<_CMP_GE_OQ>(other, own);
            // Ties low: `≥` for the lanes after j; ties high: for the lanes before it.
            let masks = const { [lane_masks::<true>(), lane_masks::<false>()] };
            let side = _mm256_loadu_ps(masks[usize::from(TIES_HIGH)][offset].as_ptr().cast());
            let beats = _mm256_blendv_ps(greater, at_least, side);
            above = _mm256_sub_epi32(above, _mm256_castps_si256(beats));
        }
        for &other in &candidate_values[(first + 8).min(len)..len] {
            let other = _mm256_set1_ps(other);
            let beats = if TIES_HIGH {
                _mm256_cmp_ps::<_CMP_GE_OQ>(other, own)
            } else {
                _mm256_cmp_ps::<_CMP_GT_OQ>(other, own)
            };
            above = _mm256_sub_epi32(above, _mm256_castps_si256(beats));
        }
        _mm256_storeu_si256(ranks.as_mut_ptr().add(first).cast(), above);
    }
    place_ranked(&ranks, candidate_indices, len, out);
}

/// For each of the first `8·B` entries of `own`, how many of `others` are strictly larger,
/// into `counts`; returns their sum. The `B` blocks take each broadcast of an other together.
#[inline(always)]
unsafe fn counts_against<const B: usize>(
    own: &[f32],
    others: &[f32],
    counts: &mut [MaybeUninit<i32>],
) -> i32 {
    assert!(own.len() >= 8 * B && counts.len() >= 8 * B);
    let mut blocks = [_mm256_setzero_ps(); B];
    for (block, values) in blocks.iter_mut().enumerate() {
        *values = _mm256_loadu_ps(own.as_ptr().add(8 * block));
    }
    let mut above = [_mm256_setzero_si256(); B];
    for &other in others {
        let other = _mm256_set1_ps(other);
        for (count, values) in above.iter_mut().zip(&blocks) {
            let beats = _mm256_cmp_ps::<_CMP_GT_OQ>(other, *values);
            *count = _mm256_sub_epi32(*count, _mm256_castps_si256(beats));
        }
    }
    let mut total = _mm256_setzero_si256();
    for (block, count) in above.iter().enumerate() {
        total = _mm256_add_epi32(total, *count);
        _mm256_storeu_si256(counts.as_mut_ptr().add(8 * block).cast(), *count);
    }
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), total);
    lanes.iter().sum()
}

/// Each candidate's index into its rank's slot, the first `out.len()` out.
///
/// A block of 8 candidates' ranks and indices is read with one load each and the lanes are
/// taken from the registers: read one by one from memory, the ranks' loads (each followed by a
/// store to an address computed from it) ran several times slower in some code layouts than in
/// others (28 % of the selection at n = 100, m = 16 against 5 %).
///
/// # Safety
/// `ranks[..len]` (initialised, as the rest of its last block of 8) must be a permutation of
/// `0..len`, `len ≤ LISTED`, `indices` as long as `ranks`' whole blocks, `out` no longer than `len`.
#[inline(always)]
unsafe fn place_ranked(ranks: &[MaybeUninit<i32>], indices: &[u32], len: usize, out: &mut [u32]) {
    let padded = len.next_multiple_of(8);
    assert!(len <= LISTED && ranks.len() >= padded && indices.len() >= padded && out.len() <= len);
    let mut ranked = [MaybeUninit::<u32>::uninit(); LISTED];
    for first in (0..len).step_by(8) {
        let block_ranks = _mm256_loadu_si256(ranks.as_ptr().add(first).cast());
        let block_indices = _mm256_loadu_si256(indices.as_ptr().add(first).cast());
        let count = len - first;
        macro_rules! place {
            ($($lane:literal)*) => {$(
                if $lane < count {
                    let rank = _mm256_extract_epi32::<$lane>(block_ranks) as usize;
                    ranked[rank] = MaybeUninit::new(_mm256_extract_epi32::<$lane>(block_indices) as u32);
                }
            )*};
        }
        place!(0 1 2 3 4 5 6 7);
    }
    for (slot, rank) in out.iter_mut().zip(&ranked) {
        *slot = rank.assume_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{vec, vec::Vec};

    /// The range check at its edges: ±limit, ±0 and the subnormals pass; the next float past
    /// the limit, ±∞ and every kind of NaN fail, in any lane and in the tail.
    #[test]
    fn the_range_check_passes_exactly_the_entries_within_the_limit() {
        if !(crate::cpu::has_avx2() && crate::cpu::has_popcnt()) {
            return;
        }
        let limit = 1e32f32;
        let above = f32::from_bits(limit.to_bits() + 1);
        let inside = [
            limit,
            -limit,
            0.0,
            -0.0,
            f32::from_bits(1),
            -f32::MIN_POSITIVE,
            3.5,
        ];
        let outside = [
            above,
            -above,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc0_1234),
            f32::MAX,
        ];
        for length in [8usize, 13, 24] {
            for position in 0..length {
                for (value, expected) in inside
                    .iter()
                    .map(|&v| (v, true))
                    .chain(outside.iter().map(|&v| (v, false)))
                {
                    let mut row = vec![1.0f32; length];
                    row[position] = value;
                    // SAFETY: the CPU supports AVX2 and POPCNT, checked above.
                    let passed = unsafe {
                        let mut check = RangeCheck::<true>::new(limit);
                        let blocks = length / 8;
                        for block in 0..blocks {
                            check.block(_mm256_loadu_ps(row.as_ptr().add(8 * block)));
                        }
                        check.tail(&row[8 * blocks..]);
                        check.passed()
                    };
                    assert_eq!(passed, expected, "{value:e} at {position} of {length}");
                }
            }
        }
    }

    /// The `count` largest of `values` except `skip` by a sort (value descending, ties to the
    /// lower index, NaN never).
    fn sorted_selection(values: &[f32], skip: Option<usize>, count: usize) -> Vec<u32> {
        let mut order: Vec<usize> = (0..values.len())
            .filter(|&i| Some(i) != skip && !values[i].is_nan())
            .collect();
        order.sort_by(|&a, &b| values[b].partial_cmp(&values[a]).unwrap().then(a.cmp(&b)));
        order[..count].iter().map(|&i| i as u32).collect()
    }

    /// A selection from any bound is the sort's, or says why not: `TooFew` exactly where
    /// fewer than `count` entries besides the skipped one reach the bound, `TooMany` only
    /// where more than the capacity do (or, past the directly ranked, ties overflow); for
    /// short and long rows, with ties at the bound, up to a few hundred candidates.
    #[test]
    fn a_selection_from_any_bound_is_exact_or_declines() {
        if !(crate::cpu::has_avx2() && crate::cpu::has_popcnt()) {
            return;
        }
        let mut random = crate::test_random::Xorshift::new(0x9e37_79b9_7f4a_7c15);
        let mut seen = [0usize; 3];
        for trial in 0..3000 {
            let n = [20, 100, 257, 1000, 1203][trial % 5];
            let levels = [0u64, 7, 40][trial % 3];
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    let u = random.uniform() as f32;
                    if levels == 0 {
                        u * 8.0 - 4.0
                    } else {
                        (u * levels as f32).floor()
                    }
                })
                .collect();
            let count = 1 + (random.next_u64() % 30) as usize;
            let skip = (trial % 2 == 0).then(|| (random.next_u64() % n as u64) as usize);
            let mut sorted: Vec<f32> = values.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            // A bound between the 1st and about the 80th largest entry, often one of them.
            let place = (random.next_u64() % 80) as usize % n;
            let bound = if trial % 4 == 0 {
                sorted[place] - 1e-3
            } else {
                sorted[place]
            };
            let reaching = (0..n)
                .filter(|&i| Some(i) != skip && values[i] >= bound)
                .count();
            let listed = (0..n).filter(|&i| values[i] >= bound).count();
            let mut out = vec![u32::MAX; count];
            let capacity = [40, 64, BOUNDED][(trial / 5) % 3];
            // SAFETY: the CPU supports AVX2 and POPCNT, checked above.
            let found = unsafe {
                let mut check = RangeCheck::<true>::new(1e30);
                select_at_or_above::<false, true>(
                    &values, skip, &mut out, bound, capacity, &mut check,
                )
            };
            match found {
                FromBound::Selected => {
                    seen[0] += 1;
                    assert!(reaching >= count, "trial {trial}");
                    assert_eq!(out, sorted_selection(&values, skip, count), "trial {trial}");
                }
                FromBound::TooFew => {
                    seen[1] += 1;
                    assert!(reaching < count, "trial {trial}: {reaching} reach");
                }
                FromBound::TooMany => {
                    seen[2] += 1;
                    // (The capacity counts the skipped entry where it reaches the bound;
                    // beyond the directly ranked, ties at the inner threshold may overflow.)
                    assert!(
                        listed > capacity || listed > DIRECTLY_RANKED,
                        "trial {trial}: {listed} reach"
                    );
                }
                FromBound::OutOfRange => panic!("trial {trial}: out of range"),
            }
        }
        assert!(seen.iter().all(|&times| times > 100), "{seen:?}");
    }

    /// Rows in sequence, the hint carried from each to the next: the same indices as a sort
    /// whether the guess holds or not (rows of one scale, rows whose scale jumps 100-fold,
    /// ties, −0 and +0), and a NaN or too-large entry reported in any row, also where the
    /// guess would hold.
    #[test]
    fn hinted_selections_equal_a_sort_and_check_the_range() {
        if !(crate::cpu::has_avx2() && crate::cpu::has_popcnt()) {
            return;
        }
        let mut random = crate::test_random::Xorshift::new(0x2545_f491_4f6c_dd1d);
        for sequence in 0..60 {
            let n = [100, 1000, 37, 300][sequence % 4];
            let count = [15, 5, 30, 4, 1][sequence % 5].min(n - 1);
            let mut hint = crate::select::SelectionHint::NONE;
            let (mut guessed, mut available) = (0, 0);
            for row in 0..40 {
                let scale = if sequence % 3 == 0 && row % 5 == 0 {
                    100.0
                } else {
                    1.0
                };
                let mut values: Vec<f32> = (0..n)
                    .map(|_| {
                        let u = random.uniform() as f32 * 8.0 - 4.0;
                        if sequence % 7 == 0 {
                            u.round() * scale
                        } else {
                            u * scale
                        }
                    })
                    .collect();
                if sequence % 7 == 0 {
                    values[0] = -0.0;
                }
                let skip = Some((random.next_u64() % n as u64) as usize);
                let poisoned = row % 13 == 12;
                if poisoned {
                    let at = (random.next_u64() % n as u64) as usize;
                    values[at] = if row % 2 == 0 { f32::NAN } else { 3e30 };
                }
                // (The batch path makes the guess once per block of eight rows.)
                if row % 8 == 0 {
                    hint.refresh();
                }
                let before = hint.bound;
                let mut out = vec![u32::MAX; count];
                // Every row learns, or (as the batch path) each block's last row only.
                let learn = sequence % 2 == 0 || row % 8 == 7;
                // SAFETY: the CPU supports AVX2 and POPCNT, checked above.
                let outcome = unsafe {
                    largest_indices_within(&values, skip, &mut out, 1e30, &mut hint, learn)
                };
                if poisoned {
                    assert_eq!(
                        outcome,
                        Outcome::OutOfRange,
                        "sequence {sequence}, row {row}"
                    );
                    continue;
                }
                if outcome == Outcome::Declined {
                    continue;
                }
                assert_eq!(outcome, Outcome::Selected);
                assert_eq!(
                    out,
                    sorted_selection(&values, skip, count),
                    "sequence {sequence}, row {row}"
                );
                let reaching = (0..n)
                    .filter(|&i| Some(i) != skip && values[i] >= before)
                    .count();
                if !before.is_nan() {
                    guessed += usize::from((count..=HINTED).contains(&reaching));
                    available += 1;
                }
            }
            // Rows of one scale mostly keep the guess (where the count takes one): of the 19
            // rows that had one (none in the first block and after a reset by a poisoned row
            // until the next block: 19 of the 40), for 15 and 30 of 37–1000 uniform entries,
            // 18–19 held where every row learns and 14–19 where each block's last row alone
            // does (fewer rows in the averages) when the guess became once per block.
            if count >= 15 && sequence % 3 != 0 {
                assert!(
                    available >= 16 && 3 * guessed >= 2 * available,
                    "sequence {sequence}: {guessed} of {available} guessed"
                );
            }
        }
    }

    /// A short row where no lane's second or third entry reaches rank 10 of the 24 kept (8 of
    /// them are at or above any of those): the lanes' largest are tried after all, and the
    /// path selects instead of declining, with the indices of a sort.
    #[test]
    fn the_lanes_largest_are_tried_where_no_lower_entry_qualifies() {
        if !(crate::cpu::has_avx2() && crate::cpu::has_popcnt()) {
            return;
        }
        let values: [f32; 12] = [
            10.0, 11.0, 12.0, 13.0, 0.0, 1.0, 2.0, 3.0, 20.0, 21.0, 22.0, 23.0,
        ];
        let mut out = [0u32; 10];
        // SAFETY: the CPU supports AVX2 and POPCNT, checked above.
        let selected = unsafe { largest_indices_f32::<false>(&values, None, &mut out) };
        assert!(selected, "declined");
        assert_eq!(out, [11, 10, 9, 8, 3, 2, 1, 0, 7, 6]);
    }
}
