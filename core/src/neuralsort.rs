//! NeuralSort (Grover et al., ICLR 2019) as difftopk uses it (spec section 4), top rows only.
//!
//! With scores s (n values) and β = 1/τ, the relaxed permutation's row for rank ρ (ρ = 0 is the
//! largest; ascending output position n−1−ρ) is
//! `P̂[ρ, i] = softmax_i( β (s_i (n − 1 − 2ρ) − c_i) )`, `c_i = Σ_l |s_i − s_l|`
//! (the reference negates the scores, t = −s, and uses the scaling n + 1 − 2(r+1) on position r;
//! both give this). In difftopk's convention `P_topk[i, K−1−ρ] = P̂[ρ, i]`.
//! Cost O(n log n + K n) per row: c comes from one sort and prefix sums (for n ≤ 256 from the
//! n² differences directly, which vectorise and beat the sort there). Only the columns of P
//! (output positions) sum to 1.

use crate::softmax::{softmax_backward_flushed, softmax_in_place_unchecked};
use crate::{Error, Real};

/// Sorts `order` (any permutation of 0..n on entry is fine) by ascending score.
fn sort_ascending<F: Real>(scores: &[F], order: &mut [u32]) {
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u32;
    }
    order.sort_unstable_by(|&a, &b| {
        scores[a as usize]
            .partial_cmp(&scores[b as usize])
            .unwrap_or(core::cmp::Ordering::Equal)
    });
}

/// Calls `visit(group)` for each run of equal scores in the sorted `order`, with `less` = the
/// number of scores strictly below the run.
fn for_each_tie_group<F: Real>(scores: &[F], order: &[u32], mut visit: impl FnMut(usize, usize)) {
    let n = order.len();
    let mut start = 0;
    while start < n {
        let value = scores[order[start] as usize];
        let mut end = start + 1;
        while end < n && scores[order[end] as usize] == value {
            end += 1;
        }
        visit(start, end);
        start = end;
    }
}

/// `c_i = Σ_l |s_i − s_l|` for all i, from the ascending `order`.
pub(crate) fn absolute_deviation_sums<F: Real>(scores: &[F], order: &[u32], c: &mut [F]) {
    let n = order.len();
    let mut total = F::zero();
    for &s in scores {
        total += s;
    }
    let mut below = F::zero(); // sum of the scores strictly below the current group
    for_each_tie_group(scores, order, |start, end| {
        let value = scores[order[start] as usize];
        let mut group = F::zero();
        for &i in &order[start..end] {
            group += scores[i as usize];
        }
        let above = total - below - group;
        let count_below = F::of(start as f64);
        let count_above = F::of((n - end) as f64);
        let sum = (value * count_below - below) + (above - value * count_above);
        for &i in &order[start..end] {
            c[i as usize] = sum;
        }
        below += group;
    });
}

/// Adds to `gradient` the VJP of [`absolute_deviation_sums`]:
/// `∂/∂s_i = Σ_l sign(s_i − s_l)(c̄_i + c̄_l)` with sign(0) = 0 (torch's |·|' at 0).
pub(crate) fn absolute_deviation_sums_backward<F: Real>(
    scores: &[F],
    order: &[u32],
    c_bar: &[F],
    gradient: &mut [F],
) {
    let n = order.len();
    let mut total = F::zero();
    for &g in c_bar {
        total += g;
    }
    let mut below = F::zero();
    for_each_tie_group(scores, order, |start, end| {
        let mut group = F::zero();
        for &i in &order[start..end] {
            group += c_bar[i as usize];
        }
        let above = total - below - group;
        let balance = F::of(start as f64) - F::of((n - end) as f64);
        for &i in &order[start..end] {
            gradient[i as usize] += c_bar[i as usize] * balance + (below - above);
        }
        below += group;
    });
}

/// Rows up to this length compute `c` and its VJP from all n² differences instead of a sort:
/// vectorised, the n² terms cost less than the sort's mispredicted branches up to a few hundred
/// (at n = 100: ≈ 0.3 µs against ≈ 2.5 µs for the sort, forward, on the development machine).
pub(crate) const DIRECT_MAX: usize = 256;

/// Interleaved partial sums of the direct c and its VJP: term l goes to partial `l mod 8`, and
/// the partials are added in order (`((p₀ + p₁) + p₂) + …`). The one-row loops vectorise over l
/// this way; the lanes code (eight rows side by side) keeps the same eight partials per lane, so
/// both give the same bits.
pub(crate) const PARTIAL_SUMS: usize = 8;

