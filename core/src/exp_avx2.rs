//! `eˣ` for eight `f32` lanes at once, written with AVX2 intrinsics (x86-64, where
//! [`crate::cpu`] finds AVX2), for the exponentials of the lane kernels ([`crate::lanes`]):
//! the rows of NeuralSort and SoftSort and the top-1 softmax (and [`lane_maxima`], the shift
//! of their arguments). Every one of them has an argument
//! `≤ 0` (a value less its lane's maximum, or `−β|·|`), where [`crate::exp::exp_f32`] equals
//! [`crate::exp::exp_nonpositive_f32`] bit for bit; this is the latter, operation for operation
//! (the same range reduction and polynomial, no FMA contraction), so the same bits as the
//! portable code.
//!
//! Why intrinsics: the portable lane loops call `exp_f32` per lane and rely on the compiler to
//! vectorise them. It did for `exp_f32`, but with `exp_nonpositive_f32` (fewer operations) it
//! chose to vectorise across wires instead, with a transpose of every operand, and the loss got
//! slower. Here each wire's eight lanes are one register. Timed alone, 1280 registers of
//! arguments in [−25, 0]: 4.75 ns per register against 6.18 ns for the compiled `exp_f32`.

use core::arch::x86_64::{
    __m256, _mm256_add_epi32, _mm256_add_ps, _mm256_andnot_ps, _mm256_castps_si256,
    _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_loadu_ps, _mm256_max_ps, _mm256_movemask_ps,
    _mm256_mul_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps, _mm256_slli_epi32,
    _mm256_storeu_ps, _mm256_sub_epi32, _mm256_sub_ps, _CMP_LT_OQ,
};
use core::arch::x86_64::{
    _mm256_blendv_ps, _mm256_loadu_si256, _mm256_min_ps, _mm256_or_ps, _CMP_EQ_OQ,
};

use crate::exp::{
    INVERSE_FACTORIALS_F32, LN2_HI_F32, LN2_LO_F32, LOG2E_F32, LOWEST_NORMAL_ARGUMENT_F32,
    SHIFTER_F32,
};

/// `eˣ` per lane for `x ≤ 0` (`exp_nonpositive_f32`'s steps): arguments below ln 2⁻¹²⁶ give
/// +0 (and are replaced by 0 before the arithmetic), `n = round(x·log₂e)` by the shifter,
/// `r = (x − n·ln2_hi) − n·ln2_lo`, the degree-7 Taylor polynomial of `eʳ` by Horner, then one
/// scaling by `2ⁿ` built from the exponent bits (`n ∈ [−126, 0]`). NaN propagates.
///
/// # Safety
/// The CPU must support AVX2 (inlined only into functions that enable it).
#[inline(always)]
unsafe fn exp_nonpositive(x: __m256) -> __m256 {
    let flush = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(LOWEST_NORMAL_ARGUMENT_F32));
    let x = _mm256_andnot_ps(flush, x);
    let shifted = _mm256_add_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(LOG2E_F32)),
        _mm256_set1_ps(SHIFTER_F32),
    );
    let n = _mm256_sub_ps(shifted, _mm256_set1_ps(SHIFTER_F32));
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI_F32))),
        _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO_F32)),
    );
    let mut p = _mm256_set1_ps(INVERSE_FACTORIALS_F32[0]);
    for &c in &INVERSE_FACTORIALS_F32[1..] {
        p = _mm256_add_ps(_mm256_set1_ps(c), _mm256_mul_ps(r, p));
    }
    let exponent = _mm256_sub_epi32(
        _mm256_castps_si256(shifted),
        _mm256_set1_epi32(SHIFTER_F32.to_bits() as i32),
    );
    let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(exponent, _mm256_set1_epi32(127)));
    _mm256_andnot_ps(flush, _mm256_mul_ps(p, _mm256_castsi256_ps(scale)))
}

