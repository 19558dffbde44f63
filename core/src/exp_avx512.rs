//! The row exponentials of [`crate::exp_avx2`] with AVX-512 (x86-64, where [`crate::cpu`]
//! finds AVX-512F and the operating system saves its registers): two wires' eight lanes per
//! 512-bit register, so half the instructions for the same work. Each element takes
//! [`crate::exp::exp_nonpositive_f32`]'s operations in the same order (no FMA contraction; the
//! flush by a mask instead of an AND, which gives the same +0), so the same bits as the AVX2
//! kernels and the portable code; an odd last wire goes to the AVX2 kernel (NeuralSort's
//! chained rows take it by masked loads and stores instead).
//!
//! Timed alone on a Zen 5 core, 80 wires of arguments in [−30, 0]: 2.2–2.7 ns per wire
//! against 3.8 ns for the AVX2 kernel. (A CPU that splits 512-bit instructions in two, as
//! Zen 4 does, should run it about as fast as AVX2: not measured, no such machine here.) The
//! lanes take these kernels on AMD processors
//! only ([`crate::cpu::prefers_avx512`]: many Intel Xeons lower their clock after 512-bit
//! instructions); the tests run them wherever AVX-512F is.

use core::arch::x86_64::{
    __m512, _mm512_add_epi32, _mm512_add_ps, _mm512_castps_si512, _mm512_castsi512_ps,
    _mm512_cmp_ps_mask, _mm512_loadu_ps, _mm512_maskz_mov_ps, _mm512_mul_ps, _mm512_set1_epi32,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_slli_epi32, _mm512_storeu_ps, _mm512_sub_epi32,
    _mm512_sub_ps, _CMP_LT_OQ,
};
use core::arch::x86_64::{
    __mmask16, _mm512_mask_mov_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_min_ps,
    _CMP_EQ_OQ,
};

use crate::exp::{
    INVERSE_FACTORIALS_F32, LN2_HI_F32, LN2_LO_F32, LOG2E_F32, LOWEST_NORMAL_ARGUMENT_F32,
    SHIFTER_F32,
};

/// `eˣ` per element for `x ≤ 0`: `exp_avx2`'s `exp_nonpositive` on sixteen lanes (arguments
/// below ln 2⁻¹²⁶ give +0 and are replaced by +0 before the arithmetic; NaN propagates).
///
/// # Safety
/// The CPU must support AVX-512F (inlined only into functions that enable it).
#[inline(always)]
unsafe fn exp_nonpositive(x: __m512) -> __m512 {
    let kept = !_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(LOWEST_NORMAL_ARGUMENT_F32));
    let x = _mm512_maskz_mov_ps(kept, x);
    let shifted = _mm512_add_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E_F32)),
        _mm512_set1_ps(SHIFTER_F32),
    );
    let n = _mm512_sub_ps(shifted, _mm512_set1_ps(SHIFTER_F32));
    let r = _mm512_sub_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(LN2_HI_F32))),
        _mm512_mul_ps(n, _mm512_set1_ps(LN2_LO_F32)),
    );
    let mut p = _mm512_set1_ps(INVERSE_FACTORIALS_F32[0]);
    for &c in &INVERSE_FACTORIALS_F32[1..] {
        p = _mm512_add_ps(_mm512_set1_ps(c), _mm512_mul_ps(r, p));
    }
    let exponent = _mm512_sub_epi32(
        _mm512_castps_si512(shifted),
        _mm512_set1_epi32(SHIFTER_F32.to_bits() as i32),
    );
    let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(exponent, _mm512_set1_epi32(127)));
    _mm512_maskz_mov_ps(kept, _mm512_mul_ps(p, _mm512_castsi512_ps(scale)))
}

/// A lane vector twice over: the register of two wires.
#[inline(always)]
unsafe fn doubled(lanes: &[f32; 8]) -> __m512 {
    let pair: [f32; 16] = core::array::from_fn(|i| lanes[i % 8]);
    _mm512_loadu_ps(pair.as_ptr())
}

