//! Reusable working memory for the batch API, so that a training loop allocates nothing per
//! step: [`Workspace`], made by [`crate::TopkLoss::workspace`] and used by
//! [`crate::TopkLoss::forward_backward_with`].

use crate::lanes::LaneBuffers;
use crate::Real;
use alloc::vec::Vec;

/// Working memory of [`crate::TopkLoss::forward_backward_with`] (feature `alloc`).
///
/// It holds the buffers of the rows in flight (eight rows side by side, or the one-row kernel's
/// scratch) and the per-row losses. It grows to the largest batch it has seen and is reused as
/// it is afterwards: from the second step of a training loop on, the loss allocates nothing. A
/// workspace made for one loss also works with another (it is rebuilt when the shapes differ,
/// which allocates once). It carries no state between calls: results never depend on what it
/// computed before.
#[derive(Debug)]
pub struct Workspace<F> {
    pub(crate) rows: RowBuffers<F>,
    pub(crate) losses: Vec<F>,
}

impl<F: Real> Workspace<F> {
    /// An empty workspace; the first call sizes it.
    pub fn new() -> Self {
        Workspace {
            rows: RowBuffers::default(),
            losses: Vec::new(),
        }
    }
}

impl<F: Real> Default for Workspace<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the rows of one loss need: the lanes' buffers or the one-row kernel's scratch.
#[derive(Debug)]
pub(crate) struct RowBuffers<F> {
    /// The shape the buffers were made for (see [`RowShape`]); `None` before the first use.
    shape: Option<RowShape>,
    pub(crate) lanes: Option<LaneBuffers<F>>,
    pub(crate) reals: Vec<F>,
    pub(crate) indices: Vec<u32>,
}

impl<F> Default for RowBuffers<F> {
    fn default() -> Self {
        RowBuffers {
            shape: None,
            lanes: None,
            reals: Vec::new(),
            indices: Vec::new(),
        }
    }
}

/// The sizes the row buffers depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowShape {
    /// Eight rows in lanes: sorted inputs n′, comparators, relaxed rows K (0 for networks).
    Lanes {
        inputs: usize,
        comparators: usize,
        relaxed_rows: usize,
    },
    /// One row at a time: the scratch of [`crate::loss::scratch_size`].
    OneRow { reals: usize, indices: usize },
}

impl<F: Real> RowBuffers<F> {
    /// Makes the buffers fit `shape` (allocating only when it differs from the last one).
    pub(crate) fn prepare(&mut self, shape: RowShape) {
        if self.shape == Some(shape) {
            return;
        }
        match shape {
            RowShape::Lanes {
                inputs,
                comparators,
                relaxed_rows,
            } => self.lanes = Some(LaneBuffers::new(inputs, comparators, relaxed_rows)),
            RowShape::OneRow { reals, indices } => {
                self.lanes = None;
                self.reals.clear();
                self.reals.resize(reals, F::zero());
                self.indices.clear();
                self.indices.resize(indices, 0);
            }
        }
        self.shape = Some(shape);
    }
}