/// In place, `rows[w] = e^((rows[w] − shift)·β)` per lane, with `shift` each lane's maximum
/// over the wires (so every argument is `≤ 0`); a wire whose eight arguments are all below the
/// flush threshold is set to +0 without the exponentials (the same bits).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn scaled_exponentials(rows: &mut [[f32; 8]], shift: &[f32; 8], beta: f32) {
    let shift = _mm256_loadu_ps(shift.as_ptr());
    let beta = _mm256_set1_ps(beta);
    let lowest = _mm256_set1_ps(LOWEST_NORMAL_ARGUMENT_F32);
    for row in rows.iter_mut() {
        let argument = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row.as_ptr()), shift), beta);
        let flushed = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(argument, lowest)) == 0xff;
        let value = if flushed {
            _mm256_setzero_ps()
        } else {
            exp_nonpositive(argument)
        };
        _mm256_storeu_ps(row.as_mut_ptr(), value);
    }
}

/// Rows K−2, …, 0 of NeuralSort's chained rows in place (`rows[ρ·n + w]`, row K−1 already
/// there, unnormalised): per lane `neuralsort::chained_entry` of the argument
/// `a = min((z − shift_ρ)·β, 0)`, `z = sorted·(n − 1 − 2ρ) − deviations`
/// (`neuralsort::chained_argument`), the same bits as the portable code; lanes set in
/// `direct` take `e^a` itself. The exponentials that some entries need (a direct lane, or an
/// entry back from a flush) are made in a second pass over the row where there are any, so
/// that the first pass holds its constants in registers.
///
/// # Safety
/// The CPU must support AVX2. `rows` holds `k·n` wires, the operands `n` wires and `k` rows.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn chained_rows(
    rows: &mut [[f32; 8]],
    n: usize,
    k: usize,
    chain: &crate::lanes::ChainOperands<'_, f32>,
) {
    assert!(rows.len() >= k * n && chain.shifts.len() >= k && chain.factors.len() >= k);
    assert!(chain.weights.len() >= n && chain.sorted.len() >= n && chain.deviations.len() >= n);
    let direct = _mm256_castsi256_ps(_mm256_loadu_si256(chain.direct.as_ptr().cast()));
    let beta = _mm256_set1_ps(chain.beta);
    let lowest = _mm256_set1_ps(LOWEST_NORMAL_ARGUMENT_F32);
    let zero = _mm256_setzero_ps();
    for rank in (0..k.saturating_sub(1)).rev() {
        let (row, next) = rows[rank * n..(rank + 2) * n].split_at_mut(n);
        let shift = _mm256_loadu_ps(chain.shifts[rank].as_ptr());
        let factor = _mm256_loadu_ps(chain.factors[rank].as_ptr());
        let scale = _mm256_set1_ps(((n as f64) - 1.0 - 2.0 * rank as f64) as f32);
        // One wire: the argument, the chained value and the lanes that need `e^a`.
        let entry = |wire: usize| {
            let z = _mm256_sub_ps(
                _mm256_mul_ps(_mm256_loadu_ps(chain.sorted[wire].as_ptr()), scale),
                _mm256_loadu_ps(chain.deviations[wire].as_ptr()),
            );
            let argument = _mm256_min_ps(_mm256_mul_ps(_mm256_sub_ps(z, shift), beta), zero);
            let flushed = _mm256_cmp_ps::<_CMP_LT_OQ>(argument, lowest);
            let below = _mm256_loadu_ps(next[wire].as_ptr());
            let product = _mm256_mul_ps(_mm256_loadu_ps(chain.weights[wire].as_ptr()), factor);
            let value = _mm256_mul_ps(_mm256_andnot_ps(flushed, below), product);
            let restarted = _mm256_andnot_ps(flushed, _mm256_cmp_ps::<_CMP_EQ_OQ>(below, zero));
            (argument, value, _mm256_or_ps(direct, restarted))
        };
        let mut any_needed = zero;
        for (wire, out) in row.iter_mut().enumerate() {
            let (_, value, needed) = entry(wire);
            _mm256_storeu_ps(out.as_mut_ptr(), value);
            any_needed = _mm256_or_ps(any_needed, needed);
        }
        if _mm256_movemask_ps(any_needed) == 0 {
            continue;
        }
        for (wire, out) in row.iter_mut().enumerate() {
            let (argument, _, needed) = entry(wire);
            if _mm256_movemask_ps(needed) != 0 {
                let value = _mm256_loadu_ps(out.as_ptr());
                let value = _mm256_blendv_ps(value, exp_nonpositive(argument), needed);
                _mm256_storeu_ps(out.as_mut_ptr(), value);
            }
        }
    }
}

