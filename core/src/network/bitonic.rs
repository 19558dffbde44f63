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

impl SortingNetwork {
    /// A bitonic sorting network that sorts for *every* n (H. W. Lang's bitonic sort for
    /// arbitrary n: each merge compares `(i, i + m)` with m the largest power of two below the
    /// merge length). Unlike [`SortingNetwork::bitonic`] — the reference's construction, kept for
    /// parity — it sorts exactly under a hard comparator for all n; the reference's padded network
    /// does not for many n that are not powers of two (for example 22, 38, 42–46, 54, 70, …),
    /// because comparators touching a virtual wire are dropped even in descending blocks.
    /// ⌈log₂ n⌉(⌈log₂ n⌉+1)/2 layers (comparators scheduled as early as their wires allow).
    pub fn bitonic_any_size(n: usize) -> Result<Self, Error> {
        if n == 0 || n > (u32::MAX as usize) / 2 {
            return Err(Error::InvalidNetworkSize { inputs: n, k: 0 });
        }
        let mut sequence = Vec::new();
        lang_sort(0, n, true, &mut sequence);
        Ok(SortingNetwork::from_parts(
            NetworkKind::BitonicAnySize,
            n,
            schedule_layers(n, &sequence),
        ))
    }
}

fn lang_sort(low: usize, count: usize, ascending: bool, out: &mut Vec<Comparator>) {
    if count > 1 {
        let half = count / 2;
        lang_sort(low, half, !ascending, out);
        lang_sort(low + half, count - half, ascending, out);
        lang_merge(low, count, ascending, out);
    }
}

fn lang_merge(low: usize, count: usize, ascending: bool, out: &mut Vec<Comparator>) {
    if count > 1 {
        let distance = 1usize << (ceil_log2(count) - 1); // largest power of two < count
        for i in low..low + count - distance {
            let (a, b) = (i as u32, (i + distance) as u32);
            out.push(if ascending {
                Comparator::ascending(a, b)
            } else {
                Comparator {
                    wire_a: a,
                    wire_b: b,
                    out_min: b,
                    out_max: a,
                }
            });
        }
        lang_merge(low, distance, ascending, out);
        lang_merge(low + distance, count - distance, ascending, out);
    }
}

/// Groups a comparator sequence into layers: each comparator goes to the layer after the last
/// one that touched either of its wires (order-preserving on every wire, so the network computes
/// the same function).
pub(crate) fn schedule_layers(n: usize, sequence: &[Comparator]) -> Vec<Vec<Comparator>> {
    let mut next_free = alloc::vec![0usize; n];
    let mut layers: Vec<Vec<Comparator>> = Vec::new();
    for &c in sequence {
        let layer = next_free[c.wire_a as usize].max(next_free[c.wire_b as usize]);
        if layers.len() <= layer {
            layers.resize(layer + 1, Vec::new());
        }
        layers[layer].push(c);
        next_free[c.wire_a as usize] = layer + 1;
        next_free[c.wire_b as usize] = layer + 1;
    }
    layers
}
