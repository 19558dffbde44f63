//! Partial selection: the largest few values of a row, in O(n) for a small count.

use crate::Real;

/// Writes into `out` the indices of the `out.len()` largest entries of `values` whose index is
/// not `skip`, in descending order of value, ties broken by the lower index first (so the result
/// is deterministic). O(n · log(count)) comparisons plus O(count) per insertion; on typical data
/// almost every value is rejected by one comparison with the current minimum of the selection.
///
/// Requires `out.len() ≤ values.len() − (skip is in range) as usize`.
pub fn largest_indices<F: Real>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    select::<F, false>(values, skip, out)
}

/// As [`largest_indices`], but ties go to the *higher* index first: the order a stable ascending
/// sort gives when read from its end (torch's `sort(-s, descending=True)`, which SoftSort uses).
pub fn largest_indices_ties_high<F: Real>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    select::<F, true>(values, skip, out)
}

fn select<F: Real, const TIES_HIGH: bool>(values: &[F], skip: Option<usize>, out: &mut [u32]) {
    let count = out.len();
    if count == 0 {
        return;
    }
    let mut filled = 0usize;
    // The value of the last (smallest) selected entry; read only once the selection is full.
    let mut minimum = values[0];
    for (i, &value) in values.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        if filled == count {
            // The selection is full: `value` enters only if larger than its minimum (an equal
            // value has a larger index: it ranks lower, or higher with TIES_HIGH).
            if !(value > minimum || (TIES_HIGH && value == minimum)) {
                continue;
            }
            filled -= 1;
        }
        // Insertion position: after every entry that ranks above `value`.
        let mut position = filled;
        while position > 0
            && (values[out[position - 1] as usize] < value
                || (TIES_HIGH && values[out[position - 1] as usize] == value))
        {
            out[position] = out[position - 1];
            position -= 1;
        }
        out[position] = i as u32;
        filled += 1;
        minimum = values[out[filled - 1] as usize];
    }
}