/// The partial sums added in order.
#[inline(always)]
pub(crate) fn combine_partial_sums<F: Real>(partial: &[F; PARTIAL_SUMS]) -> F {
    let mut sum = partial[0];
    for &p in &partial[1..] {
        sum += p;
    }
    sum
}

/// [`absolute_deviation_sums`] from all pairs (no sort): `c_i = Σ_l |s_i − s_l|`, in the
/// interleaved partial sums of [`PARTIAL_SUMS`].
pub(crate) fn absolute_deviation_sums_direct<F: Real>(scores: &[F], c: &mut [F]) {
    let chunks = scores.chunks_exact(PARTIAL_SUMS);
    let tail = chunks.remainder();
    for (ci, &si) in c.iter_mut().zip(scores) {
        let mut partial = [F::zero(); PARTIAL_SUMS];
        for chunk in chunks.clone() {
            for (p, &sl) in partial.iter_mut().zip(chunk) {
                *p += (si - sl).abs();
            }
        }
        for (p, &sl) in partial.iter_mut().zip(tail) {
            *p += (si - sl).abs();
        }
        *ci = combine_partial_sums(&partial);
    }
}

/// [`absolute_deviation_sums_backward`] from all pairs:
/// `∂/∂s_i += Σ_l sign(s_i − s_l)(c̄_i + c̄_l)`, sign(0) = 0, in the interleaved partial sums of
/// [`PARTIAL_SUMS`]: a term is added where `s_i > s_l` and subtracted where `s_i < s_l` (as
/// selects; a tie's ±0 leaves a partial sum, which starts at +0 and is never −0, unchanged).
pub(crate) fn absolute_deviation_sums_backward_direct<F: Real>(
    scores: &[F],
    c_bar: &[F],
    gradient: &mut [F],
) {
    let score_chunks = scores.chunks_exact(PARTIAL_SUMS);
    let adjoint_chunks = c_bar.chunks_exact(PARTIAL_SUMS);
    let (score_tail, adjoint_tail) = (score_chunks.remainder(), adjoint_chunks.remainder());
    for ((g, &si), &ci) in gradient.iter_mut().zip(scores).zip(c_bar) {
        let mut partial = [F::zero(); PARTIAL_SUMS];
        let add = |partial: &mut [F; PARTIAL_SUMS], sl: &[F], cl: &[F]| {
            for ((p, &sl), &cl) in partial.iter_mut().zip(sl).zip(cl) {
                let both = ci + cl;
                *p += if si > sl { both } else { F::zero() };
                *p -= if si < sl { both } else { F::zero() };
            }
        };
        for (sl, cl) in score_chunks.clone().zip(adjoint_chunks.clone()) {
            add(&mut partial, sl, cl);
        }
        add(&mut partial, score_tail, adjoint_tail);
        *g += combine_partial_sums(&partial);
    }
}

/// Forward: the top `k` rows of P̂, `rows[ρ·n + i] = P̂[ρ, i]` (ρ = 0 the largest).
/// Scratch: `c` (n reals), `order` (n indices).
pub(crate) fn neuralsort_rows<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    rows: &mut [F],
    c: &mut [F],
    order: &mut [u32],
) {
    let n = scores.len();
    if n <= DIRECT_MAX {
        absolute_deviation_sums_direct(scores, c);
    } else {
        sort_ascending(scores, order);
        absolute_deviation_sums(scores, order, c);
    }
    for (rank, row) in rows.chunks_exact_mut(n).take(k).enumerate() {
        let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64);
        for ((r, &s), &ci) in row.iter_mut().zip(scores).zip(c.iter()) {
            *r = s * scale - ci;
        }
        // The softmax is shift-invariant: β (z − max z) instead of β z, which overflows where
        // β·n·|s| exceeds the float range (logits of 10³⁰ at β = 10⁸ in f32).
        let mut top = row[0];
        for &z in row.iter() {
            if z > top {
                top = z;
            }
        }
        for r in row.iter_mut() {
            *r = (*r - top) * beta;
        }
        softmax_in_place_unchecked(row);
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
    if n <= DIRECT_MAX {
        absolute_deviation_sums_backward_direct(scores, c_bar, gradient);
    } else {
        sort_ascending(scores, order);
        absolute_deviation_sums_backward(scores, order, c_bar, gradient);
    }
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
