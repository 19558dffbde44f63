//! The partial selection (preselection of m) against a sort, with many ties, any skip, and sizes
//! on both sides of the threshold where the lower-bound pass starts.

use difftopk_core::select::{largest_indices, largest_indices_ties_high};
use proptest::prelude::*;

/// The reference: sort the candidates by value descending, ties by index (ascending, or
/// descending with `ties_high`), take the first `count`.
fn reference(values: &[f32], skip: Option<usize>, count: usize, ties_high: bool) -> Vec<u32> {
    let mut candidates: Vec<usize> = (0..values.len()).filter(|&i| Some(i) != skip).collect();
    candidates.sort_by(|&a, &b| {
        values[b]
            .partial_cmp(&values[a])
            .unwrap()
            .then(if ties_high { b.cmp(&a) } else { a.cmp(&b) })
    });
    candidates[..count].iter().map(|&i| i as u32).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn selection_equals_a_sort(
        length in 2usize..2500,
        levels in 1u32..2000,
        count_seed in any::<usize>(),
        skip_seed in any::<usize>(),
        skip_some in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut state = seed | 1;
        let values: Vec<f32> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % levels as u64) as f32 * 0.25 - 10.0
            })
            .collect();
        let skip = skip_some.then_some(skip_seed % length);
        let available = length - usize::from(skip.is_some());
        let count = 1 + count_seed % available.min(70);
        for ties_high in [false, true] {
            let mut out = vec![0u32; count];
            if ties_high {
                largest_indices_ties_high(&values, skip, &mut out).unwrap();
            } else {
                largest_indices(&values, skip, &mut out).unwrap();
            }
            prop_assert_eq!(&out, &reference(&values, skip, count, ties_high));
        }
    }
}

/// Values from the whole f32 range (random bit patterns, both zeros, infinities, subnormals),
/// so that the threshold search has to fall back from halving values to halving order keys.
fn wide_value(bits: u32, choice: u8) -> f32 {
    match choice % 8 {
        0 => 0.0,
        1 => -0.0,
        2 => f32::INFINITY,
        3 => f32::NEG_INFINITY,
        4 => f32::from_bits(bits & 0x807f_ffff), // subnormal, either sign
        _ => {
            let value = f32::from_bits(bits);
            if value.is_nan() {
                1.5
            } else {
                value
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn selection_equals_a_sort_over_the_whole_float_range(
        raw in proptest::collection::vec((any::<u32>(), any::<u8>()), 2..600),
        count_seed in any::<usize>(),
        skip_seed in any::<usize>(),
        skip_some in any::<bool>(),
    ) {
        let values: Vec<f32> = raw.iter().map(|&(bits, choice)| wide_value(bits, choice)).collect();
        let length = values.len();
        let skip = skip_some.then_some(skip_seed % length);
        let available = length - usize::from(skip.is_some());
        let count = 1 + count_seed % available.min(70);
        for ties_high in [false, true] {
            let mut out = vec![0u32; count];
            if ties_high {
                largest_indices_ties_high(&values, skip, &mut out).unwrap();
            } else {
                largest_indices(&values, skip, &mut out).unwrap();
            }
            prop_assert_eq!(&out, &reference(&values, skip, count, ties_high));
        }
    }

    /// NaN entries have no order, so where they land is unspecified; the selection still
    /// returns distinct in-range indices and never the skipped one.
    #[test]
    fn nan_entries_give_valid_indices(
        length in 2usize..400,
        nan_every in 1usize..7,
        nan_offset in 0usize..7,
        count_seed in any::<usize>(),
        skip_seed in any::<usize>(),
    ) {
        let values: Vec<f32> = (0..length)
            .map(|i| if i % nan_every == nan_offset % nan_every { f32::NAN } else { (i * 37 % 101) as f32 })
            .collect();
        let skip = Some(skip_seed % length);
        let count = 1 + count_seed % (length - 1).min(70);
        let mut out = vec![0u32; count];
        largest_indices(&values, skip, &mut out).unwrap();
        let mut seen = std::collections::HashSet::new();
        for &index in &out {
            prop_assert!((index as usize) < length);
            prop_assert!(Some(index as usize) != skip);
            prop_assert!(seen.insert(index), "index {} twice", index);
        }
    }
}
