//! NeuralSort (Grover et al., ICLR 2019) as difftopk uses it (spec section 4), top rows only.
//!
//! With scores s (n values) and β = 1/τ, the relaxed permutation's row for rank ρ (ρ = 0 is the
//! largest; ascending output position n−1−ρ) is
//! `P̂[ρ, i] = softmax_i( β (s_i (n − 1 − 2ρ) − c_i) )`, `c_i = Σ_l |s_i − s_l|`
//! (the reference negates the scores, t = −s, and uses the scaling n + 1 − 2(r+1) on position r;
//! both give this). In difftopk's convention `P_topk[i, K−1−ρ] = P̂[ρ, i]`.
//! Cost O(n log n + K n) per row: c and its VJP come from the scores' ascending order and
//! running sums in that order (in `f64`), the order from a sort (up to 256 scores by counting
//! over all pairs, O(n²) but vectorised). Only the columns of P (output positions) sum to 1.
//! The rows' exponentials: row K−1's directly, rows K−2, …, 0 from the row below by two
//! multiplications an entry where the scores' spread allows (`chained_entry`: max z of row
//! ρ sits at the ρ-th largest score, so neighbouring rows' arguments differ by a weight per
//! score and a factor per row).

use crate::softmax::softmax_backward_flushed;
use crate::{Error, Real};

