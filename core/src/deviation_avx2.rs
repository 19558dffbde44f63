//! NeuralSort's sums of absolute deviations `c_i = Σ_l |s_i − s_l|` and their vector-Jacobian
//! product for eight `f32` rows side by side, in `f64`, written with AVX2 intrinsics (x86-64,
//! where [`crate::cpu`] finds AVX2), for groups of rows without equal scores: the operations
//! of the portable lane loops (`lanes::deviation_sums_lanes`, `lanes::signed_adjoint_sums_lanes`
//! and `neuralsort::deviation_at`, `neuralsort::signed_adjoint_at`) in the same order, so the
//! same bits. Each wire's eight lanes are two registers of four `f64`; the portable loops were
//! vectorised by the compiler across wires, with a transpose of every operand.
//!
//! In ascending order of the scores, with `v_r` the r-th score less the smallest and `R_r` the
//! running sum of the `v` before position r (`R_n` the total `T`):
//! `c_r = (v_r·r − R_r) + ((T − R_{r+1}) − v_r·(n − r − 1))`. The backward, with `R` now the
//! running sums of the adjoints `c̄` in the same order:
//! `ḡ_r += c̄_r·(r − (n − r − 1)) + (R_r − (T − R_{r+1}))`.

use core::arch::x86_64::{
    __m256, __m256d, _mm256_add_pd, _mm256_add_ps, _mm256_castps128_ps256, _mm256_castps256_ps128,
    _mm256_cvtpd_ps, _mm256_cvtps_pd, _mm256_extractf128_ps, _mm256_insertf128_ps, _mm256_loadu_pd,
    _mm256_loadu_ps, _mm256_mul_pd, _mm256_set1_pd, _mm256_setzero_pd, _mm256_storeu_pd,
    _mm256_storeu_ps, _mm256_sub_pd,
};

/// The eight lanes of one wire, widened to `f64`: lanes 0–3 and 4–7.
#[inline(always)]
unsafe fn widen(values: &[f32; 8]) -> (__m256d, __m256d) {
    let values = _mm256_loadu_ps(values.as_ptr());
    (
        _mm256_cvtps_pd(_mm256_castps256_ps128(values)),
        _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(values)),
    )
}

/// Lanes 0–3 and 4–7 rounded to `f32` (to nearest, as `as f32`) into one register.
#[inline(always)]
unsafe fn narrow(low: __m256d, high: __m256d) -> __m256 {
    _mm256_insertf128_ps::<1>(
        _mm256_castps128_ps256(_mm256_cvtpd_ps(low)),
        _mm256_cvtpd_ps(high),
    )
}

#[inline(always)]
unsafe fn load_sums(sums: &[f64; 8]) -> (__m256d, __m256d) {
    (
        _mm256_loadu_pd(sums.as_ptr()),
        _mm256_loadu_pd(sums.as_ptr().add(4)),
    )
}

#[inline(always)]
unsafe fn store_sums(sums: &mut [f64; 8], low: __m256d, high: __m256d) {
    _mm256_storeu_pd(sums.as_mut_ptr(), low);
    _mm256_storeu_pd(sums.as_mut_ptr().add(4), high);
}

/// `running[r]` = the sum of `term(q)` over q < r, summed in order from +0, for r in 0..=n
/// (`running[n]` the total), per lane.
#[inline(always)]
unsafe fn running_sums(
    n: usize,
    running: &mut [[f64; 8]],
    term: impl Fn(usize) -> (__m256d, __m256d),
) {
    let (mut low, mut high) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for (r, sum) in running.iter_mut().enumerate().take(n) {
        store_sums(sum, low, high);
        let (term_low, term_high) = term(r);
        low = _mm256_add_pd(low, term_low);
        high = _mm256_add_pd(high, term_high);
    }
    store_sums(&mut running[n], low, high);
}

/// `c[r]` for the scores `sorted[r]` of every lane in ascending order (no two equal in a lane
/// whose result is used), with `running` (at least n + 1 wires) as scratch.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn deviation_sums(
    sorted: &[[f32; 8]],
    running: &mut [[f64; 8]],
    c: &mut [[f32; 8]],
) {
    let n = sorted.len();
    assert!(n > 0 && running.len() > n && c.len() >= n);
    let (pivot_low, pivot_high) = widen(&sorted[0]);
    let term = |r: usize| {
        let (low, high) = widen(&sorted[r]);
        (
            _mm256_sub_pd(low, pivot_low),
            _mm256_sub_pd(high, pivot_high),
        )
    };
    running_sums(n, running, term);
    let (total_low, total_high) = load_sums(&running[n]);
    for r in 0..n {
        let (v_low, v_high) = term(r);
        let below_count = _mm256_set1_pd(r as f64);
        let above_count = _mm256_set1_pd(n as f64 - (r + 1) as f64);
        let (below_low, below_high) = load_sums(&running[r]);
        let (upto_low, upto_high) = load_sums(&running[r + 1]);
        let deviation = |v, below, total, upto| {
            _mm256_add_pd(
                _mm256_sub_pd(_mm256_mul_pd(v, below_count), below),
                _mm256_sub_pd(_mm256_sub_pd(total, upto), _mm256_mul_pd(v, above_count)),
            )
        };
        let low = deviation(v_low, below_low, total_low, upto_low);
        let high = deviation(v_high, below_high, total_high, upto_high);
        _mm256_storeu_ps(c[r].as_mut_ptr(), narrow(low, high));
    }
}

/// `gradient[r] += c̄_r·(r − (n − r − 1)) + (R_r − (T − R_{r+1}))` (rounded to `f32` before the
/// addition) for the adjoints `c_bar[r]` of every lane in the scores' ascending order (no two
/// scores equal in a lane whose result is used), with `running` (n + 1 wires) as scratch.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn signed_adjoint_sums(
    c_bar: &[[f32; 8]],
    running: &mut [[f64; 8]],
    gradient: &mut [[f32; 8]],
) {
    let n = c_bar.len();
    assert!(running.len() > n && gradient.len() >= n);
    running_sums(n, running, |r| widen(&c_bar[r]));
    let (total_low, total_high) = load_sums(&running[n]);
    for r in 0..n {
        let (adjoint_low, adjoint_high) = widen(&c_bar[r]);
        let sign_count = _mm256_sub_pd(
            _mm256_set1_pd(r as f64),
            _mm256_set1_pd(n as f64 - (r + 1) as f64),
        );
        let (below_low, below_high) = load_sums(&running[r]);
        let (upto_low, upto_high) = load_sums(&running[r + 1]);
        let term = |adjoint, below, total, upto| {
            _mm256_add_pd(
                _mm256_mul_pd(adjoint, sign_count),
                _mm256_sub_pd(below, _mm256_sub_pd(total, upto)),
            )
        };
        let low = term(adjoint_low, below_low, total_low, upto_low);
        let high = term(adjoint_high, below_high, total_high, upto_high);
        let g = &mut gradient[r];
        let sum = _mm256_add_ps(_mm256_loadu_ps(g.as_ptr()), narrow(low, high));
        _mm256_storeu_ps(g.as_mut_ptr(), sum);
    }
}
