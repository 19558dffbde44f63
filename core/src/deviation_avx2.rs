//! NeuralSort's all-pairs sums for eight `f32` rows side by side, written with AVX2 intrinsics
//! (x86-64, where [`crate::cpu`] finds AVX2): the same bits as the portable lane loops of
//! [`crate::lanes`] and the one-row code of [`crate::neuralsort`].
//!
//! * forward: `c_i = Σ_l |s_i − s_l|`;
//! * backward: `Σ_l sign(s_i − s_l)(c̄_i + c̄_l)`, sign(0) = 0.
//!
//! Both sum in the interleaved partial sums of [`crate::neuralsort::PARTIAL_SUMS`]: term l goes
//! to partial `l mod 8`, each partial is summed over its terms in order of l, then the partials
//! are added in order. Each partial is a chain of dependent additions (4 cycles each); the
//! portable loops run one wire's chain at a time, at that latency (≈ 7 cycles per pair of wires
//! in the backward). Here four wires share each load of wire l and run four chains side by side,
//! and the backward's term is one addition: `+(c̄_i + c̄_l)` where `s_i > s_l`, its negation
//! where `s_i < s_l`, ±0 at a tie, which gives the portable code's bits (x − y is x + (−y), and a
//! partial, starting at +0, is never −0, so adding ±0 leaves it unchanged).

use core::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_and_ps, _mm256_cmp_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm256_sub_ps, _mm256_xor_ps, _CMP_NEQ_OQ,
};

use crate::neuralsort::PARTIAL_SUMS;

/// Wires per block: four chains in flight, 12–16 of the 16 registers in the backward.
const BLOCK: usize = 4;

/// `c[i] = Σ_l |s_i − s_l|` per lane, for every wire i of `selected` (`c.len() == selected.len()`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn deviation_sums(selected: &[[f32; 8]], c: &mut [[f32; 8]]) {
    let n = selected.len();
    assert_eq!(c.len(), n);
    let mut first = 0;
    while first + BLOCK <= n {
        deviation_block::<BLOCK>(selected, first, c);
        first += BLOCK;
    }
    while first < n {
        deviation_block::<1>(selected, first, c);
        first += 1;
    }
}

/// [`deviation_sums`] for the `W` wires `first..first + W`.
#[inline(always)]
unsafe fn deviation_block<const W: usize>(selected: &[[f32; 8]], first: usize, c: &mut [[f32; 8]]) {
    let n = selected.len();
    let magnitude = _mm256_set1_ps(f32::from_bits(0x7fff_ffff));
    let mut wires = [_mm256_setzero_ps(); W];
    for (w, wire) in wires.iter_mut().enumerate() {
        *wire = load(&selected[first + w]);
    }
    let mut total = [_mm256_setzero_ps(); W];
    for start in 0..PARTIAL_SUMS {
        let mut partial = [_mm256_setzero_ps(); W];
        let mut l = start;
        while l < n {
            let other = load(&selected[l]);
            for w in 0..W {
                let difference = _mm256_and_ps(_mm256_sub_ps(wires[w], other), magnitude);
                partial[w] = _mm256_add_ps(partial[w], difference);
            }
            l += PARTIAL_SUMS;
        }
        accumulate_partials(&mut total, &partial, start);
    }
    for w in 0..W {
        store(&mut c[first + w], total[w]);
    }
}

/// `gradient[i] += Σ_l sign(s_i − s_l)(c̄_i + c̄_l)` per lane, for every wire i (all three
/// slices of one length).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn signed_adjoint_sums(
    selected: &[[f32; 8]],
    c_bar: &[[f32; 8]],
    gradient: &mut [[f32; 8]],
) {
    let n = selected.len();
    assert!(c_bar.len() == n && gradient.len() == n);
    let mut first = 0;
    while first + BLOCK <= n {
        signed_adjoint_block::<BLOCK>(selected, c_bar, first, gradient);
        first += BLOCK;
    }
    while first < n {
        signed_adjoint_block::<1>(selected, c_bar, first, gradient);
        first += 1;
    }
}