/// `order` ← the positions 0..n in ascending order of (score, position): equal scores in
/// position order, so that every path (this one, the lanes' ranks) finds the same order. Up to
/// [`DIRECT_MAX`] scores by counting (each score's rank is the number of scores before it,
/// counted over all pairs: vectorised, cheaper than a sort's mispredicted branches there),
/// beyond by a sort. Scores must be ordered (no NaN).
pub(crate) fn ascending_order<F: Real>(scores: &[F], order: &mut [u32]) {
    let n = scores.len();
    if n <= DIRECT_MAX {
        for (i, &score) in scores.iter().enumerate() {
            let mut rank = 0u32;
            for &earlier in &scores[..i] {
                rank += u32::from(earlier <= score);
            }
            for &later in &scores[i + 1..] {
                rank += u32::from(later < score);
            }
            order[rank as usize] = i as u32;
        }
    } else {
        for (i, o) in order.iter_mut().enumerate() {
            *o = i as u32;
        }
        order.sort_unstable_by(|&a, &b| {
            scores[a as usize]
                .partial_cmp(&scores[b as usize])
                .unwrap_or(core::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
    }
}

/// `c` at one sorted position, in `f64`: `(v·below_count − below) + ((total − upto) −
/// v·above_count)` = `Σ_{lower} (v − v_l) + Σ_{higher} (v_l − v)`, where `v` is the score less
/// the smallest score, `below` the sum of those of the scores strictly below its tie group,
/// `upto` of those up to the group's end and `total` of all (each a running sum in sorted
/// order), `below_count` and `above_count` the numbers of scores strictly below and above.
/// Shifted by the smallest score, the sums have no cancellation beyond that of `c` itself.
#[inline(always)]
pub(crate) fn deviation_at(
    v: f64,
    below_count: f64,
    below: f64,
    total: f64,
    upto: f64,
    above_count: f64,
) -> f64 {
    (v * below_count - below) + ((total - upto) - v * above_count)
}

/// The VJP of c at one sorted position, in `f64`: `Σ_l sign(s_i − s_l)(c̄_i + c̄_l)` =
/// `c̄_i·(below_count − above_count) + (below − (total − upto))`, with the running sums of c̄
/// in sorted order as in [`deviation_at`].
#[inline(always)]
pub(crate) fn signed_adjoint_at(
    c_bar: f64,
    below_count: f64,
    above_count: f64,
    below: f64,
    total: f64,
    upto: f64,
) -> f64 {
    c_bar * (below_count - above_count) + (below - (total - upto))
}

/// Calls `visit(start, end, below, upto)` for each run `order[start..end]` of equal scores, with
/// the running sums of `term(i)` (in sorted order, `f64`) before and after the run.
#[inline(always)]
fn for_each_tie_group<F: Real>(
    scores: &[F],
    order: &[u32],
    term: impl Fn(usize) -> f64,
    mut visit: impl FnMut(usize, usize, f64, f64),
) {
    let n = order.len();
    let mut running = 0.0f64;
    let mut start = 0;
    while start < n {
        let value = scores[order[start] as usize];
        let mut end = start + 1;
        while end < n && scores[order[end] as usize] == value {
            end += 1;
        }
        let below = running;
        for &i in &order[start..end] {
            running += term(i as usize);
        }
        visit(start, end, below, running);
        start = end;
    }
}

/// `c_i = Σ_l |s_i − s_l|` for all i, from the ascending `order` ([`ascending_order`]): per
/// tie group [`deviation_at`], in `f64` (O(n) after the order).
pub(crate) fn absolute_deviation_sums<F: Real>(scores: &[F], order: &[u32], c: &mut [F]) {
    let n = order.len();
    let pivot = scores[order[0] as usize].as_f64();
    let shifted = |i: usize| scores[i].as_f64() - pivot;
    let mut total = 0.0f64;
    for &i in order {
        total += shifted(i as usize);
    }
    for_each_tie_group(scores, order, shifted, |start, end, below, upto| {
        let (below_count, above_count) = (start as f64, (n - end) as f64);
        for &i in &order[start..end] {
            let i = i as usize;
            let sum = deviation_at(shifted(i), below_count, below, total, upto, above_count);
            c[i] = F::of(sum);
        }
    });
}

/// Adds to `gradient` the VJP of [`absolute_deviation_sums`]:
/// `∂/∂s_i = Σ_l sign(s_i − s_l)(c̄_i + c̄_l)` with sign(0) = 0 (torch's |·|' at 0), per tie
/// group [`signed_adjoint_at`], in `f64`.
pub(crate) fn absolute_deviation_sums_backward<F: Real>(
    scores: &[F],
    order: &[u32],
    c_bar: &[F],
    gradient: &mut [F],
) {
    let n = order.len();
    let adjoint = |i: usize| c_bar[i].as_f64();
    let mut total = 0.0f64;
    for &i in order {
        total += adjoint(i as usize);
    }
    for_each_tie_group(scores, order, adjoint, |start, end, below, upto| {
        let (below_count, above_count) = (start as f64, (n - end) as f64);
        for &i in &order[start..end] {
            let i = i as usize;
            let term = signed_adjoint_at(adjoint(i), below_count, above_count, below, total, upto);
            gradient[i] += F::of(term);
        }
    });
}

/// Rows up to this length find their order by counting over all pairs (vectorised; at n = 100
/// about 8× cheaper than the sort's mispredicted branches), longer ones by a sort; the batch
/// loss runs NeuralSort eight rows side by side up to this length.
pub(crate) const DIRECT_MAX: usize = 256;

/// `2β (s_max − s_min)`, the reach of a chained row step: [`neuralsort_rows`] chains rows
/// K−2, …, 0 where it is at most [`Real::chain_limit`] (all its factors `e^(±x)`,
/// `|x| ≤ reach`, are then normal numbers), else it takes every row's exponentials directly.
#[inline(always)]
pub(crate) fn chain_reach<F: Real>(smallest: F, largest: F, beta: F) -> F {
    (largest - smallest) * (beta + beta)
}

/// The chain's weight of a score: `w = e^((s − s_max)·2β)` (in (0, 1] within the reach).
#[inline(always)]
pub(crate) fn chain_weight<F: Real>(score: F, largest: F, beta: F) -> F {
    ((score - largest) * (beta + beta)).exp_nonpositive()
}

/// The chain's factor of row ρ (made from row ρ + 1):
/// `y_ρ = e^(((s_max − s_(ρ)) + (s_max − s_(ρ+1)))·β)`, with `s_(ρ)` the ρ-th largest score
/// (row ρ's peak; ρ = 0 the largest) and `s_(ρ+1)` the one below it (row ρ + 1's).
#[inline(always)]
pub(crate) fn chain_factor<F: Real>(peak: F, lower: F, largest: F, beta: F) -> F {
    (((largest - peak) + (largest - lower)) * beta).exp()
}

/// A chained row's argument `a = min((z − z_peak)·β, 0)`: `z_peak`, z at the row's rank, is
/// max z (see [`chained_entry`]) up to rounding, which the `min` absorbs.
#[inline(always)]
pub(crate) fn chained_argument<F: Real>(z: F, peak: F, beta: F) -> F {
    let argument = (z - peak) * beta;
    if argument < F::zero() {
        argument
    } else {
        F::zero()
    }
}

/// One entry of a chained row ρ: `e^a` with `a = β (z − max z)` the row's argument, given
/// the next row's unnormalised entry `next` (`e^(a′)`, a′ its argument, or +0 where flushed),
/// the score's weight and the row's factor. Where `e^a` is flushed (`a` below the normal
/// range) +0; where it is not but `next` was, `e^a` itself; else `next · (w · y_ρ)`.
///
/// Why the product is `e^a`: with the scores sorted ascending and gaps g, `z` rises to its
/// peak at row ρ's rank and falls after it (`z_(r+1) − z_r = 2 g_r (n − ρ − r − 3/2)`), so
/// `max z` of row ρ is at the ρ-th largest score, and `a_ρ − a_(ρ+1) = β (2 s − max z_ρ +
/// max z_(ρ+1)) = 2β (s − s_max) + β ((s_max − s_(ρ)) + (s_max − s_(ρ+1)))`, the logarithm of
/// `w · y_ρ`. Both factors are normal numbers within the reach, and where `e^a` is kept the
/// product `next · (w · y_ρ)` ≈ e^a ≥ 2⁻¹²⁶ is normal too (up to the chain's rounding, a few
/// ulp: practically no subnormal is made, and where one is, every path makes the same). Upwards
/// (from row K−1 to row 0) only the scores above `(s_(ρ) + s_(ρ+1))/2` grow, the few at the
/// top, so entries that come back from a flush, which take an exponential, are rare.
#[inline(always)]
pub(crate) fn chained_entry<F: Real>(argument: F, next: F, weight: F, factor: F) -> F {
    let kept = !argument.exp_flushes();
    if kept && next == F::zero() {
        argument.exp_nonpositive()
    } else {
        let next = if kept { next } else { F::zero() };
        next * (weight * factor)
    }
}

/// Divides `row` by its sum, summed in `order` (the scores' ascending order, as the lanes
/// keep NeuralSort's rows), then one reciprocal and a multiplication (as `softmax` does).
#[inline(always)]
fn normalise_in_order<F: Real>(row: &mut [F], order: &[u32]) {
    let mut sum = F::zero();
    for &i in order {
        sum += row[i as usize];
    }
    let inverse = F::one() / sum;
    for z in row.iter_mut() {
        *z *= inverse;
    }
}

/// Forward: the top `k` rows of P̂, `rows[ρ·n + i] = P̂[ρ, i]` (ρ = 0 the largest).
/// Scratch: `c` (n reals), `order` (n indices).
///
/// Row ρ is `softmax(a)`, `a_i = β (z_i − max z)`, `z = s (n − 1 − 2ρ) − c`: the exponentials
/// `e^a` (flushed to +0 below the normal range), summed in the scores' ascending order, then
/// scaled by the sum's reciprocal. Row K−1 takes its exponentials directly; rows K−2, …, 0
/// take theirs from the row below ([`chained_entry`]: two multiplications instead of an
/// exponential) where the scores' spread allows ([`chain_reach`]), directly otherwise.
pub(crate) fn neuralsort_rows<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    rows: &mut [F],
    c: &mut [F],
    order: &mut [u32],
) {
    let n = scores.len();
    ascending_order(scores, order);
    absolute_deviation_sums(scores, order, c);
    let (smallest, largest) = (scores[order[0] as usize], scores[order[n - 1] as usize]);
    let chained = k > 1 && chain_reach(smallest, largest, beta) <= F::chain_limit();
    let (rows, _) = rows.split_at_mut(k * n);
    if chained {
        // The weights wait in row 0's place, which is made last (in place).
        for (w, &s) in rows[..n].iter_mut().zip(scores) {
            *w = chain_weight(s, largest, beta);
        }
    }
    for rank in (0..k).rev() {
        let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64);
        let (before, row_and_after) = rows.split_at_mut(rank * n);
        let (row, after) = row_and_after.split_at_mut(n);
        if rank + 1 == k || !chained {
            // The softmax is shift-invariant: β (z − max z) instead of β z, which overflows
            // where β·n·|s| exceeds the float range (logits of 10³⁰ at β = 10⁸ in f32).
            let mut top = scores[0] * scale - c[0];
            for (&s, &ci) in scores.iter().zip(c.iter()) {
                let z = s * scale - ci;
                if z > top {
                    top = z;
                }
            }
            for ((r, &s), &ci) in row.iter_mut().zip(scores).zip(c.iter()) {
                *r = ((s * scale - ci - top) * beta).exp_nonpositive();
            }
            continue;
        }
        let next = &after[..n];
        let weights: &[F] = if rank == 0 { &[] } else { &before[..n] };
        let (peak, lower) = (order[n - 1 - rank] as usize, order[n - 2 - rank] as usize);
        let top = scores[peak] * scale - c[peak];
        let factor = chain_factor(scores[peak], scores[lower], largest, beta);
        for i in 0..n {
            let argument = chained_argument(scores[i] * scale - c[i], top, beta);
            let weight = if rank == 0 { row[i] } else { weights[i] };
            row[i] = chained_entry(argument, next[i], weight, factor);
        }
    }
    for row in rows.chunks_exact_mut(n) {
        normalise_in_order(row, order);
    }
}

/// Backward: given `rows` from [`neuralsort_rows`] and their adjoints `row_adjoint` (same layout,
/// overwritten), adds ∂/∂s to `gradient`. The rows' softmax VJP leaves out products below the
/// normal range (`softmax::softmax_backward_flushed`: each changes the gradient by less than
/// 2⁻¹²⁶ times β·n; NeuralSort's rows span dozens of binades and made them by the thousand). Scratch: `c_bar` (n reals), `order` (n indices).
#[allow(clippy::too_many_arguments)]
pub(crate) fn neuralsort_rows_backward<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    rows: &[F],
    row_adjoint: &mut [F],
    c_bar: &mut [F],
    order: &mut [u32],
    gradient: &mut [F],
) {
    let n = scores.len();
    for c in c_bar.iter_mut() {
        *c = F::zero();
    }
    for (rank, (row, adjoint)) in rows
        .chunks_exact(n)
        .zip(row_adjoint.chunks_exact_mut(n))
        .take(k)
        .enumerate()
    {
        softmax_backward_flushed(row, adjoint); // adjoint of the logits β(s_i·scale − c_i)
        let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64) * beta;
        for ((g, cb), &a) in gradient
            .iter_mut()
            .zip(c_bar.iter_mut())
            .zip(adjoint.iter())
        {
            *g += a * scale;
            *cb -= a * beta;
        }
    }
    ascending_order(scores, order);
    absolute_deviation_sums_backward(scores, order, c_bar, gradient);
}