/// `out[w] = e^(−β |values[w] − center|)` per lane (SoftSort's weights around a centre), over
/// the wires both slices have.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn distance_exponentials(
    values: &[[f32; 8]],
    center: &[f32; 8],
    beta: f32,
    out: &mut [[f32; 8]],
) {
    let center = _mm256_loadu_ps(center.as_ptr());
    let negative_beta = _mm256_set1_ps(-beta);
    let sign = _mm256_set1_ps(-0.0);
    for (out, values) in out.iter_mut().zip(values) {
        let distance = _mm256_andnot_ps(
            sign,
            _mm256_sub_ps(_mm256_loadu_ps(values.as_ptr()), center),
        );
        let value = exp_nonpositive(_mm256_mul_ps(negative_beta, distance));
        _mm256_storeu_ps(out.as_mut_ptr(), value);
    }
}

/// `out[w] = e^(values[w] − shift)` per lane, with `shift` each lane's maximum over the wires,
/// over the wires both slices have.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn shifted_exponentials(
    values: &[[f32; 8]],
    shift: &[f32; 8],
    out: &mut [[f32; 8]],
) {
    let shift = _mm256_loadu_ps(shift.as_ptr());
    for (out, values) in out.iter_mut().zip(values) {
        let value = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(values.as_ptr()), shift));
        _mm256_storeu_ps(out.as_mut_ptr(), value);
    }
}

/// Per lane, the largest value over the wires (at least one), as `lanes::lane_maxima`: four
/// running maxima over interleaved wires, then combined; each step keeps the new value where
/// it is larger (`_mm256_max_ps(new, old)`: the old where they compare equal or either is NaN,
/// as the portable `if new > old` select), the same bits. The portable select compiled to a
/// compare and a blend per step, vectorised across wires.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn lane_maxima(wires: &[[f32; 8]]) -> [f32; 8] {
    let first = _mm256_loadu_ps(wires[0].as_ptr());
    let mut maxima = [first; 4];
    let mut blocks = wires.chunks_exact(4);
    for block in &mut blocks {
        for (maximum, values) in maxima.iter_mut().zip(block) {
            *maximum = _mm256_max_ps(_mm256_loadu_ps(values.as_ptr()), *maximum);
        }
    }
    for values in blocks.remainder() {
        maxima[0] = _mm256_max_ps(_mm256_loadu_ps(values.as_ptr()), maxima[0]);
    }
    let [mut maximum, second, third, fourth] = maxima;
    for values in [second, third, fourth] {
        maximum = _mm256_max_ps(values, maximum);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), maximum);
    out
}

