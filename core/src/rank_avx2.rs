//! NeuralSort's order for eight `f32` rows side by side, written with AVX2 intrinsics (x86-64,
//! where [`crate::cpu`] finds AVX2): each value's rank in ascending (value, position) order,
//! counted over all pairs, as the portable lane loop of [`crate::lanes`] and
//! `neuralsort::ascending_order` count it: a value ranks above every earlier value at or below
//! it and every later value below it. One compare and one subtraction per pair and row; four
//! wires share each load.

use core::arch::x86_64::{
    __m256, __m256i, _mm256_castps_si256, _mm256_cmp_ps, _mm256_loadu_ps, _mm256_setzero_si256,
    _mm256_storeu_si256, _mm256_sub_epi32, _CMP_LE_OQ, _CMP_LT_OQ,
};

/// Wires per block: four counts in flight.
const BLOCK: usize = 4;

/// `ranks[i][lane]` = the number of wires l with `values[l][lane] ≤ values[i][lane]` (l < i) or
/// `<` (l > i), for every wire i (`ranks.len() == values.len()`).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn ranks(values: &[[f32; 8]], ranks: &mut [[u32; 8]]) {
    let n = values.len();
    assert_eq!(ranks.len(), n);
    let mut first = 0;
    while first + BLOCK <= n {
        rank_block::<BLOCK>(values, first, ranks);
        first += BLOCK;
    }
    while first < n {
        rank_block::<1>(values, first, ranks);
        first += 1;
    }
}

/// [`ranks`] for the `W` wires `first..first + W`.
#[inline(always)]
unsafe fn rank_block<const W: usize>(values: &[[f32; 8]], first: usize, ranks: &mut [[u32; 8]]) {
    let n = values.len();
    let mut own = [_mm256_loadu_ps(values[first].as_ptr()); W];
    for (w, value) in own.iter_mut().enumerate() {
        *value = _mm256_loadu_ps(values[first + w].as_ptr());
    }
    let mut counts = [_mm256_setzero_si256(); W];
    for earlier in &values[..first] {
        let other = _mm256_loadu_ps(earlier.as_ptr());
        for w in 0..W {
            counts[w] = counted(counts[w], _mm256_cmp_ps::<_CMP_LE_OQ>(other, own[w]));
        }
    }
    for (l, block_value) in values.iter().enumerate().skip(first).take(W) {
        let other = _mm256_loadu_ps(block_value.as_ptr());
        for w in 0..W {
            if l < first + w {
                counts[w] = counted(counts[w], _mm256_cmp_ps::<_CMP_LE_OQ>(other, own[w]));
            } else if l > first + w {
                counts[w] = counted(counts[w], _mm256_cmp_ps::<_CMP_LT_OQ>(other, own[w]));
            }
        }
    }
    for later in &values[first + W..n] {
        let other = _mm256_loadu_ps(later.as_ptr());
        for w in 0..W {
            counts[w] = counted(counts[w], _mm256_cmp_ps::<_CMP_LT_OQ>(other, own[w]));
        }
    }
    for w in 0..W {
        _mm256_storeu_si256(ranks[first + w].as_mut_ptr().cast(), counts[w]);
    }
}

/// `count + 1` in the lanes where `below` is set (all bits: −1).
#[inline(always)]
unsafe fn counted(count: __m256i, below: __m256) -> __m256i {
    _mm256_sub_epi32(count, _mm256_castps_si256(below))
}

#[cfg(test)]
mod tests {
    use crate::neuralsort::ascending_order;
    use alloc::vec::Vec;

    /// Eight rows of `n` values from a few levels (ties, −0 beside +0) or spread out, as lanes.
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

    /// Each lane's ranks place its wires in `neuralsort::ascending_order`: lengths around the
    /// block of four, ties, −0 beside +0.
    #[test]
    fn ranks_give_the_one_row_order() {
        if !crate::cpu::has_avx2() {
            return;
        }
        for n in (1..=12).chain([31, 100, 256]) {
            for (seed, levels) in [(1, None), (2, Some(3)), (3, Some(9)), (4, Some(1))] {
                let values = rows(n, seed + n as u64, levels);
                let mut ranks = alloc::vec![[u32::MAX; 8]; n];
                // SAFETY: AVX2 checked above.
                unsafe { super::ranks(&values, &mut ranks) };
                for lane in 0..8 {
                    let scores: Vec<f32> = values.iter().map(|wire| wire[lane]).collect();
                    let mut order = alloc::vec![0u32; n];
                    ascending_order(&scores, &mut order);
                    for (position, &wire) in order.iter().enumerate() {
                        assert_eq!(
                            ranks[wire as usize][lane] as usize, position,
                            "n {n}, lane {lane}"
                        );
                    }
                }
            }
        }
    }
}