/// Public operator: the relaxed top-k matrix of NeuralSort, `p_topk[i·k + j]` = weight of input i
/// at the j-th of the k largest ascending output positions (j = k−1 is the maximum), at inverse
/// temperature β = 1/τ. Allocation-free; `rows_scratch` holds k·n reals, `c` n reals,
/// `order` n indices.
///
/// # Errors
/// [`Error::TopkLargerThanInputs`] unless `1 ≤ k ≤ n`, [`Error::NonFiniteInput`] for a NaN or
/// infinite score, [`Error::LogitTooLarge`] for one beyond ±[`crate::loss::MAX_LOGIT`], [`Error::InvalidInverseTemperature`] (see
/// [`crate::relaxation::check_inverse_temperature`]), [`Error::LengthMismatch`] when `p_topk`
/// does not hold n·k values, [`Error::ScratchTooSmall`] for a short scratch buffer.
pub fn neuralsort_topk<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    p_topk: &mut [F],
    rows_scratch: &mut [F],
    c: &mut [F],
    order: &mut [u32],
) -> Result<(), Error> {
    let n = scores.len();
    check_relaxed_rows(scores, k, beta)?;
    Error::check_length("p_topk", n * k, p_topk.len())?;
    Error::check_scratch("rows_scratch", k * n, rows_scratch.len())?;
    Error::check_scratch("c", n, c.len())?;
    Error::check_scratch("order", n, order.len())?;
    neuralsort_rows(scores, k, beta, rows_scratch, &mut c[..n], &mut order[..n]);
    for rank in 0..k {
        for i in 0..n {
            p_topk[i * k + (k - 1 - rank)] = rows_scratch[rank * n + i];
        }
    }
    Ok(())
}

