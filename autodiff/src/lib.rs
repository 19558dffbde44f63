//! # difftopk-autodiff
//!
//! The differentiable top-k cross-entropy loss of Petersen et al. (ICML 2022) and the relaxed
//! sorting operators as [dfdx](https://docs.rs/dfdx/0.13) ops on typed CPU tensors.
//!
//! - [`topk_cross_entropy`]: `(B, C)` logits and B labels → scalar loss, used like dfdx's
//!   `cross_entropy_with_logits_loss`. The core's hand-written vector-Jacobian product is
//!   registered on the tape as one backward op (never rebuilt out of elementwise ops).
//! - [`softmax_cross_entropy`]: the baseline, with class indices and the same one-op backward.
//! - [`RelaxedSortingNetwork`] (`sort`, `permutation`, `topk_matrix`), [`neuralsort_topk_matrix`],
//!   [`softsort_topk_matrix`]: the operators, differentiable.
//! - [`RuntimeLinear`] and [`AdamW`]: a linear head and its optimiser for sizes known only at run
//!   time (dfdx's `Linear` and optimisers need compile-time shapes).
//!
//! Data flow: the network is built once (in [`difftopk_core::TopkLoss`]); the forward pass runs the
//! core's sweep and keeps what the backward needs; the backward op scales the core's gradient by
//! the upstream gradient. CPU only: dfdx 0.13 keeps its CUDA device's handles crate-private and
//! has no custom-kernel hook, so the GPU kernels cannot run on its tensors without a round trip
//! through host memory (see the README); on a GPU, use `difftopk-gpu` on device buffers.
//!
//! ```
//! use difftopk_autodiff::dfdx::prelude::*;
//! use difftopk_autodiff::topk_cross_entropy;
//! use difftopk_core::{Method, TopkLoss, TopkLossConfig};
//!
//! let dev = Cpu::default();
//! let config = TopkLossConfig::new(Method::SplitterSelection, 10, &[0.5, 0.0, 0.5])?;
//! let loss_fn = TopkLoss::new(config)?;
//! let logits: Tensor<Rank2<4, 10>, f32, _> = dev.sample_normal();
//! let loss = topk_cross_entropy(logits.leaky_trace(), &[1usize, 2, 3, 4], &loss_fn)?;
//! let gradients = (loss * 3.0).backward();
//! assert_eq!(gradients.get(&logits).as_vec().len(), 40);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod adamw;
mod element;
mod error;
mod labels;
mod linear;
mod loss;
mod operators;
mod tape;

pub use adamw::{AdamCoefficients, AdamW, AdamWConfig};
pub use element::Element;
pub use error::Error;
pub use labels::Labels;
pub use linear::RuntimeLinear;
pub use loss::{softmax_cross_entropy, topk_cross_entropy, LossDefinition};
pub use operators::{neuralsort_topk_matrix, softsort_topk_matrix, RelaxedSortingNetwork};

pub use dfdx;
pub use difftopk_core;