/// [`signed_adjoint_sums`] for the `W` wires `first..first + W`.
#[inline(always)]
unsafe fn signed_adjoint_block<const W: usize>(
    selected: &[[f32; 8]],
    c_bar: &[[f32; 8]],
    first: usize,
    gradient: &mut [[f32; 8]],
) {
    let n = selected.len();
    let sign = _mm256_set1_ps(-0.0);
    let zero = _mm256_setzero_ps();
    let mut wires = [zero; W];
    let mut adjoints = [zero; W];
    for w in 0..W {
        wires[w] = load(&selected[first + w]);
        adjoints[w] = load(&c_bar[first + w]);
    }
    let mut total = [zero; W];
    for start in 0..PARTIAL_SUMS {
        let mut partial = [zero; W];
        let mut l = start;
        while l < n {
            let (other, other_adjoint) = (load(&selected[l]), load(&c_bar[l]));
            for w in 0..W {
                // s_i − s_l is 0 exactly at a tie (finite values, gradual underflow) and
                // negative exactly where s_i < s_l.
                let difference = _mm256_sub_ps(wires[w], other);
                let unequal = _mm256_cmp_ps::<_CMP_NEQ_OQ>(difference, zero);
                let both = _mm256_and_ps(_mm256_add_ps(adjoints[w], other_adjoint), unequal);
                let term = _mm256_xor_ps(both, _mm256_and_ps(difference, sign));
                partial[w] = _mm256_add_ps(partial[w], term);
            }
            l += PARTIAL_SUMS;
        }
        accumulate_partials(&mut total, &partial, start);
    }
    for w in 0..W {
        let g = &mut gradient[first + w];
        store(g, _mm256_add_ps(load(g), total[w]));
    }
}

/// `total = partial` for the first partial sum (`start` = 0), `total += partial` for the others:
/// the partials added in order, as `neuralsort::combine_partial_sums`.
#[inline(always)]
unsafe fn accumulate_partials<const W: usize>(
    total: &mut [__m256; W],
    partial: &[__m256; W],
    start: usize,
) {
    for (t, &p) in total.iter_mut().zip(partial) {
        *t = if start == 0 { p } else { _mm256_add_ps(*t, p) };
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

#[cfg(test)]
mod tests {
    use crate::neuralsort::{
        absolute_deviation_sums_backward_direct, absolute_deviation_sums_direct,
    };
    use alloc::vec::Vec;

    /// Eight rows of `n` values from a few levels (many ties, ±0) or spread out, as lanes.
    fn rows(n: usize, seed: u64, levels: Option<u32>) -> Vec<[f32; 8]> {
        let mut random = crate::test_random::Xorshift::seeded(seed);
        (0..n)
            .map(|_| {
                let mut wire = [0.0f32; 8];
                for value in wire.iter_mut() {
                    let bits = random.next_u64();
                    *value = match levels {
                        Some(levels) => {
                            let level = (bits % u64::from(levels)) as f32 - (levels / 2) as f32;
                            // −0 beside +0 at level 0.
                            if level == 0.0 && bits & 256 != 0 {
                                -0.0
                            } else {
                                level * 0.5
                            }
                        }
                        None => ((bits >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0) as f32,
                    };
                }
                wire
            })
            .collect()
    }

    fn lane(wires: &[[f32; 8]], lane: usize) -> Vec<f32> {
        wires.iter().map(|w| w[lane]).collect()
    }

    /// Both kernels equal the one-row code bit for bit, lane by lane: lengths around the block
    /// of four and the eight partial sums, ties, −0 beside +0.
    #[test]
    fn equal_the_one_row_code_bit_for_bit() {
        if !crate::cpu::has_avx2() {
            return;
        }
        for n in (1..=40).chain([63, 64, 65, 100, 255, 256]) {
            for (seed, levels) in [(1, None), (2, Some(3)), (3, Some(9)), (4, Some(1))] {
                let selected = rows(n, seed + n as u64, levels);
                let adjoints = rows(n, seed + 1000 + n as u64, None);
                let mut c = alloc::vec![[f32::NAN; 8]; n];
                // SAFETY: AVX2 checked above.
                unsafe { super::deviation_sums(&selected, &mut c) };
                let start = rows(n, seed + 2000, None);
                let mut gradient = start.clone();
                // SAFETY: AVX2 checked above.
                unsafe { super::signed_adjoint_sums(&selected, &adjoints, &mut gradient) };
                for l in 0..8 {
                    let scores = lane(&selected, l);
                    let mut expected = alloc::vec![0.0f32; n];
                    absolute_deviation_sums_direct(&scores, &mut expected);
                    let ours = lane(&c, l);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&ours), bits(&expected), "c, n {n}, lane {l}");
                    let mut expected = lane(&start, l);
                    absolute_deviation_sums_backward_direct(
                        &scores,
                        &lane(&adjoints, l),
                        &mut expected,
                    );
                    assert_eq!(
                        bits(&lane(&gradient, l)),
                        bits(&expected),
                        "VJP, n {n}, lane {l}"
                    );
                }
            }
        }
    }
}