/// The checks shared by the NeuralSort and SoftSort operators: `1 ≤ k ≤ n`, finite scores
/// within ±[`crate::loss::MAX_LOGIT`], β in the accepted range.
pub(crate) fn check_relaxed_rows<F: Real>(scores: &[F], k: usize, beta: F) -> Result<(), Error> {
    let n = scores.len();
    if k == 0 || k > n {
        return Err(Error::TopkLargerThanInputs { k, inputs: n });
    }
    crate::loss::check_values(0, scores)?;
    crate::relaxation::check_inverse_temperature(beta.as_f64())
}

/// VJP of [`neuralsort_topk`]: adds `Σ_{i,j} Ḡ[i,j] ∂P_topk[i,j]/∂s` to `gradient`, given the
/// forward output `p_topk` and its adjoint `grad_p_topk` (both n × k). Terms `P̂ · d` below the
/// normal range (2⁻¹²⁶ in f32, 2⁻¹⁰²² in f64) are left out, as `exp` flushes its subnormal
/// results: they cost a microcode assist each on x86 and change no gradient entry by more than
/// that bound times β·n. Scratch as the forward
/// (`rows_scratch` k·n, `c_bar` n, `order` n).
///
/// # Errors
/// As [`neuralsort_topk`], and [`Error::LengthMismatch`] for `grad_p_topk` (n·k) or
/// `gradient` (n).
#[allow(clippy::too_many_arguments)]
pub fn neuralsort_topk_backward<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    p_topk: &[F],
    grad_p_topk: &[F],
    gradient: &mut [F],
    rows_scratch: &mut [F],
    adjoint_scratch: &mut [F],
    c_bar: &mut [F],
    order: &mut [u32],
) -> Result<(), Error> {
    let n = scores.len();
    check_relaxed_rows(scores, k, beta)?;
    Error::check_length("p_topk", n * k, p_topk.len())?;
    Error::check_length("grad_p_topk", n * k, grad_p_topk.len())?;
    Error::check_length("gradient", n, gradient.len())?;
    Error::check_scratch("rows_scratch", k * n, rows_scratch.len())?;
    Error::check_scratch("adjoint_scratch", k * n, adjoint_scratch.len())?;
    Error::check_scratch("c_bar", n, c_bar.len())?;
    Error::check_scratch("order", n, order.len())?;
    for rank in 0..k {
        for i in 0..n {
            rows_scratch[rank * n + i] = p_topk[i * k + (k - 1 - rank)];
            adjoint_scratch[rank * n + i] = grad_p_topk[i * k + (k - 1 - rank)];
        }
    }
    neuralsort_rows_backward(
        scores,
        k,
        beta,
        &rows_scratch[..k * n],
        &mut adjoint_scratch[..k * n],
        &mut c_bar[..n],
        &mut order[..n],
        gradient,
    );
    Ok(())
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::{
        absolute_deviation_sums, absolute_deviation_sums_backward, ascending_order, DIRECT_MAX,
    };
    use alloc::vec::Vec;

    /// `n` scores from a few levels (ties, −0 beside +0), or spread out, or offset far from 0.
    fn scores(n: usize, seed: u64, levels: Option<u64>, offset: f64) -> Vec<f64> {
        let mut random = crate::test_random::Xorshift::seeded(seed);
        (0..n)
            .map(|_| {
                let bits = random.next_u64();
                let value = match levels {
                    Some(levels) => {
                        let level = (bits % levels) as f64 - (levels / 2) as f64;
                        if level == 0.0 && bits & 256 != 0 {
                            -0.0
                        } else {
                            level * 0.5
                        }
                    }
                    None => (bits >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0,
                };
                value + offset
            })
            .collect()
    }

    /// The top rows of P̂ with every row's exponentials taken directly, `rows[ρ·n + i]`: in
    /// f32 about as before the chain (here summed in index order and divided), in f64 the
    /// exact rows (to f32's eye).
    fn direct_rows<F: crate::Real>(scores: &[F], k: usize, beta: F) -> Vec<F> {
        let n = scores.len();
        let mut order = alloc::vec![0u32; n];
        let mut c = alloc::vec![F::zero(); n];
        ascending_order(scores, &mut order);
        absolute_deviation_sums(scores, &order, &mut c);
        let mut rows = alloc::vec![F::zero(); k * n];
        for (rank, row) in rows.chunks_exact_mut(n).enumerate() {
            let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64);
            let z: Vec<F> = scores
                .iter()
                .zip(&c)
                .map(|(&s, &ci)| s * scale - ci)
                .collect();
            let top = z.iter().fold(z[0], |a, &b| if b > a { b } else { a });
            let mut sum = F::zero();
            for (r, &zi) in row.iter_mut().zip(&z) {
                *r = ((zi - top) * beta).exp();
                sum += *r;
            }
            row.iter_mut().for_each(|r| *r /= sum);
        }
        rows
    }

    /// Rows K−2, …, 0 made from the row below (where the spread allows) are as accurate as the
    /// direct exponentials: against the exact rows (f64 from the same f32 scores), the f32
    /// rows' largest error stays within 2 (β·max|z| + K)·2⁻²⁴, the rounding of the arguments
    /// β(z − max z) plus a rounding per row, as the direct rows' does (measured: chained up to
    /// 1.5, direct up to 2.0 of that unit), over lengths 2 to 300, K from 2 to n, β from 1/16
    /// to 4, spreads up to the chain's reach and one score far above the rest. (Where that
    /// score dominates the upper rows the chained rows are up to 10× less accurate than the
    /// direct ones, which compute each row's peak entry exactly: 2·10⁻⁵ against 2·10⁻⁶ at
    /// n = K = 64, β = 4; the chain carries row K−1's rounding of that entry's argument.)
    #[test]
    fn chained_rows_are_as_accurate_as_direct_exponentials() {
        let mut random = crate::test_random::Xorshift::new(0x6A09_E667_F3BC_C908);
        let mut chained_cases = 0;
        for n in [2usize, 5, 16, 64, 100, 256, 300] {
            for k in [2usize, 5, 16, n] {
                let k = k.min(n);
                for beta in [0.0625f32, 0.5, 1.0, 4.0] {
                    for (spread, outlier) in [(0.5f32, 0.0f32), (3.0, 0.0), (10.0, 0.0), (1.0, 8.0)]
                    {
                        // With an outlier, one score far above the others: its entries in the
                        // low rows are flushed and come back higher up.
                        let mut scores: Vec<f32> = (0..n)
                            .map(|_| (random.uniform() as f32 - 0.5) * spread)
                            .collect();
                        scores[n / 2] += outlier;
                        let mut rows = alloc::vec![0.0f32; k * n];
                        let (mut c, mut order) = (alloc::vec![0.0f32; n], alloc::vec![0u32; n]);
                        super::neuralsort_rows(&scores, k, beta, &mut rows, &mut c, &mut order);
                        let (low, high) = scores
                            .iter()
                            .fold((f32::MAX, f32::MIN), |(l, h), &s| (l.min(s), h.max(s)));
                        if super::chain_reach(low, high, beta) > <f32 as crate::Real>::chain_limit()
                        {
                            continue;
                        }
                        chained_cases += 1;
                        let wide: Vec<f64> = scores.iter().map(|&s| s as f64).collect();
                        let exact = direct_rows(&wide, k, beta as f64);
                        let error = |values: &[f32]| {
                            values
                                .iter()
                                .zip(&exact)
                                .map(|(&v, &e)| (v as f64 - e).abs())
                                .fold(0.0, f64::max)
                        };
                        // max |z| over the k rows, exactly.
                        ascending_order(&wide, &mut order);
                        let mut deviations = alloc::vec![0.0f64; n];
                        absolute_deviation_sums(&wide, &order, &mut deviations);
                        let largest_z = (0..k)
                            .flat_map(|rank| {
                                let scale = (n as f64) - 1.0 - 2.0 * rank as f64;
                                wide.iter()
                                    .zip(&deviations)
                                    .map(move |(&s, &ci)| (s * scale - ci).abs())
                            })
                            .fold(0.0, f64::max);
                        let unit = (beta as f64 * largest_z + k as f64) * 2f64.powi(-24);
                        let (chained_error, direct_error) =
                            (error(&rows), error(&direct_rows(&scores, k, beta)));
                        assert!(
                            chained_error <= 2.0 * unit,
                            "n {n}, k {k}, β {beta}, spread {spread}, outlier {outlier}: \
                             {chained_error:e} against {unit:e} (direct {direct_error:e})"
                        );
                    }
                }
            }
        }
        assert!(chained_cases > 300, "{chained_cases} chained cases");
    }

    /// The order by counting equals the sort's, ties in position order; c and its VJP equal
    /// their definitions summed over all pairs (in f64, to 1e-12 of their scale), on both
    /// sides of `DIRECT_MAX`, with ties, ±0 and an offset of 10⁶.
    #[test]
    fn order_deviations_and_their_vjp_equal_the_definitions() {
        for n in [1usize, 2, 3, 9, 100, DIRECT_MAX, DIRECT_MAX + 1, 700] {
            for (seed, levels, offset) in [
                (1, None, 0.0),
                (2, Some(3), 0.0),
                (3, Some(9), 0.0),
                (4, None, 1e6),
            ] {
                let s = scores(n, seed + n as u64, levels, offset);
                let mut order = alloc::vec![0u32; n];
                ascending_order(&s, &mut order);
                let mut expected: Vec<u32> = (0..n as u32).collect();
                expected.sort_by(|&a, &b| {
                    s[a as usize]
                        .partial_cmp(&s[b as usize])
                        .unwrap()
                        .then(a.cmp(&b))
                });
                assert_eq!(order, expected, "order, n {n}");
                let mut c = alloc::vec![0.0; n];
                absolute_deviation_sums(&s, &order, &mut c);
                let adjoint = scores(n, seed + 1000, None, 0.0);
                let mut gradient = alloc::vec![0.0; n];
                absolute_deviation_sums_backward(&s, &order, &adjoint, &mut gradient);
                for i in 0..n {
                    let mut definition = 0.0;
                    let mut vjp = 0.0;
                    let mut scale = 1.0f64;
                    for l in 0..n {
                        definition += (s[i] - s[l]).abs();
                        let sign = if s[i] > s[l] {
                            1.0
                        } else if s[i] < s[l] {
                            -1.0
                        } else {
                            0.0
                        };
                        vjp += sign * (adjoint[i] + adjoint[l]);
                        scale = scale.max((adjoint[i] + adjoint[l]).abs() * n as f64);
                    }
                    let tolerance = 1e-12 * definition.abs().max(1.0);
                    assert!((c[i] - definition).abs() <= tolerance, "c, n {n}, i {i}");
                    assert!(
                        (gradient[i] - vjp).abs() <= 1e-12 * scale,
                        "VJP, n {n}, i {i}"
                    );
                }
            }
        }
    }
}