/// `exp_avx2::scaled_exponentials`: in place, `rows[w] = e^((rows[w] − shift)·β)` per lane;
/// a pair of wires whose sixteen arguments are all below the flush threshold is set to +0
/// without the exponentials (the same bits).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn scaled_exponentials(rows: &mut [[f32; 8]], shift: &[f32; 8], beta: f32) {
    let wide_shift = doubled(shift);
    let wide_beta = _mm512_set1_ps(beta);
    let lowest = _mm512_set1_ps(LOWEST_NORMAL_ARGUMENT_F32);
    let mut pairs = rows.chunks_exact_mut(2);
    for pair in &mut pairs {
        let pointer = pair.as_mut_ptr().cast::<f32>();
        let argument = _mm512_mul_ps(
            _mm512_sub_ps(_mm512_loadu_ps(pointer), wide_shift),
            wide_beta,
        );
        let value = if _mm512_cmp_ps_mask::<_CMP_LT_OQ>(argument, lowest) == 0xffff {
            _mm512_setzero_ps()
        } else {
            exp_nonpositive(argument)
        };
        _mm512_storeu_ps(pointer, value);
    }
    crate::exp_avx2::scaled_exponentials(pairs.into_remainder(), shift, beta);
}

/// `exp_avx2::chained_rows` with AVX-512, the same bits: rows K−2, …, 0 of NeuralSort's
/// chained rows in place (`rows[ρ·n + w]`, row K−1 already there, unnormalised), two wires per
/// register (an odd last wire by masked loads and stores). The exponentials that some entries
/// need (a direct lane, or an entry back from a flush) are made in a second pass over the row
/// where there are any, so that the first pass holds its constants in registers.
///
/// # Safety
/// The CPU must support AVX-512F. `rows` holds `k·n` wires, the operands `n` wires and `k`
/// rows.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn chained_rows(
    rows: &mut [[f32; 8]],
    n: usize,
    k: usize,
    chain: &crate::lanes::ChainOperands<'_, f32>,
) {
    assert!(rows.len() >= k * n && chain.shifts.len() >= k && chain.factors.len() >= k);
    assert!(chain.weights.len() >= n && chain.sorted.len() >= n && chain.deviations.len() >= n);
    let lane_bits = chain
        .direct
        .iter()
        .enumerate()
        .fold(0u16, |bits, (lane, &all)| {
            bits | (u16::from(all != 0) << lane)
        });
    let direct: __mmask16 = lane_bits | (lane_bits << 8);
    let wide_beta = _mm512_set1_ps(chain.beta);
    let lowest = _mm512_set1_ps(LOWEST_NORMAL_ARGUMENT_F32);
    let zero = _mm512_setzero_ps();
    let base = rows.as_mut_ptr().cast::<f32>();
    let (weights, sorted) = (
        chain.weights.as_ptr().cast::<f32>(),
        chain.sorted.as_ptr().cast::<f32>(),
    );
    let deviations = chain.deviations.as_ptr().cast::<f32>();
    for rank in (0..k.saturating_sub(1)).rev() {
        let row = base.add(8 * rank * n);
        let next = row.add(8 * n);
        let shift = doubled(&chain.shifts[rank]);
        let factor = doubled(&chain.factors[rank]);
        let scale = _mm512_set1_ps(((n as f64) - 1.0 - 2.0 * rank as f64) as f32);
        // One pair of wires from float offset `at` (the low eight lanes only where `mask` is
        // 0x00ff): the argument, the chained value and the lanes that need `e^a`.
        let entry = |at: usize, mask: __mmask16| {
            let z = _mm512_sub_ps(
                _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, sorted.add(at)), scale),
                _mm512_maskz_loadu_ps(mask, deviations.add(at)),
            );
            let argument = _mm512_min_ps(_mm512_mul_ps(_mm512_sub_ps(z, shift), wide_beta), zero);
            let kept = !_mm512_cmp_ps_mask::<_CMP_LT_OQ>(argument, lowest);
            let below = _mm512_maskz_loadu_ps(mask, next.add(at));
            let product = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, weights.add(at)), factor);
            let value = _mm512_mul_ps(_mm512_maskz_mov_ps(kept, below), product);
            let restarted = kept & _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(below, zero);
            (argument, value, (direct | restarted) & mask)
        };
        let pairs = n / 2;
        let tail: __mmask16 = if n % 2 == 1 { 0x00ff } else { 0 };
        let mut any_needed: __mmask16 = 0;
        for pair in 0..pairs {
            let (_, value, needed) = entry(16 * pair, 0xffff);
            _mm512_storeu_ps(row.add(16 * pair), value);
            any_needed |= needed;
        }
        if tail != 0 {
            let (_, value, needed) = entry(16 * pairs, tail);
            _mm512_mask_storeu_ps(row.add(16 * pairs), tail, value);
            any_needed |= needed;
        }
        if any_needed == 0 {
            continue;
        }
        for pair in 0..pairs + usize::from(tail != 0) {
            let mask = if pair < pairs { 0xffff } else { tail };
            let (argument, _, needed) = entry(16 * pair, mask);
            if needed != 0 {
                let value = _mm512_maskz_loadu_ps(mask, row.add(16 * pair));
                let value = _mm512_mask_mov_ps(value, needed, exp_nonpositive(argument));
                _mm512_mask_storeu_ps(row.add(16 * pair), mask, value);
            }
        }
    }
}

