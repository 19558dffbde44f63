//! # difftopk-core
//!
//! Differentiable top-k classification learning (Petersen, Kuehne, Borgelt, Deussen, ICML 2022)
//! without a framework: sorting networks as data, relaxed comparators, NeuralSort and SoftSort,
//! and the top-k cross-entropy loss, each with a hand-written backward pass, for `f32` and `f64`,
//! `#![no_std]`.
//!
//! Data flow: **network** (integers, built once: [`SortingNetwork`]) → **forward sweep** (values,
//! α per comparator) → **reverse sweep** (vector-Jacobian product).
//!
//! Conventions (those of the reference implementation, spec section 0): output positions are
//! *ascending*, position n−1 holds the maximum; `P[i, j]` is the weight of input i at output
//! position j, `sorted = x · P`; the top-k matrix is `P_topk = P[:, n−k..]`, its column k−1 is
//! rank 1.
//!
//! * [`network`]: odd-even, bitonic and splitter-selection networks ([`SortingNetwork`],
//!   [`NetworkRef`]).
//! * [`relaxation`]: the six sigmoids ([`Relaxation`]).
//! * [`operators`]: the relaxed sort (values and P) and the relaxed top-k matrix, forward and VJP.
//! * [`neuralsort`], [`softsort`]: the two other relaxations of the paper (top rows only).
//!   Every operator's VJP (these four) *adds* `Jᵀ ḡ` to the gradient it is given, as a tape
//!   does; the losses write their gradients.
//! * [`loss`]: the top-k cross-entropy loss of one sample and of a batch
//!   ([`loss::batch_loss`]), allocation-free over caller-provided scratch; [`TopkLoss`] and
//!   [`softmax_cross_entropy`] for batches (feature `alloc`), in parallel with feature `rayon`;
//!   `TopkLoss::forward_backward` keeps its working memory between calls, and a reused
//!   [`Workspace`] puts it in the caller's hands: a training loop's calls allocate nothing
//!   after the first.
//! * [`smooth_topk`]: the smooth top-k SVM losses of Berrada et al. (the paper's baseline).
//!
//! Private to the crate, the batch loss's fast path: `lanes` runs eight rows side by side, and
//! the `*_avx2` modules are its AVX2 kernels for `f32` (the selection, NeuralSort's order and
//! sums of absolute deviations, the rows' exponentials, the VJP steps, the transposes), each the
//! portable code's operations in the same order, so that every path gives the same bits;
//! `exp_avx512` runs the rows' exponentials two wires to a register on AMD processors with
//! AVX-512 (`cpu` decides), again the same bits.
//!
//! ```
//! use difftopk_core::{Method, Relaxation, TopkLoss, TopkLossConfig};
//! # fn main() -> Result<(), difftopk_core::Error> {
//! let config = TopkLossConfig::new(Method::SplitterSelection, 10, &[0.5, 0.0, 0.0, 0.0, 0.5])?
//!     .with_relaxation(Relaxation::LogisticPhi { lambda: 0.5 })?
//!     .with_preselection(Some(8))?;
//! let loss = TopkLoss::new(config)?;
//! let logits: Vec<f32> = (0..20).map(|i| (i as f32 * 0.37).sin()).collect(); // (B = 2, n = 10)
//! let mut gradient = vec![0.0f32; 20];
//! let value = loss.forward_backward(&logits, &[3, 7], Some(&mut gradient))?;
//! assert!(value.is_finite() && value > 0.0);
//! // The gradient of every row sums to zero (the loss is shift invariant).
//! assert!(gradient[..10].iter().sum::<f32>().abs() < 1e-6);
//! # Ok(())
//! # }
//! ```
//!
//! Feature `alloc` (default) adds the network builders and the batch API; without it the crate
//! runs on bare metal over caller-provided networks and scratch. On x86-64 every build takes the
//! same fast paths: AVX2 is detected with `cpuid` (or known at compile time), and square roots
//! use the SSE instruction; `std` only matters for square roots on other architectures, `rayon`
//! adds the threads.
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
mod adjoint_avx2;
mod atan;
mod config;
#[cfg(target_arch = "x86_64")]
mod cpu;
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
mod deviation_avx2;
mod erf;
mod error;
mod exp;
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
mod exp_avx2;
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
mod exp_avx512;
#[cfg(feature = "alloc")]
mod lanes;
#[cfg(test)]
mod libm_parity;
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
mod ln;
pub mod loss;
pub mod network;
pub mod neuralsort;
pub mod operators;
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
mod rank_avx2;
mod real;
pub mod relaxation;
pub mod select;
#[cfg(target_arch = "x86_64")]
mod select_avx2;
pub mod smooth_topk;
pub mod softmax;
pub mod softsort;
mod sweep;
#[cfg(test)]
mod test_random;
#[cfg(all(target_arch = "x86_64", feature = "alloc"))]
mod transpose_avx2;

#[cfg(feature = "alloc")]
mod batch;
#[cfg(feature = "alloc")]
mod workspace;

#[cfg(feature = "alloc")]
pub use batch::{softmax_cross_entropy, TopkLoss};
pub use config::{Method, Top1Mode, TopkLossConfig, MAX_K};
pub use error::Error;
#[cfg(feature = "alloc")]
pub use network::SortingNetwork;
pub use network::{Comparator, NetworkKind, NetworkRef};
pub use real::Real;
pub use relaxation::Relaxation;
#[cfg(feature = "alloc")]
pub use workspace::Workspace;
