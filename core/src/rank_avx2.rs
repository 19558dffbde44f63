//! NeuralSort's order for eight `f32` rows side by side, written with AVX2 intrinsics (x86-64,
//! where [`crate::cpu`] finds AVX2): each value's rank in ascending (value, position) order,
//! counted over all pairs, as the portable lane loop of [`crate::lanes`] and
//! `neuralsort::ascending_order` count it: a value ranks above every earlier value at or below
//! it and every later value below it. One compare and one subtraction per pair and row; four
//! wires share each load.

//!
//! For preselected rows (wire 0 the label's logit, wires 1.. the list of the largest in
//! descending order) whose lists are strictly decreasing, [`listed_order`] places every wire
//! from the label's place alone, without counting.

use core::arch::x86_64::{
    __m256, __m256i, _mm256_and_si256, _mm256_andnot_si256, _mm256_blendv_ps, _mm256_castps_si256,
    _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_cmpeq_epi32, _mm256_cmpgt_epi32, _mm256_loadu_ps,
    _mm256_movemask_ps, _mm256_or_si256, _mm256_set1_epi32, _mm256_setzero_ps,
    _mm256_setzero_si256, _mm256_storeu_ps, _mm256_storeu_si256, _mm256_sub_epi32, _CMP_EQ_OQ,
    _CMP_GT_OQ, _CMP_LE_OQ, _CMP_LT_OQ,
};

