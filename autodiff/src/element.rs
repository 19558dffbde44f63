//! The element types the ops accept: dfdx dtypes the core computes in (f32, f64).

use dfdx::shapes::Dtype;
use dfdx::tensor::{Cpu, Storage};

/// A float that is both a dfdx [`Dtype`] and a core [`difftopk_core::Real`]: `f32` and `f64`.
/// Functions of this crate also require `Cpu: Device<E>`, which both satisfy.
pub trait Element: Dtype + difftopk_core::Real + Send + Sync {
    /// The CPU gradient buffer as a slice (dfdx's buffer type is opaque to generic code).
    fn buffer_mut(buffer: &mut <Cpu as Storage<Self>>::Vec) -> &mut [Self]
    where
        Cpu: Storage<Self>;
}

impl Element for f32 {
    fn buffer_mut(buffer: &mut <Cpu as Storage<Self>>::Vec) -> &mut [Self] {
        buffer
    }
}

impl Element for f64 {
    fn buffer_mut(buffer: &mut <Cpu as Storage<Self>>::Vec) -> &mut [Self] {
        buffer
    }
}