/// Arguments `x ≤ 0` for the lane exponentials' bit-for-bit tests against `exp_f32`: every
/// 601st f32 bit pattern in [−104, −0], every one around the flush threshold and around the
/// arguments where n's rounding flips (x·log₂e near half-integers), ±0, −∞ and the smallest
/// normal and subnormal magnitudes, padded with −1 to a multiple of `lanes`.
#[cfg(test)]
pub(crate) fn nonpositive_test_arguments(lanes: usize) -> alloc::vec::Vec<f32> {
    let mut arguments: alloc::vec::Vec<f32> = (0.0f32.to_bits()..=104.0f32.to_bits())
        .step_by(601)
        .map(|bits| -f32::from_bits(bits))
        .collect();
    let threshold = LOWEST_NORMAL_ARGUMENT_F32;
    arguments.extend((0..4000u32).map(|step| f32::from_bits(threshold.to_bits() - 2000 + step)));
    for half in 0..126 {
        // x with x·log₂e near −(half + ½): the rounding of n flips there.
        let x = -((half as f32) + 0.5) * core::f32::consts::LN_2;
        arguments.extend((0..64u32).map(|step| f32::from_bits(x.to_bits() - 32 + step)));
    }
    arguments.extend([0.0, -0.0, f32::NEG_INFINITY, -f32::MIN_POSITIVE, -1e-45]);
    while !arguments.len().is_multiple_of(lanes) {
        arguments.push(-1.0);
    }
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exp::exp_f32;

    /// Every lane of [`exp_nonpositive`] gives `exp_f32`'s bits over x ≤ 0
    /// ([`nonpositive_test_arguments`]) and propagates NaN.
    #[test]
    fn the_lanes_give_exp_f32_bits_for_nonpositive_arguments() {
        if !crate::cpu::has_avx2() {
            return;
        }
        let arguments = nonpositive_test_arguments(8);
        let mut compared = 0;
        for block in arguments.chunks_exact(8) {
            let mut lanes = [0.0f32; 8];
            // SAFETY: the CPU supports AVX2, checked above.
            unsafe {
                _mm256_storeu_ps(
                    lanes.as_mut_ptr(),
                    exp_nonpositive(_mm256_loadu_ps(block.as_ptr())),
                )
            };
            for (&x, &lane) in block.iter().zip(&lanes) {
                assert_eq!(lane.to_bits(), exp_f32(x).to_bits(), "e^{x:e}");
                compared += 1;
            }
        }
        assert!(compared > 100_000);
        let mut nan = [0.0f32; 8];
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(nan.as_mut_ptr(), exp_nonpositive(_mm256_set1_ps(f32::NAN))) };
        assert!(nan.iter().all(|v| v.is_nan()));
    }

    /// The three row functions against their portable forms, lane by lane.
    #[test]
    fn the_row_functions_match_the_portable_forms() {
        if !crate::cpu::has_avx2() {
            return;
        }
        let beta = 1.7f32;
        let values: alloc::vec::Vec<[f32; 8]> = (0..37)
            .map(|wire| {
                core::array::from_fn(|lane| {
                    (((wire * 8 + lane) * 2_654_435_761usize) % 4001) as f32 / 97.0 - 20.0
                })
            })
            .collect();
        let mut maximum = [f32::NEG_INFINITY; 8];
        for wire in &values {
            for lane in 0..8 {
                maximum[lane] = maximum[lane].max(wire[lane]);
            }
        }
        let center = values[5];
        let mut scaled = values.clone();
        let mut distance = alloc::vec![[0.0f32; 8]; values.len()];
        let mut shifted = alloc::vec![[0.0f32; 8]; values.len()];
        // SAFETY: the CPU supports AVX2, checked above.
        unsafe {
            scaled_exponentials(&mut scaled, &maximum, 60.0 * beta);
            distance_exponentials(&values, &center, beta, &mut distance);
            shifted_exponentials(&values, &maximum, &mut shifted);
        }
        let mut flushed = 0;
        for (wire, v) in values.iter().enumerate() {
            for lane in 0..8 {
                let expected = exp_f32((v[lane] - maximum[lane]) * (60.0 * beta));
                flushed += usize::from(expected == 0.0);
                assert_eq!(scaled[wire][lane].to_bits(), expected.to_bits());
                let expected = exp_f32(-beta * (v[lane] - center[lane]).abs());
                assert_eq!(distance[wire][lane].to_bits(), expected.to_bits());
                let expected = exp_f32(v[lane] - maximum[lane]);
                assert_eq!(shifted[wire][lane].to_bits(), expected.to_bits());
            }
        }
        assert!(flushed > 0, "the scaled case reaches the flush");
    }
}
