//! The training step of a linear head, fused: `logits = X·Wᵀ + b` and `∂W = Gᵀ·X`, `∂b = Σ_rows G`
//! as two GEMM calls on caller-owned buffers, the loss's hand-written gradient `G` in between,
//! AdamW in place. Numerically the step `RuntimeLinear` + `topk_cross_entropy` + `backward()` +
//! `AdamW::update_linear` takes on dfdx (tested to agree), without what a general autodiff tape
//! costs here: dfdx also computes `∂X` for the traced input (a third GEMM as large as the others),
//! and copies logits, gradients and parameters between tensors and slices every step.

use difftopk_autodiff::AdamW;
use difftopk_core::{TopkLoss, Workspace};

use crate::error::{CliError, CliResult};

/// Which loss the step minimises.
pub enum StepLoss<'a> {
    /// Softmax cross-entropy.
    SoftmaxCrossEntropy,
    /// The top-k cross-entropy loss.
    Topk(&'a TopkLoss),
}

/// A linear head with its step buffers (reused, so a single-threaded step allocates nothing once
/// warm; with several threads, the loss's row chunks allocate their working memory).
pub struct FusedHead {
    /// `W`, row-major `[classes, dimension]`.
    pub weight: Vec<f32>,
    /// `b`, `[classes]`.
    pub bias: Vec<f32>,
    classes: usize,
    dimension: usize,
    logits: Vec<f32>,
    logits_gradient: Vec<f32>,
    weight_gradient: Vec<f32>,
    bias_gradient: Vec<f32>,
    /// The top-k loss's working memory (single-threaded steps).
    loss_workspace: Workspace<f32>,
}

fn parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    }
}