/// `exp_avx2::distance_exponentials`: `out[w] = e^(−β |values[w] − center|)` per lane, over
/// the wires both slices have.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn distance_exponentials(
    values: &[[f32; 8]],
    center: &[f32; 8],
    beta: f32,
    out: &mut [[f32; 8]],
) {
    let wires = values.len().min(out.len());
    let (values, out) = (&values[..wires], &mut out[..wires]);
    let wide_center = doubled(center);
    let negative_beta = _mm512_set1_ps(-beta);
    let mut out_pairs = out.chunks_exact_mut(2);
    let mut value_pairs = values.chunks_exact(2);
    for (out, values) in (&mut out_pairs).zip(&mut value_pairs) {
        let difference = _mm512_sub_ps(_mm512_loadu_ps(values.as_ptr().cast()), wide_center);
        // |d|: the sign bit cleared (as `_mm256_andnot_ps(-0.0, d)`).
        let distance = _mm512_castsi512_ps(core::arch::x86_64::_mm512_and_si512(
            _mm512_castps_si512(difference),
            _mm512_set1_epi32(i32::MAX),
        ));
        let value = exp_nonpositive(_mm512_mul_ps(negative_beta, distance));
        _mm512_storeu_ps(out.as_mut_ptr().cast(), value);
    }
    crate::exp_avx2::distance_exponentials(
        value_pairs.remainder(),
        center,
        beta,
        out_pairs.into_remainder(),
    );
}

