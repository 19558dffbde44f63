//! The per-wire backward steps of NeuralSort's and SoftSort's relaxed rows for eight `f32` rows
//! side by side, written with AVX2 intrinsics (x86-64, where [`crate::cpu`] finds AVX2): the
//! same operations in the same order as the portable lane loops of [`crate::lanes`] and the
//! one-row code of [`crate::neuralsort`] and [`crate::softsort`], so the same bits.
//!
//! Per relaxed row ρ and wire i the softmax adjoint is `a_i = P̂'_i (δ_{i,label} ā − d)`, with
//! `P̂'_i` the row's entry (NeuralSort: or 0 off the label where it is below the flush
//! threshold, `softmax::kept_probability`). NeuralSort then adds `ḡ_i += a_i · scale`,
//! `c̄_i −= a_i · β`; SoftSort `d_i = a_i β sign(s_i − s_(ρ))`, `ḡ_i −= d_i` and sums the d_i for
//! the centre. The portable loops over [`crate::lanes::Lanes`] were vectorised by the compiler
//! across wires, four at a time, with a transpose of every operand (dozens of shuffles per
//! wire); here each wire is one register.

use core::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_and_ps, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmpeq_epi32,
    _mm256_loadu_ps, _mm256_loadu_si256, _mm256_movemask_ps, _mm256_mul_ps, _mm256_or_ps,
    _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps, _mm256_sub_ps,
    _CMP_GE_OQ, _CMP_GT_OQ, _CMP_LT_OQ, _CMP_NEQ_UQ,
};

/// For every wire i of `row` (one relaxed row, n wires of 8 lanes):
/// `a = kept(P̂_i) · (onehot_i − dot)`, `gradient[i] += a · scale`, `c_bar[i] −= a · beta`, where
/// `onehot_i` is `adjoint` in the lanes whose label is i (else 0) and `kept(P̂_i)` is `P̂_i`
/// where `onehot_i ≠ 0` or `P̂_i ≥ threshold`, else 0.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn neuralsort_adjoint_step(
    row: &[[f32; 8]],
    labels: &[u32; 8],
    adjoint: &[f32; 8],
    dot: &[f32; 8],
    threshold: &[f32; 8],
    scale: f32,
    beta: f32,
    gradient: &mut [[f32; 8]],
    c_bar: &mut [[f32; 8]],
) {
    let n = row.len();
    assert!(gradient.len() == n && c_bar.len() == n);
    let labels = _mm256_loadu_si256(labels.as_ptr().cast());
    let adjoint = load(adjoint);
    let dot = load(dot);
    let threshold = load(threshold);
    let (scale, beta) = (_mm256_set1_ps(scale), _mm256_set1_ps(beta));
    let zero = _mm256_setzero_ps();
    for wire in 0..n {
        let p = load(&row[wire]);
        // Where every lane's P̂_i is +0 (flushed), a is ±0 and ḡ, c̄ stay as they are (sums
        // that start at +0 are never −0): skipped. NeuralSort's rows in sorted order have long
        // runs of such blocks.
        if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(p, zero)) == 0 {
            continue;
        }
        let at_label =
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_set1_epi32(wire as i32), labels));
        let one_hot = _mm256_and_ps(adjoint, at_label);
        // Kept where the one-hot adjoint is not 0 or P̂ reaches the threshold (as
        // `kept_probability`: `!=` is true for NaN, `>=` false).
        let kept_lanes = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_NEQ_UQ>(one_hot, zero),
            _mm256_cmp_ps::<_CMP_GE_OQ>(p, threshold),
        );
        let kept = _mm256_and_ps(p, kept_lanes);
        let a = _mm256_mul_ps(kept, _mm256_sub_ps(one_hot, dot));
        let g = &mut gradient[wire];
        store(g, _mm256_add_ps(load(g), _mm256_mul_ps(a, scale)));
        let c = &mut c_bar[wire];
        store(c, _mm256_sub_ps(load(c), _mm256_mul_ps(a, beta)));
    }
}

/// SoftSort's step for every wire i of `row` (n wires of 8 lanes): `a = P̂_i · (onehot_i − dot)`,
/// `d = (a · β) · sign(s_i − centre)` (sign(0) = 0), `gradient[i] −= d`; returns the sum of the
/// d over the wires in order (the centre's adjoint), starting at +0.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn softsort_adjoint_step(
    row: &[[f32; 8]],
    scores: &[[f32; 8]],
    labels: &[u32; 8],
    adjoint: &[f32; 8],
    dot: &[f32; 8],
    center: &[f32; 8],
    beta: f32,
    gradient: &mut [[f32; 8]],
) -> [f32; 8] {
    let n = row.len();
    assert!(gradient.len() == n && scores.len() == n);
    let labels = _mm256_loadu_si256(labels.as_ptr().cast());
    let adjoint = load(adjoint);
    let dot = load(dot);
    let center = load(center);
    let beta = _mm256_set1_ps(beta);
    let zero = _mm256_setzero_ps();
    let (one, minus_one) = (_mm256_set1_ps(1.0), _mm256_set1_ps(-1.0));
    let mut center_bar = zero;
    for wire in 0..n {
        let p = load(&row[wire]);
        let at_label =
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_set1_epi32(wire as i32), labels));
        let one_hot = _mm256_and_ps(adjoint, at_label);
        let a = _mm256_mul_ps(p, _mm256_sub_ps(one_hot, dot));
        let difference = _mm256_sub_ps(load(&scores[wire]), center);
        // +1 above the centre, −1 below, +0 at it (as the portable selects).
        let sign = _mm256_or_ps(
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(difference, zero), one),
            _mm256_and_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(difference, zero), minus_one),
        );
        let d = _mm256_mul_ps(_mm256_mul_ps(a, beta), sign);
        let g = &mut gradient[wire];
        store(g, _mm256_sub_ps(load(g), d));
        center_bar = _mm256_add_ps(center_bar, d);
    }
    let mut sum = [0f32; 8];
    store(&mut sum, center_bar);
    sum
}

/// The top-1 term of the gradient for every wire i of `probabilities` (the top-1 softmax,
/// n wires of 8 lanes), with `δ_i` 1 in the lanes whose label is i, else 0: in the softmax
/// mode (`CROSS_ENTROPY` false) `gradient[i] += factor · (δ_i − p_i)`, in the cross-entropy
/// mode `gradient[i] += factor · (p_i − δ_i)` (factor `P_K[1]` there).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn top1_step<const CROSS_ENTROPY: bool>(
    probabilities: &[[f32; 8]],
    labels: &[u32; 8],
    factor: &[f32; 8],
    gradient: &mut [[f32; 8]],
) {
    assert!(gradient.len() == probabilities.len());
    let labels = _mm256_loadu_si256(labels.as_ptr().cast());
    let factor = load(factor);
    let one = _mm256_set1_ps(1.0);
    for (wire, (g, p)) in gradient.iter_mut().zip(probabilities).enumerate() {
        let at_label =
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_set1_epi32(wire as i32), labels));
        let delta = _mm256_and_ps(one, at_label);
        let difference = if CROSS_ENTROPY {
            _mm256_sub_ps(load(p), delta)
        } else {
            _mm256_sub_ps(delta, load(p))
        };
        store(g, _mm256_add_ps(load(g), _mm256_mul_ps(factor, difference)));
    }
}

#[inline(always)]
unsafe fn load(values: &[f32; 8]) -> __m256 {
    _mm256_loadu_ps(values.as_ptr())
}

#[inline(always)]
unsafe fn store(values: &mut [f32; 8], vector: __m256) {
    _mm256_storeu_ps(values.as_mut_ptr(), vector)
}
