//! Sorting networks as plain data: layers of comparators, built once and shared by every sweep.
//!
//! A comparator `(wire_a, wire_b, out_min, out_max)` reads `a = x[wire_a]`, `b = x[wire_b]` and
//! writes the (relaxed) minimum to `out_min` and the maximum to `out_max`; `{out_min, out_max} =
//! {wire_a, wire_b}`. Comparators of one layer touch disjoint wires, so applying them one after the
//! other in storage order equals applying the layer at once; wires a layer does not touch are
//! copied. Positions are ascending: after a full sorting network wire `n − 1` holds the maximum.

#[cfg(feature = "alloc")]
mod bitonic;
#[cfg(feature = "alloc")]
mod odd_even;
#[cfg(feature = "alloc")]
mod splitter_selection;

use crate::Error;

/// One compare-and-swap element (spec section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Comparator {
    /// The "a" input wire (the reference always has `wire_a < wire_b`).
    pub wire_a: u32,
    /// The "b" input wire; α = f(`x[wire_b] − x[wire_a]`).
    pub wire_b: u32,
    /// The wire that receives the soft minimum α·a + (1−α)·b.
    pub out_min: u32,
    /// The wire that receives the soft maximum (1−α)·a + α·b.
    pub out_max: u32,
}

impl Comparator {
    /// An ascending comparator: minimum to `wire_a`, maximum to `wire_b`.
    pub const fn ascending(wire_a: u32, wire_b: u32) -> Self {
        Comparator {
            wire_a,
            wire_b,
            out_min: wire_a,
            out_max: wire_b,
        }
    }

    /// As `[wire_a, wire_b, out_min, out_max]` (the golden file's layout).
    pub const fn to_array(self) -> [u32; 4] {
        [self.wire_a, self.wire_b, self.out_min, self.out_max]
    }
}

/// Which construction a network comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkKind {
    /// Odd-even transposition network: n layers, n(n−1)/2 comparators (spec section 2.1).
    OddEven,
    /// Bitonic sorting network, any n by padding with virtual wires below the real ones (2.2).
    Bitonic,
    /// Bitonic network that sorts for every n (Lang's construction, not in the reference).
    BitonicAnySize,
    /// Borgelt's splitter selection network: the k largest, sorted, on wires n−k..n−1 (2.3).
    SplitterSelection,
    /// Assembled by the caller.
    Custom,
}

/// A borrowed network: what the sweeps run on, usable without an allocator (for example over
/// `static` tables generated at build time).
#[derive(Clone, Copy, Debug)]
pub struct NetworkRef<'a> {
    inputs: usize,
    comparators: &'a [Comparator],
    layer_ends: &'a [u32],
}

impl<'a> NetworkRef<'a> {
    /// Checks and wraps a network: `layer_ends[l]` is one past the last comparator of layer `l`
    /// (non-decreasing, the last equal to `comparators.len()`); every comparator has two distinct
    /// wires below `inputs` and outputs equal to its inputs. Within-layer disjointness is the
    /// caller's promise: the sweeps apply comparators in storage order.
    pub fn new(
        inputs: usize,
        comparators: &'a [Comparator],
        layer_ends: &'a [u32],
    ) -> Result<Self, Error> {
        if inputs == 0 {
            return Err(Error::InvalidNetworkSize { inputs, k: 0 });
        }
        if comparators.len() > u32::MAX as usize {
            return Err(Error::InvalidNetwork {
                comparator: u32::MAX as usize,
            });
        }
        for (index, c) in comparators.iter().enumerate() {
            let n = inputs as u64;
            let ok = (c.wire_a as u64) < n
                && (c.wire_b as u64) < n
                && c.wire_a != c.wire_b
                && ((c.out_min == c.wire_a && c.out_max == c.wire_b)
                    || (c.out_min == c.wire_b && c.out_max == c.wire_a));
            if !ok {
                return Err(Error::InvalidNetwork { comparator: index });
            }
        }
        let mut previous = 0u32;
        for (layer, &end) in layer_ends.iter().enumerate() {
            if end < previous || end as usize > comparators.len() {
                return Err(Error::InvalidNetwork { comparator: layer });
            }
            previous = end;
        }
        if layer_ends.last().map_or(0, |&e| e as usize) != comparators.len() {
            return Err(Error::InvalidNetwork {
                comparator: comparators.len(),
            });
        }
        Ok(NetworkRef {
            inputs,
            comparators,
            layer_ends,
        })
    }

