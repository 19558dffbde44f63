//! # difftopk-gpu
//!
//! The top-k cross-entropy loss as a fused CUDA kernel, through cudarc: nothing CUDA is needed
//! at build time; the driver and NVRTC are loaded at run time, and every entry point returns
//! [`Error::NoCudaDevice`] / [`Error::NoNvrtc`] rather than panicking where they are missing.
//!
//! - [`kernels`]: the `.cu` sources (embedded with `include_str!`) and their NVRTC compilation,
//!   once per process, for the device's architecture.
//! - [`CudaTopkLoss`]: the loss on device 0 for the sorting-network methods, every relaxation,
//!   top-1 mode, P_K and m, f32 and f64, on device buffers (`CudaSlice`) or host slices.
//! - [`CudaSoftmaxCrossEntropy`]: the plain softmax cross-entropy baseline, the same two APIs.
//! - [`CudaRelaxedTopk`]: the relaxed top-k matrix operator `P_topk` and its VJP.
//! - [`CudaHead`]: a linear head's whole training step on the device (cuBLAS products, the loss
//!   kernel, the bias gradient, AdamW), for `difftopk train --device cuda`.
//! - Both check labels and logits on the device and report the core's error for the first bad
//!   row (never a NaN loss); scratch memory is kept between batches.
//!
//! State: the kernels compile (checked in CI with the NVRTC library from PyPI) but have not yet
//! run on a GPU; their parity tests against the core skip without a device.

#![warn(missing_docs)]

mod device;
mod error;
mod head;
pub mod kernels;
mod loss;
mod operators;

pub use device::{cuda_device_available, GpuFloat};
pub use error::Error;
pub use head::{AdamStep, CudaHead, CudaStepLoss, Moments};
pub use loss::{
    CudaSoftmaxCrossEntropy, CudaTopkLoss, KernelArguments, RowKernel, FUSED_WARP_MAX_BATCH,
};
pub use operators::{CudaRelaxedTopk, OperatorArguments};
