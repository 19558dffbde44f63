//! Class labels as a slice, a vector, an array or a dfdx `usize` tensor.

use std::borrow::Cow;

use dfdx::shapes::Dim;
use dfdx::tensor::{Cpu, Tensor};

/// Something that holds one class index per batch row.
pub trait Labels {
    /// The labels in row order (borrowed when they already are a slice).
    fn as_labels(&self) -> Cow<'_, [usize]>;
}

impl Labels for [usize] {
    fn as_labels(&self) -> Cow<'_, [usize]> {
        Cow::Borrowed(self)
    }
}

impl Labels for Vec<usize> {
    fn as_labels(&self) -> Cow<'_, [usize]> {
        Cow::Borrowed(self)
    }
}

impl<const N: usize> Labels for [usize; N] {
    fn as_labels(&self) -> Cow<'_, [usize]> {
        Cow::Borrowed(self)
    }
}

impl<B: Dim, T> Labels for Tensor<(B,), usize, Cpu, T> {
    fn as_labels(&self) -> Cow<'_, [usize]> {
        Cow::Owned(self.as_vec())
    }
}
