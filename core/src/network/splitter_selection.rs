//! Borgelt's splitter selection network for the top k of n (spec section 2.3).

use super::bitonic::ceil_log2;
use super::{Comparator, NetworkKind, SortingNetwork};
use crate::Error;
use alloc::vec;
use alloc::vec::Vec;

/// The splitter cascade over an ordered lane list: ⌈log₂ L⌉ layers; layer i compares
/// `(lanes[j], lanes[j + s])`, s = 2^(D−i−1), for j in each block of 2s lanes.
fn split(lanes: &[usize]) -> Vec<Vec<(usize, usize)>> {
    let count = lanes.len();
    if count < 2 {
        return Vec::new();
    }
    let depth = ceil_log2(count);
    (0..depth)
        .map(|i| {
            let s = 1usize << (depth - i - 1);
            let mut layer = Vec::new();
            for block in (0..count).step_by(2 * s) {
                for j in block..(block + s).min(count.saturating_sub(s)) {
                    layer.push((lanes[j], lanes[j + s]));
                }
            }
            layer
        })
        .collect()
}

impl SortingNetwork {
    /// Christian Borgelt's splitter selection ("Top-k-Net") network for `1 ≤ k ≤ n`, exactly as
    /// difftopk's `sparse_splitter_selection_network` builds it. With a hard comparator it leaves
    /// the k largest inputs, in ascending order, on wires `n−k .. n−1`; the other wires hold the
    /// rest in no particular order. All comparators are ascending.
    pub fn splitter_selection(n: usize, k: usize) -> Result<Self, Error> {
        if n == 0 || k == 0 || k > n || n > u32::MAX as usize {
            return Err(Error::InvalidNetworkSize { inputs: n, k });
        }
        // Minimum-rank increment of the j-th lane of a cascade: 2^popcount(j) − 1.
        let rank_increment: Vec<usize> = (0..n).map(|j| (1usize << j.count_ones()) - 1).collect();
        let mut min_rank = vec![0usize; n];
        let mut next_layer = vec![0usize; n];
        let mut pairs: Vec<Vec<(usize, usize)>> = Vec::new();
        // `rank_end` is the reference's `rkend`, starting at −1: ranks above it are revisited.
        let mut rank_end: isize = -1;
        loop {
            let mut added = false;
            let mut rank = k as isize - 1;
            while rank > rank_end {
                let selected: Vec<usize> =
                    (0..n).filter(|&l| min_rank[l] == rank as usize).collect();
                if selected.len() >= 2 {
                    let cascade = split(&selected);
                    let offset = selected.iter().map(|&l| next_layer[l]).max().unwrap_or(0);
                    if pairs.len() < offset + cascade.len() {
                        pairs.resize(offset + cascade.len(), Vec::new());
                    }
                    for (i, layer) in cascade.iter().enumerate() {
                        pairs[offset + i].extend_from_slice(layer);
                    }
                    for (j, &l) in selected.iter().enumerate() {
                        min_rank[l] += rank_increment[j];
                        next_layer[l] = offset + cascade.len();
                    }
                    added = true;
                }
                rank -= 1;
            }
            rank_end += 1;
            if !added {
                break;
            }
        }
        // The cascade puts the larger value on the lower lane; mirror so the top k end ascending
        // on the last wires: (p, q) → (n−1−q, n−1−p).
        let layers = pairs
            .into_iter()
            .map(|layer| {
                layer
                    .into_iter()
                    .map(|(p, q)| Comparator::ascending((n - 1 - q) as u32, (n - 1 - p) as u32))
                    .collect()
            })
            .collect();
        Ok(SortingNetwork::from_parts(
            NetworkKind::SplitterSelection,
            n,
            layers,
        ))
    }
}
