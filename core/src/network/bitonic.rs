//! The bitonic sorting network for any n (spec section 2.2).

use super::{Comparator, NetworkKind, SortingNetwork};
use crate::Error;
use alloc::vec::Vec;

impl SortingNetwork {
    /// Batcher's bitonic network for any `n ≥ 1`, as diffsort builds it: pad to N = 2^⌈log₂ n⌉
    /// with `N − n` virtual wires placed *below* the real ones (padded index = real index + pad);
    /// comparators between two real wires are kept, those touching a virtual wire dropped (the
    /// real wire is copied). K(K+1)/2 layers for K = ⌈log₂ n⌉. Comparators of descending blocks
    /// send the minimum to `wire_b`.
    pub fn bitonic(n: usize) -> Result<Self, Error> {
        if n == 0 || n > (u32::MAX as usize) / 2 {
            return Err(Error::InvalidNetworkSize { inputs: n, k: 0 });
        }
        let blocks = ceil_log2(n).max(1);
        let padded = 1usize << blocks;
        let pad = padded - n;
        let mut layers: Vec<Vec<Comparator>> = Vec::new();
        for block in 0..blocks {
            for layer in 0..=block {
                let distance = 1usize << (block - layer);
                let mut comparators = Vec::new();
                for start in (0..padded).step_by(2 * distance) {
                    for offset in 0..distance {
                        let a = start + offset;
                        let b = a + distance;
                        if a < pad || b < pad {
                            continue; // a virtual wire: the comparator is ignored
                        }
                        let descending = (a >> (block + 1)) % 2 == 1;
                        let (wa, wb) = ((a - pad) as u32, (b - pad) as u32);
                        comparators.push(if descending {
                            Comparator {
                                wire_a: wa,
                                wire_b: wb,
                                out_min: wb,
                                out_max: wa,
                            }
                        } else {
                            Comparator::ascending(wa, wb)
                        });
                    }
                }
                layers.push(comparators);
            }
        }
        Ok(SortingNetwork::from_parts(NetworkKind::Bitonic, n, layers))
    }
}

/// ⌈log₂ n⌉ for n ≥ 1.
pub(crate) fn ceil_log2(n: usize) -> usize {
    (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize
}
