//! The odd-even transposition network (spec section 2.1).

use super::{Comparator, NetworkKind, SortingNetwork};
use crate::Error;
use alloc::vec::Vec;

impl SortingNetwork {
    /// The odd-even transposition network on `n ≥ 1` wires: layer `l` compares `(i, i+1)` for
    /// `i = l mod 2, l mod 2 + 2, …` (all ascending). n layers, n(n−1)/2 comparators.
    pub fn odd_even(n: usize) -> Result<Self, Error> {
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::InvalidNetworkSize { inputs: n, k: 0 });
        }
        let layers: Vec<Vec<Comparator>> = (0..n)
            .map(|l| {
                (l % 2..n.saturating_sub(1))
                    .step_by(2)
                    .map(|i| Comparator::ascending(i as u32, i as u32 + 1))
                    .collect()
            })
            .collect();
        Ok(SortingNetwork::from_parts(NetworkKind::OddEven, n, layers))
    }
}