impl FusedHead {
    /// A head from its parameters (`weight.len() == classes · dimension`).
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        classes: usize,
        dimension: usize,
    ) -> CliResult<Self> {
        if weight.len() != classes * dimension || bias.len() != classes {
            return Err(CliError(format!(
                "internal: head parameters of lengths {} and {} for {classes} × {dimension}",
                weight.len(),
                bias.len()
            )));
        }
        Ok(FusedHead {
            weight,
            bias,
            classes,
            dimension,
            logits: Vec::new(),
            logits_gradient: Vec::new(),
            weight_gradient: vec![0.0; classes * dimension],
            bias_gradient: vec![0.0; classes],
            loss_workspace: Workspace::new(),
        })
    }

    /// One step on the rows `x` (`labels.len() × dimension`, row-major): returns the mean loss and
    /// applies AdamW at the optimiser's current learning rate.
    pub fn step(
        &mut self,
        x: &[f32],
        labels: &[usize],
        loss: &StepLoss<'_>,
        optimiser: &mut AdamW<f32>,
    ) -> CliResult<f32> {
        let (rows, classes, dimension) = (labels.len(), self.classes, self.dimension);
        if rows == 0 || x.len() != rows * dimension {
            return Err(CliError(format!(
                "internal: a batch of {} values for {rows} rows of {dimension}",
                x.len()
            )));
        }
        self.logits.resize(rows * classes, 0.0);
        self.logits_gradient.resize(rows * classes, 0.0);
        for row in self.logits.chunks_exact_mut(classes) {
            row.copy_from_slice(&self.bias);
        }
        // SAFETY: every pointer, extent and stride below addresses exactly the row-major buffers
        // whose lengths were checked or set above: logits rows × classes (row stride classes),
        // x rows × dimension (row stride dimension), W classes × dimension read as Wᵀ
        // (dimension × classes: row stride 1, column stride dimension).
        unsafe {
            gemm::gemm(
                rows,
                classes,
                dimension,
                self.logits.as_mut_ptr(),
                1,
                classes as isize,
                true,
                x.as_ptr(),
                1,
                dimension as isize,
                self.weight.as_ptr(),
                dimension as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism(),
            );
        }
        let value = match loss {
            StepLoss::Topk(topk) if rayon::current_num_threads() > 1 => topk
                .forward_backward_parallel(&self.logits, labels, Some(&mut self.logits_gradient))?,
            StepLoss::Topk(topk) => topk.forward_backward_with(
                &mut self.loss_workspace,
                &self.logits,
                labels,
                Some(&mut self.logits_gradient),
            )?,
            StepLoss::SoftmaxCrossEntropy => difftopk_core::softmax_cross_entropy(
                &self.logits,
                labels,
                classes,
                Some(&mut self.logits_gradient),
            )?,
        };
        // SAFETY: ∂W (classes × dimension, row stride dimension) = Gᵀ · X with G rows × classes
        // read transposed (classes × rows: row stride 1, column stride classes) and X as above.
        unsafe {
            gemm::gemm(
                classes,
                dimension,
                rows,
                self.weight_gradient.as_mut_ptr(),
                1,
                dimension as isize,
                false,
                self.logits_gradient.as_ptr(),
                classes as isize,
                1,
                x.as_ptr(),
                1,
                dimension as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism(),
            );
        }
        self.bias_gradient.iter_mut().for_each(|g| *g = 0.0);
        for row in self.logits_gradient.chunks_exact(classes) {
            for (g, &r) in self.bias_gradient.iter_mut().zip(row) {
                *g += r;
            }
        }
        optimiser.begin_step();
        optimiser.update_slice(0, &mut self.weight, &self.weight_gradient, true)?;
        optimiser.update_slice(1, &mut self.bias, &self.bias_gradient, false)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use difftopk_autodiff::dfdx::prelude::*;
    use difftopk_autodiff::{
        softmax_cross_entropy, topk_cross_entropy, AdamWConfig, RuntimeLinear,
    };
    use difftopk_core::{Method, TopkLossConfig};

    /// Five steps of the fused head and of the dfdx path agree to float32 rounding.
    #[test]
    fn fused_steps_match_the_dfdx_path() {
        let (rows, dimension, classes) = (37usize, 11usize, 20usize);
        let device = Cpu::default();
        let config = TopkLossConfig::new(Method::SplitterSelection, classes, &[0.5, 0.0, 0.5])
            .unwrap()
            .with_preselection(Some(8))
            .unwrap();
        let topk = TopkLoss::new(config).unwrap();
        let mut state = 7u64;
        let x: Vec<f32> = (0..rows * dimension)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let labels: Vec<usize> = (0..rows).map(|i| i * 3 % classes).collect();
        for use_topk in [true, false] {
            let reference = RuntimeLinear::<f32>::new(&device, dimension, classes, 3).unwrap();
            let mut linear = reference.clone();
            let config = AdamWConfig {
                learning_rate: 0.05,
                weight_decay: 0.01,
                ..Default::default()
            };
            let (mut optimiser_a, mut optimiser_b) =
                (AdamW::new(config).unwrap(), AdamW::new(config).unwrap());
            let mut fused = FusedHead::new(
                reference.weight.as_vec(),
                reference.bias.as_vec(),
                classes,
                dimension,
            )
            .unwrap();
            let loss = if use_topk {
                StepLoss::Topk(&topk)
            } else {
                StepLoss::SoftmaxCrossEntropy
            };
            for _ in 0..5 {
                let fused_value = fused.step(&x, &labels, &loss, &mut optimiser_a).unwrap();
                let input = device.tensor_from_vec(x.clone(), (rows, dimension));
                let logits = linear
                    .forward(input.traced(linear.alloc_grads().unwrap()))
                    .unwrap();
                let value = if use_topk {
                    topk_cross_entropy(logits, &labels, &topk).unwrap()
                } else {
                    softmax_cross_entropy(logits, &labels).unwrap()
                };
                assert!((value.array() - fused_value).abs() <= 1e-5 * fused_value.abs().max(1.0));
                let mut gradients = value.backward();
                optimiser_b
                    .update_linear(&mut linear, &mut gradients)
                    .unwrap();
            }
            for (a, b) in fused.weight.iter().zip(linear.weight.as_vec()) {
                assert!((a - b).abs() <= 2e-5, "{a} vs {b}");
            }
            for (a, b) in fused.bias.iter().zip(linear.bias.as_vec()) {
                assert!((a - b).abs() <= 2e-5, "{a} vs {b}");
            }
        }
    }
}
