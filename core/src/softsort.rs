//! SoftSort (Prillo & Eisenschlos, ICML 2020) as difftopk uses it (spec section 4), top rows only.
//!
//! With scores s, β = 1/τ and `pow = 1`, the row for rank ρ (ρ = 0 the largest; ascending output
//! position n−1−ρ) is `P̂[ρ, i] = softmax_i( −β |s_i − s_(ρ)| )`, where s_(ρ) is the ρ-th largest
//! score. Gradients also flow through s_(ρ) to the index that holds it. Ties in the sort go to
//! the higher index first (rank ρ = 0 is the highest index among equal maxima), as torch's stable
//! `sort(−s, descending=True)` orders them. In difftopk's
//! convention `P_topk[i, K−1−ρ] = P̂[ρ, i]`. Cost O(K n) per row.

use crate::select::{
    largest_indices_ties_high_of_preselected, largest_indices_ties_high_unchecked,
};
use crate::softmax::softmax_backward_unchecked;
use crate::{Error, Real};

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
/// k largest scores, descending (ties to the higher index). With `preselected`, the scores are
/// the loss's preselection (the label's logit, then the others in descending order), and the
/// top k come from a merge instead of a search.
///
/// The exponentials are shared between the rows: with L = s_(k−1) the lowest centre, every
/// score at or below L has `e^(−β|s_i − s_(ρ)|) = e^(−β|s_i − L|) · e^(−β|s_(ρ) − L|)` (both
/// distances add up), so one exponential per score (row k−1's own) and one factor per row
/// replace k·n exponentials; only the at most k−1 scores above L get their own, per row. A
/// product below the normal range is taken as 0 (`exp` flushes its own such results), so no
/// subnormal number is made. The product rounds twice, and its arguments round differently from
/// the direct exponential's: each entry of P̂ stays within (8 + 4|β(s_i − s_(ρ))|)·ε relative
/// (plus 4·2⁻¹²⁶) of the direct formula's, ε the type's epsilon (eˣ's condition number |x|
/// times the rounding of x; a unit test checks this bound).
pub(crate) fn softsort_rows<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    rows: &mut [F],
    top: &mut [u32],
    preselected: bool,
) {
    let n = scores.len();
    if preselected {
        largest_indices_ties_high_of_preselected(scores, &mut top[..k]);
    } else {
        largest_indices_ties_high_unchecked(scores, None, &mut top[..k]);
    }
    let lowest = scores[top[k - 1] as usize];
    let distance_weight = |s: F, center: F| (-beta * (s - center).abs()).exp();
    let (upper, last) = rows[..k * n].split_at_mut((k - 1) * n);
    // Row k−1 (centre L) first: its exponentials are the shared ones.
    for (r, &s) in last.iter_mut().zip(scores) {
        *r = distance_weight(s, lowest);
    }
    for (row, &center_index) in upper.chunks_exact_mut(n).zip(top.iter()) {
        let factor = distance_weight(scores[center_index as usize], lowest);
        let threshold = F::MIN_POSITIVE / factor;
        for (r, &shared) in row.iter_mut().zip(last.iter()) {
            *r = shared_product(shared, factor, threshold);
        }
    }
    // The scores above L (among the top k−1), each with its own exponential in every row.
    for &above in &top[..k - 1] {
        let s = scores[above as usize];
        if s > lowest {
            for (rank, &center_index) in top[..k].iter().enumerate() {
                rows[rank * n + above as usize] = distance_weight(s, scores[center_index as usize]);
            }
        }
    }
    // Normalise each row: the sum in wire order, one reciprocal, a multiplication.
    for row in rows.chunks_exact_mut(n).take(k) {
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

/// `shared · factor`, or `0 · factor` where `shared < threshold = 2⁻¹²⁶ / factor` (the product
/// would be below the normal range; `threshold` is +∞ for a factor of 0). The choice comes
/// before the multiplication, so that no subnormal number is ever made.
#[inline(always)]
pub(crate) fn shared_product<F: Real>(shared: F, factor: F, threshold: F) -> F {
    let kept = if shared >= threshold {
        shared
    } else {
        F::zero()
    };
    kept * factor
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
        softmax_backward_unchecked(row, adjoint); // adjoint of the logits −β|s_i − center|
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
///
/// # Errors
/// As [`crate::neuralsort::neuralsort_topk`].
pub fn softsort_topk<F: Real>(
    scores: &[F],
    k: usize,
    beta: F,
    p_topk: &mut [F],
    rows_scratch: &mut [F],
    top: &mut [u32],
) -> Result<(), Error> {
    let n = scores.len();
    crate::neuralsort::check_relaxed_rows(scores, k, beta)?;
    Error::check_length("p_topk", n * k, p_topk.len())?;
    Error::check_scratch("rows_scratch", k * n, rows_scratch.len())?;
    Error::check_scratch("top", k, top.len())?;
    softsort_rows(scores, k, beta, &mut rows_scratch[..k * n], top, false);
    for rank in 0..k {
        for i in 0..n {
            p_topk[i * k + (k - 1 - rank)] = rows_scratch[rank * n + i];
        }
    }
    Ok(())
}

/// VJP of [`softsort_topk`]: adds `Σ Ḡ ⊙ ∂P_topk/∂s` to `gradient` given the forward output and
/// its adjoint (n × k each). Scratch: `rows_scratch`, `adjoint_scratch` (k·n reals), `top` (k).
///
/// # Errors
/// As [`crate::neuralsort::neuralsort_topk_backward`].
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
) -> Result<(), Error> {
    let n = scores.len();
    crate::neuralsort::check_relaxed_rows(scores, k, beta)?;
    Error::check_length("p_topk", n * k, p_topk.len())?;
    Error::check_length("grad_p_topk", n * k, grad_p_topk.len())?;
    Error::check_length("gradient", n, gradient.len())?;
    Error::check_scratch("rows_scratch", k * n, rows_scratch.len())?;
    Error::check_scratch("adjoint_scratch", k * n, adjoint_scratch.len())?;
    Error::check_scratch("top", k, top.len())?;
    largest_indices_ties_high_unchecked(scores, None, &mut top[..k]);
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
        &rows_scratch[..k * n],
        top,
        &mut adjoint_scratch[..k * n],
        gradient,
    );
    Ok(())
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use alloc::vec::Vec;

    /// The rows with shared exponentials equal the direct `softmax(−β|s_i − s_(ρ)|)` within a
    /// few ulp plus the exponential's condition number |β(s_i − s_(ρ))| (each way rounds its
    /// arguments differently), or a few 2⁻¹²⁶ where the direct one is flushed, on rows with ties
    /// and with centres far apart (factors that underflow).
    fn check<F: crate::Real>(epsilon: f64) {
        let mut random = crate::test_random::Xorshift::new(0x5851_f42d_4c95_7f2d);
        for trial in 0..300 {
            let n = 2 + trial % 70;
            let k = (1 + trial % 5).min(n);
            let spread = [1.0, 8.0, 60.0, 2000.0][trial % 4];
            let beta = F::of([0.3, 1.0, 4.0][trial % 3]);
            let scores: Vec<F> = (0..n)
                .map(|_| {
                    let x = random.uniform() * 2.0 - 1.0;
                    // Every fifth trial draws from 3 levels: ties, also among the top k.
                    F::of(if trial % 5 == 0 {
                        (x * 1.5).round()
                    } else {
                        x * spread
                    })
                })
                .collect();
            let mut rows = alloc::vec![F::zero(); k * n];
            let mut top = alloc::vec![0u32; k];
            super::softsort_rows(&scores, k, beta, &mut rows, &mut top, false);
            for rank in 0..k {
                let center = scores[top[rank] as usize];
                let direct: Vec<F> = scores
                    .iter()
                    .map(|&s| (-beta * (s - center).abs()).exp())
                    .collect();
                let sum = direct.iter().fold(F::zero(), |a, &b| a + b);
                for i in 0..n {
                    let expected = (direct[i] / sum).as_f64();
                    let ours = rows[rank * n + i].as_f64();
                    let condition = (beta * (scores[i] - center).abs()).as_f64();
                    let relative = (8.0 + 4.0 * condition) * epsilon;
                    let bound = relative * expected + 4.0 * F::MIN_POSITIVE.as_f64();
                    assert!(
                        (ours - expected).abs() <= bound,
                        "trial {trial}, rank {rank}, entry {i}: {ours} against {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn shared_exponentials_equal_the_direct_rows() {
        check::<f32>(f32::EPSILON as f64);
        check::<f64>(f64::EPSILON);
    }
}