/// `exp_avx2::shifted_exponentials`: `out[w] = e^(values[w] − shift)` per lane, over the
/// wires both slices have.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn shifted_exponentials(
    values: &[[f32; 8]],
    shift: &[f32; 8],
    out: &mut [[f32; 8]],
) {
    let wires = values.len().min(out.len());
    let (values, out) = (&values[..wires], &mut out[..wires]);
    let wide_shift = doubled(shift);
    let mut out_pairs = out.chunks_exact_mut(2);
    let mut value_pairs = values.chunks_exact(2);
    for (out, values) in (&mut out_pairs).zip(&mut value_pairs) {
        let value = exp_nonpositive(_mm512_sub_ps(
            _mm512_loadu_ps(values.as_ptr().cast()),
            wide_shift,
        ));
        _mm512_storeu_ps(out.as_mut_ptr().cast(), value);
    }
    crate::exp_avx2::shifted_exponentials(
        value_pairs.remainder(),
        shift,
        out_pairs.into_remainder(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Every lane of [`exp_nonpositive`] gives `exp_f32`'s bits over x ≤ 0
    /// (`exp_avx2::nonpositive_test_arguments`) and propagates NaN.
    #[test]
    fn the_wide_exponential_gives_exp_f32_bits() {
        if !crate::cpu::has_avx512f() {
            return;
        }
        let arguments = crate::exp_avx2::nonpositive_test_arguments(16);
        let mut compared = 0;
        for block in arguments.chunks_exact(16) {
            let mut lanes = [0.0f32; 16];
            // SAFETY: the CPU supports AVX-512F, checked above.
            unsafe {
                _mm512_storeu_ps(
                    lanes.as_mut_ptr(),
                    exp_nonpositive(_mm512_loadu_ps(block.as_ptr())),
                )
            };
            for (&x, &lane) in block.iter().zip(&lanes) {
                assert_eq!(lane.to_bits(), crate::exp::exp_f32(x).to_bits(), "e^{x:e}");
                compared += 1;
            }
        }
        assert!(compared > 100_000);
        let mut nan = [0.0f32; 16];
        // SAFETY: as above.
        unsafe { _mm512_storeu_ps(nan.as_mut_ptr(), exp_nonpositive(_mm512_set1_ps(f32::NAN))) };
        assert!(nan.iter().all(|v| v.is_nan()));
    }

    /// The three kernels give the AVX2 kernels' bits (those are checked against the portable
    /// code), for even and odd wire counts, with arguments across the flush threshold, ±0,
    /// infinities and NaN among the values.
    #[test]
    fn the_wide_kernels_give_the_avx2_kernels_bits() {
        if !crate::cpu::has_avx512f() {
            return;
        }
        let mut random = crate::test_random::Xorshift::new(0x9e37_79b9_7f4a_7c15);
        for wires in [1usize, 2, 5, 16, 37] {
            let mut values: Vec<[f32; 8]> = (0..wires)
                .map(|_| {
                    core::array::from_fn(|_| (random.next_u64() % 60_001) as f32 / 500.0 - 60.0)
                })
                .collect();
            if wires > 4 {
                values[1] = [
                    0.0,
                    -0.0,
                    f32::NAN,
                    -f32::INFINITY,
                    1e-40,
                    -1e-40,
                    3.0,
                    -120.0,
                ];
                // A pair whose scaled arguments are all flushed.
                values[2] = [-119.0; 8];
                values[3] = [-118.5; 8];
            }
            let mut maximum = [f32::NEG_INFINITY; 8];
            for wire in &values {
                for lane in 0..8 {
                    if wire[lane] > maximum[lane] {
                        maximum[lane] = wire[lane];
                    }
                }
            }
            let center = values[wires / 2];
            for beta in [0.5f32, 1.0, 7.3] {
                let (mut wide, mut narrow) = (values.clone(), values.clone());
                let mut wide_distance = alloc::vec![[0.0f32; 8]; wires];
                let mut narrow_distance = wide_distance.clone();
                let mut wide_shifted = wide_distance.clone();
                let mut narrow_shifted = wide_distance.clone();
                // SAFETY: the CPU supports AVX-512F and AVX2 (`has_avx512f` implies it), checked
                // above.
                unsafe {
                    scaled_exponentials(&mut wide, &maximum, beta);
                    crate::exp_avx2::scaled_exponentials(&mut narrow, &maximum, beta);
                    distance_exponentials(&values, &center, beta, &mut wide_distance);
                    crate::exp_avx2::distance_exponentials(
                        &values,
                        &center,
                        beta,
                        &mut narrow_distance,
                    );
                    shifted_exponentials(&values, &maximum, &mut wide_shifted);
                    crate::exp_avx2::shifted_exponentials(&values, &maximum, &mut narrow_shifted);
                }
                for (wide, narrow) in [
                    (&wide, &narrow),
                    (&wide_distance, &narrow_distance),
                    (&wide_shifted, &narrow_shifted),
                ] {
                    for (w, n) in wide.iter().flatten().zip(narrow.iter().flatten()) {
                        assert_eq!(w.to_bits(), n.to_bits(), "{wires} wires, beta {beta}");
                    }
                }
            }
        }
    }
}