/// The ascending order of preselected rows, as [`ranks`] and the placement by rank give it,
/// where the list `d_i = values[i]` (i ≥ 1) of every used lane (bit l of `used` for lane l)
/// is strictly decreasing; else `None` and nothing written. With `s_0 = values[0]` (the
/// label's): wire i ≥ 1 ranks `(n − 1 − i) + [s_0 ≤ d_i]`, the label `p = #{i ≥ 1: d_i < s_0}`;
/// position q holds wire `n − 1 − q` below p, the label at p, wire `n − q` above. Writes
/// `ranks[i]`, `wires[q]`, `sorted[q]` and returns whether some used lane has equal values
/// (which, the list being strictly decreasing, only the label and a listed value can be).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn listed_order(
    values: &[[f32; 8]],
    used: i32,
    ranks: &mut [[u32; 8]],
    wires: &mut [[u32; 8]],
    sorted: &mut [[f32; 8]],
) -> Option<bool> {
    let n = values.len();
    assert!(n >= 2 && ranks.len() >= n && wires.len() >= n && sorted.len() >= n);
    let load = |wire: usize| _mm256_loadu_ps(values[wire].as_ptr());
    let mut decreasing = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for wire in 1..n - 1 {
        let strictly = _mm256_cmp_ps::<_CMP_GT_OQ>(load(wire), load(wire + 1));
        decreasing = _mm256_castsi256_ps(_mm256_and_si256(
            _mm256_castps_si256(decreasing),
            _mm256_castps_si256(strictly),
        ));
    }
    if _mm256_movemask_ps(decreasing) & used != used {
        return None;
    }
    let label = load(0);
    let mut label_rank = _mm256_setzero_si256();
    let mut equal = _mm256_setzero_si256();
    for (wire, rank_out) in ranks.iter_mut().enumerate().take(n).skip(1) {
        let listed = load(wire);
        let at_or_above = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(label, listed));
        equal = _mm256_or_si256(
            equal,
            _mm256_castps_si256(_mm256_cmp_ps::<_CMP_EQ_OQ>(label, listed)),
        );
        // (All bits set is −1: subtracting a mask adds 1 where it is set.)
        let rank = _mm256_sub_epi32(_mm256_set1_epi32((n - 1 - wire) as i32), at_or_above);
        _mm256_storeu_si256(rank_out.as_mut_ptr().cast(), rank);
        let below = _mm256_andnot_si256(at_or_above, _mm256_set1_epi32(-1));
        label_rank = _mm256_sub_epi32(label_rank, below);
    }
    _mm256_storeu_si256(ranks[0].as_mut_ptr().cast(), label_rank);
    for position in 0..n {
        let q = _mm256_set1_epi32(position as i32);
        let below = _mm256_castsi256_ps(_mm256_cmpgt_epi32(label_rank, q));
        let at = _mm256_castsi256_ps(_mm256_cmpeq_epi32(label_rank, q));
        // (At position 0 no lane is above its label: the wire read there is not used.)
        let above_wire = n - position.max(1);
        let mut wire = _mm256_blendv_ps(
            _mm256_castsi256_ps(_mm256_set1_epi32(above_wire as i32)),
            _mm256_castsi256_ps(_mm256_set1_epi32((n - 1 - position) as i32)),
            below,
        );
        wire = _mm256_blendv_ps(wire, _mm256_setzero_ps(), at);
        _mm256_storeu_si256(
            wires[position].as_mut_ptr().cast(),
            _mm256_castps_si256(wire),
        );
        let mut value = _mm256_blendv_ps(load(above_wire), load(n - 1 - position), below);
        value = _mm256_blendv_ps(value, label, at);
        _mm256_storeu_ps(sorted[position].as_mut_ptr(), value);
    }
    Some(_mm256_movemask_ps(_mm256_castsi256_ps(equal)) & used != 0)
}

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

    /// `listed_order` places preselected rows (wire 0 the label, wires 1.. strictly
    /// decreasing) as `neuralsort::ascending_order` does: the label below, above and between
    /// the listed values, equal to one of them (also −0 against +0), in every lane; it reports
    /// a tie exactly where a used lane has equal values; it declines where a used lane's list
    /// is not strictly decreasing, and ignores the lanes past `used`.
    #[test]
    fn listed_order_gives_the_one_row_order() {
        if !crate::cpu::has_avx2() {
            return;
        }
        for n in [2usize, 3, 5, 16, 17, 40] {
            for case in 0..6 {
                // Listed values n − 1 − i (i ≥ 1): 0 for the last; the label per lane and case.
                let mut values = alloc::vec![[0.0f32; 8]; n];
                for (wire, listed) in values.iter_mut().enumerate().skip(1) {
                    *listed = [(n - 1 - wire) as f32; 8];
                }
                for (lane, label) in values[0].iter_mut().enumerate() {
                    let spot = ((lane * 7 + case * 3) % (2 * n + 1)) as f32 / 2.0 - 0.5;
                    *label = match case {
                        4 => -0.0, // ties the last listed value, +0
                        5 => 1e6,
                        _ => spot,
                    };
                }
                for rows in [8usize, 3] {
                    let used = (1i32 << rows) - 1;
                    let (mut ranks, mut wires, mut sorted) = (
                        alloc::vec![[u32::MAX; 8]; n],
                        alloc::vec![[u32::MAX; 8]; n],
                        alloc::vec![[f32::NAN; 8]; n],
                    );
                    // SAFETY: AVX2 checked above.
                    let tie = unsafe {
                        super::listed_order(&values, used, &mut ranks, &mut wires, &mut sorted)
                    }
                    .expect("strictly decreasing lists");
                    let mut any_tie = false;
                    for lane in 0..rows {
                        let scores: Vec<f32> = values.iter().map(|wire| wire[lane]).collect();
                        let mut order = alloc::vec![0u32; n];
                        ascending_order(&scores, &mut order);
                        for (position, &wire) in order.iter().enumerate() {
                            let what = alloc::format!("n {n}, case {case}, lane {lane}");
                            assert_eq!(ranks[wire as usize][lane] as usize, position, "{what}");
                            assert_eq!(wires[position][lane], wire, "{what}");
                            assert_eq!(
                                sorted[position][lane].to_bits(),
                                scores[wire as usize].to_bits(),
                                "{what}"
                            );
                        }
                        any_tie |= scores[1..].contains(&scores[0]);
                    }
                    assert_eq!(tie, any_tie, "n {n}, case {case}, rows {rows}");
                }
                // A used lane whose list is not strictly decreasing: declined; the same in a
                // lane past `used`: ignored.
                if n >= 3 {
                    let mut flat = values.clone();
                    flat[2][5] = flat[1][5];
                    let (mut ranks, mut wires, mut sorted) = (
                        alloc::vec![[0; 8]; n],
                        alloc::vec![[0; 8]; n],
                        alloc::vec![[0.0; 8]; n],
                    );
                    // SAFETY: AVX2 checked above.
                    unsafe {
                        assert!(super::listed_order(
                            &flat,
                            0xff,
                            &mut ranks,
                            &mut wires,
                            &mut sorted
                        )
                        .is_none());
                        assert!(super::listed_order(
                            &flat,
                            0x1f,
                            &mut ranks,
                            &mut wires,
                            &mut sorted
                        )
                        .is_some());
                    }
                }
            }
        }
    }
}
