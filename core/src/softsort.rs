//! SoftSort (Prillo & Eisenschlos, ICML 2020) as difftopk uses it (spec section 4), top rows only.
//!
//! With scores s, β = 1/τ and `pow = 1`, the row for rank ρ (ρ = 0 the largest; ascending output
//! position n−1−ρ) is `P̂[ρ, i] = softmax_i( −β |s_i − s_(ρ)| )`, where s_(ρ) is the ρ-th largest
//! score. Gradients also flow through s_(ρ) to the index that holds it. Ties in the sort go to
//! the higher index first (rank ρ = 0 is the highest index among equal maxima), as torch's stable
//! `sort(−s, descending=True)` orders them. In difftopk's
//! convention `P_topk[i, K−1−ρ] = P̂[ρ, i]`. Cost O(K n) per row.

use crate::select::largest_indices_ties_high;
use crate::softmax::softmax_backward;
use crate::Real;

/// sign(x) with sign(0) = 0.
#[inline(always)]
fn sign<F: Real>(x: F) -> F {
    if x > F::zero() {
        F::one()
    } else if x < F::zero() {
        -F::one()
    } else {
        F::zero()
    }
}

/// Forward: `rows[ρ·n + i] = P̂[ρ, i]` for ρ < k; `top` (k indices) receives the indices of the
/// k largest scores, descending.
pub(crate) fn softsort_rows<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    rows: &mut [F],
    top: &mut [u32],
) {
    let n = scores.len();
    largest_indices_ties_high(scores, None, &mut top[..k]);
    for (row, &center_index) in rows.chunks_exact_mut(n).zip(top.iter()).take(k) {
        let center = scores[center_index as usize];
        // The maximum of −β|s_i − center| is 0, at i = center_index.
        // Exponentials in their own loop (it vectorises), then the sum in the same order.
        for (r, &s) in row.iter_mut().zip(scores) {
            *r = (-beta * (s - center).abs()).exp();
        }
        let mut sum = F::zero();
        for &e in row.iter() {
            sum += e;
        }
        let inverse = F::one() / sum;
        for r in row.iter_mut() {
            *r *= inverse;
        }
    }
}

/// Backward: given `rows`, `top` from [`softsort_rows`] and the rows' adjoints (overwritten),
/// adds ∂/∂s to `gradient`.
pub(crate) fn softsort_rows_backward<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    rows: &[F],
    top: &[u32],
    row_adjoint: &mut [F],
    gradient: &mut [F],
) {
    let n = scores.len();
    for ((row, adjoint), &center_index) in rows
        .chunks_exact(n)
        .zip(row_adjoint.chunks_exact_mut(n))
        .zip(top.iter())
        .take(k)
    {
        softmax_backward(row, adjoint); // adjoint of the logits −β|s_i − center|
        let center = scores[center_index as usize];
        let mut center_bar = F::zero();
        for ((g, &a), &s) in gradient.iter_mut().zip(adjoint.iter()).zip(scores) {
            let d = a * beta * sign(s - center);
            *g -= d;
            center_bar += d;
        }
        gradient[center_index as usize] += center_bar;
    }
}

/// Public operator: SoftSort's relaxed top-k matrix, `p_topk[i·k + j]` = weight of input i at the
/// j-th of the k largest ascending positions (j = k−1 the maximum). Scratch: `rows_scratch` k·n
/// reals, `top` k indices.
pub fn softsort_topk<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    p_topk: &mut [F],
    rows_scratch: &mut [F],
    top: &mut [u32],
) {
    let n = scores.len();
    softsort_rows(scores, k, beta, rows_scratch, top);
    for rank in 0..k {
        for i in 0..n {
            p_topk[i * k + (k - 1 - rank)] = rows_scratch[rank * n + i];
        }
    }
}

/// VJP of [`softsort_topk`]: adds `Σ Ḡ ⊙ ∂P_topk/∂s` to `gradient` given the forward output and
/// its adjoint (n × k each). Scratch: `rows_scratch`, `adjoint_scratch` (k·n reals), `top` (k).
#[allow(clippy::too_many_arguments)]
pub fn softsort_topk_backward<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    p_topk: &[F],
    grad_p_topk: &[F],
    gradient: &mut [F],
    rows_scratch: &mut [F],
    adjoint_scratch: &mut [F],
    top: &mut [u32],
) {
    let n = scores.len();
    largest_indices_ties_high(scores, None, &mut top[..k]);
    for rank in 0..k {
        for i in 0..n {
            rows_scratch[rank * n + i] = p_topk[i * k + (k - 1 - rank)];
            adjoint_scratch[rank * n + i] = grad_p_topk[i * k + (k - 1 - rank)];
        }
    }
    softsort_rows_backward(
        scores,
        k,
        beta,
        rows_scratch,
        top,
        adjoint_scratch,
        gradient,
    );
}