    /// Number of wires n.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// All comparators, layer after layer.
    pub fn comparators(&self) -> &'a [Comparator] {
        self.comparators
    }

    /// Number of layers (the depth D).
    pub fn num_layers(&self) -> usize {
        self.layer_ends.len()
    }

    /// The comparators of layer `index` (panics if `index >= num_layers()`).
    pub fn layer(&self, index: usize) -> &'a [Comparator] {
        let start = if index == 0 {
            0
        } else {
            self.layer_ends[index - 1] as usize
        };
        &self.comparators[start..self.layer_ends[index] as usize]
    }

    /// Iterates over the layers.
    pub fn layers(&self) -> impl Iterator<Item = &'a [Comparator]> + 'a {
        let this = *self;
        (0..this.num_layers()).map(move |l| this.layer(l))
    }
}

/// An owned network with its construction (feature `alloc`).
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortingNetwork {
    kind: NetworkKind,
    inputs: usize,
    comparators: alloc::vec::Vec<Comparator>,
    layer_ends: alloc::vec::Vec<u32>,
}

#[cfg(feature = "alloc")]
impl SortingNetwork {
    /// Assembles a network from layers (checked as in [`NetworkRef::new`]).
    pub fn from_layers<L: AsRef<[Comparator]>>(inputs: usize, layers: &[L]) -> Result<Self, Error> {
        let mut comparators = alloc::vec::Vec::new();
        let mut layer_ends = alloc::vec::Vec::with_capacity(layers.len());
        for layer in layers {
            comparators.extend_from_slice(layer.as_ref());
            layer_ends.push(comparators.len() as u32);
        }
        let network = SortingNetwork {
            kind: NetworkKind::Custom,
            inputs,
            comparators,
            layer_ends,
        };
        network.view_checked()?;
        Ok(network)
    }

    pub(crate) fn from_parts(
        kind: NetworkKind,
        inputs: usize,
        layers: alloc::vec::Vec<alloc::vec::Vec<Comparator>>,
    ) -> Self {
        let mut comparators = alloc::vec::Vec::new();
        let mut layer_ends = alloc::vec::Vec::with_capacity(layers.len());
        for layer in &layers {
            comparators.extend_from_slice(layer);
            layer_ends.push(comparators.len() as u32);
        }
        SortingNetwork {
            kind,
            inputs,
            comparators,
            layer_ends,
        }
    }

    fn view_checked(&self) -> Result<NetworkRef<'_>, Error> {
        NetworkRef::new(self.inputs, &self.comparators, &self.layer_ends)
    }

    /// The borrowed view the sweeps take.
    pub fn as_ref(&self) -> NetworkRef<'_> {
        NetworkRef {
            inputs: self.inputs,
            comparators: &self.comparators,
            layer_ends: &self.layer_ends,
        }
    }

    /// The construction this network comes from.
    pub fn kind(&self) -> NetworkKind {
        self.kind
    }

    /// Number of wires n.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Number of layers (depth).
    pub fn num_layers(&self) -> usize {
        self.layer_ends.len()
    }

    /// Number of comparators.
    pub fn num_comparators(&self) -> usize {
        self.comparators.len()
    }

    /// The comparators of layer `index`.
    pub fn layer(&self, index: usize) -> &[Comparator] {
        self.as_ref().layer(index)
    }
}
