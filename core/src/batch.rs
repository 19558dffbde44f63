//! The batch API: mean loss over row-major `(B, n)` logits and its gradient.

use crate::lanes::{lanes_support, loss_lanes, LANES};
use crate::loss::{sample_loss, scratch_size, Scratch, ScratchSize};
use crate::network::SortingNetwork;
use crate::workspace::{RowBuffers, RowShape, Workspace};
use crate::{Error, Method, Real, TopkLossConfig};
#[cfg(feature = "rayon")]
use alloc::vec;

/// The top-k cross-entropy loss with its network built once (feature `alloc`).
///
/// `forward_backward` returns `mean_b loss_b` and writes `∂mean/∂logits` (row-major `(B, n)`),
/// as `TopKCrossEntropyLoss(...)(logits, labels)` followed by `backward()` does in the reference.
#[derive(Clone, Debug)]
pub struct TopkLoss {
    config: TopkLossConfig,
    network: Option<SortingNetwork>,
    /// The working memory `forward_backward` reuses between calls.
    kept: crate::workspace::KeptWorkspaces,
}

impl TopkLoss {
    /// Builds the network that `config` needs (odd-even or bitonic on n′ = m or n wires, splitter
    /// selection for (n′, K)).
    pub fn new(config: TopkLossConfig) -> Result<Self, Error> {
        let n = config.sorted_inputs();
        let network = match config.method() {
            Method::OddEven => Some(SortingNetwork::odd_even(n)?),
            Method::Bitonic => Some(SortingNetwork::bitonic(n)?),
            Method::BitonicAnySize => Some(SortingNetwork::bitonic_any_size(n)?),
            Method::SplitterSelection => Some(SortingNetwork::splitter_selection(n, config.k())?),
            Method::NeuralSort | Method::SoftSort => None,
        };
        Ok(TopkLoss {
            config,
            network,
            kept: crate::workspace::KeptWorkspaces::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TopkLossConfig {
        &self.config
    }

    /// The network (sorting-network methods).
    pub fn network(&self) -> Option<&SortingNetwork> {
        self.network.as_ref()
    }

    /// Scratch one sample needs.
    pub fn scratch_size(&self) -> ScratchSize {
        scratch_size(
            &self.config,
            self.network.as_ref().map_or(0, |n| n.num_comparators()),
        )
    }

    fn check_batch<F: Real>(
        &self,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&[F]>,
    ) -> Result<(), Error> {
        crate::loss::check_batch_lengths(self.config.classes(), logits, labels, gradient)
    }

    /// [`TopkLoss::check_batch`] plus a non-empty batch (the mean of nothing is undefined).
    fn check_mean_batch<F: Real>(
        &self,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&[F]>,
    ) -> Result<(), Error> {
        crate::loss::check_mean_batch(self.config.classes(), logits, labels, gradient)
    }

    /// The shape of the row buffers this loss needs.
    fn row_shape(&self) -> RowShape {
        if lanes_support(&self.config) {
            RowShape::Lanes {
                inputs: self.config.sorted_inputs(),
                comparators: self.network.as_ref().map_or(0, |n| n.num_comparators()),
                relaxed_rows: if self.network.is_some() {
                    0
                } else {
                    self.config.k()
                },
            }
        } else {
            let size = self.scratch_size();
            RowShape::OneRow {
                reals: size.reals,
                indices: size.indices,
            }
        }
    }

    /// Runs rows `first_row..` of a chunk, writing each row's loss to `losses`, with working
    /// memory from `buffers` (sized here when it does not fit).
    #[allow(clippy::too_many_arguments)]
    fn run_rows<F: Real>(
        &self,
        first_row: usize,
        logits: &[F],
        labels: &[usize],
        mut gradient: Option<&mut [F]>,
        scale: F,
        losses: &mut [F],
        buffers: &mut RowBuffers<F>,
    ) -> Result<(), Error> {
        let n = self.config.classes();
        buffers.prepare(self.row_shape());
        // `prepare` keeps lane buffers exactly when the lanes handle this loss.
        if let Some(buffers) = buffers.lanes.as_mut() {
            // Rows side by side in lanes (bit-identical to sample_loss).
            let comparators = self
                .network
                .as_ref()
                .map_or(&[][..], |network| network.as_ref().comparators());
            for (block, (block_logits, block_labels)) in logits
                .chunks(LANES * n)
                .zip(labels.chunks(LANES))
                .enumerate()
            {
                let start = block * LANES;
                let block_gradient = gradient
                    .as_deref_mut()
                    .map(|g| &mut g[start * n..(start + block_labels.len()) * n]);
                loss_lanes(
                    &self.config,
                    comparators,
                    first_row + start,
                    block_logits,
                    block_labels,
                    block_gradient,
                    scale,
                    &mut losses[start..start + block_labels.len()],
                    buffers,
                )?;
            }
            return Ok(());
        }
        let (reals, indices) = (&mut buffers.reals, &mut buffers.indices);
        // (Only NeuralSort beyond the lanes' 256 sorted inputs takes this path today; a network
        // is passed all the same.)
        let network = self.network.as_ref().map(|network| network.as_ref());
        for (offset, (row_logits, &label)) in logits.chunks_exact(n).zip(labels).enumerate() {
            let row_gradient = gradient
                .as_deref_mut()
                .map(|g| &mut g[offset * n..(offset + 1) * n]);
            losses[offset] = sample_loss(
                &self.config,
                network.as_ref(),
                first_row + offset,
                row_logits,
                label,
                row_gradient,
                scale,
                Scratch { reals, indices },
            )?;
        }
        Ok(())
    }

    /// Mean loss over the batch; when `gradient` is given it receives ∂mean/∂logits.
    /// `logits` is row-major `(B, n)` with `B = labels.len()`. Single-threaded. The loss keeps
    /// its working memory between calls (for `f32` and `f64`), so a training loop allocates
    /// only on its first call; a call made while another thread's call holds that memory
    /// allocates its own. The memory kept is that of the largest batch seen (per float type)
    /// and lives as long as the loss; [`TopkLoss::forward_backward_with`] takes the working
    /// memory from the caller instead (the same bits).
    pub fn forward_backward<F: Real>(
        &self,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&mut [F]>,
    ) -> Result<F, Error> {
        self.kept
            .with(|workspace| self.forward_backward_with(workspace, logits, labels, gradient))
    }

    /// A workspace for [`TopkLoss::forward_backward_with`], sized for this loss (the per-row
    /// losses grow with the first batch).
    pub fn workspace<F: Real>(&self) -> Workspace<F> {
        let mut workspace = Workspace::new();
        workspace.rows.prepare(self.row_shape());
        workspace
    }

    /// As [`TopkLoss::forward_backward`] (the same bits), with working memory from
    /// `workspace`: once it has seen a batch this large, the call allocates nothing.
    /// Single-threaded.
    pub fn forward_backward_with<F: Real>(
        &self,
        workspace: &mut Workspace<F>,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&mut [F]>,
    ) -> Result<F, Error> {
        self.check_mean_batch(logits, labels, gradient.as_deref())?;
        let scale = F::one() / F::of(labels.len() as f64);
        let Workspace { rows, losses } = workspace;
        if losses.len() < labels.len() {
            losses.resize(labels.len(), F::zero());
        }
        let losses = &mut losses[..labels.len()];
        self.run_rows(0, logits, labels, gradient, scale, losses, rows)?;
        Ok(mean(losses))
    }

    /// As [`TopkLoss::forward_backward`], rows spread over rayon's thread pool in chunks. The result
    /// is bit-identical to the single-threaded one (the per-row losses are summed in row order).
    /// Working memory is made once per rayon job (not per chunk), on each call.
    #[cfg(feature = "rayon")]
    pub fn forward_backward_parallel<F: Real>(
        &self,
        logits: &[F],
        labels: &[usize],
        gradient: Option<&mut [F]>,
    ) -> Result<F, Error> {
        use rayon::prelude::*;
        self.check_mean_batch(logits, labels, gradient.as_deref())?;
        let n = self.config.classes();
        let threads = rayon::current_num_threads().max(1);
        let rows_per_chunk = labels.len().div_ceil(threads * 4).max(1);
        let scale = F::one() / F::of(labels.len() as f64);
        let mut losses = vec![F::zero(); labels.len()];
        let chunk = rows_per_chunk * n;
        match gradient {
            Some(gradient) => logits
                .par_chunks(chunk)
                .zip(labels.par_chunks(rows_per_chunk))
                .zip(gradient.par_chunks_mut(chunk))
                .zip(losses.par_chunks_mut(rows_per_chunk))
                .enumerate()
                .try_for_each_init(RowBuffers::default, |buffers, (c, (((x, y), g), l))| {
                    self.run_rows(c * rows_per_chunk, x, y, Some(g), scale, l, buffers)
                })?,
            None => logits
                .par_chunks(chunk)
                .zip(labels.par_chunks(rows_per_chunk))
                .zip(losses.par_chunks_mut(rows_per_chunk))
                .enumerate()
                .try_for_each_init(RowBuffers::default, |buffers, (c, ((x, y), l))| {
                    self.run_rows(c * rows_per_chunk, x, y, None, scale, l, buffers)
                })?,
        }
        Ok(mean(&losses))
    }
}

fn mean<F: Real>(values: &[F]) -> F {
    let mut sum = F::zero();
    for &v in values {
        sum += v;
    }
    sum / F::of(values.len() as f64)
}

/// Plain softmax cross-entropy, mean over the batch: `−mean_b log softmax(s_b)[y_b]`, with
/// `∂/∂s_b = (softmax(s_b) − e_{y_b}) / B` written to `gradient` when given. The baseline of the
/// paper and of every benchmark. Errors as the top-k loss (labels, non-finite logits).
///
/// Per row, the exponentials are summed in 8 interleaved partial sums (the loss is the same
/// bits with or without a gradient); on x86-64 the rows run compiled for AVX2 where the CPU
/// has it (bit-identical to the baseline build, ≈ 1.8–2.3× faster at 1000 classes).
pub fn softmax_cross_entropy<F: Real>(
    logits: &[F],
    labels: &[usize],
    classes: usize,
    gradient: Option<&mut [F]>,
) -> Result<F, Error> {
    if labels.is_empty() || classes == 0 {
        return Err(Error::Empty {
            what: if labels.is_empty() {
                "batch rows (labels)"
            } else {
                "classes"
            },
        });
    }
    // (a wrapped product on a 32-bit target would let a short buffer pass.)
    let expected = labels.len().saturating_mul(classes);
    Error::check_length("logits", expected, logits.len())?;
    if let Some(g) = gradient.as_deref() {
        Error::check_length("gradient", logits.len(), g.len())?;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { cross_entropy_rows_avx2(logits, labels, classes, gradient) };
        }
    }
    cross_entropy_rows(logits, labels, classes, gradient)
}

/// [`cross_entropy_rows`] compiled for AVX2 (8 f32 or 4 f64 per instruction). Rust never
/// contracts `a·b + c` into FMA and the sums keep their 8 partials, so the results are
/// bit-identical to the baseline build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn cross_entropy_rows_avx2<F: Real>(
    logits: &[F],
    labels: &[usize],
    classes: usize,
    gradient: Option<&mut [F]>,
) -> Result<F, Error> {
    cross_entropy_rows(logits, labels, classes, gradient)
}

/// The rows of [`softmax_cross_entropy`] (lengths checked by the caller).
#[inline(always)]
fn cross_entropy_rows<F: Real>(
    logits: &[F],
    labels: &[usize],
    classes: usize,
    mut gradient: Option<&mut [F]>,
) -> Result<F, Error> {
    let scale = F::one() / F::of(labels.len() as f64);
    let mut total = F::zero();
    for (row, (z, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        if y >= classes {
            return Err(Error::LabelOutOfRange {
                row,
                label: y,
                classes,
            });
        }
        let maximum = finite_maximum(z).ok_or_else(|| {
            let column = z.iter().position(|v| !v.is_finite()).unwrap_or(0);
            Error::NonFiniteInput { row, column }
        })?;
        let sum = match gradient.as_deref_mut() {
            Some(g) => {
                let g = &mut g[row * classes..(row + 1) * classes];
                exponentials(z, maximum, g);
                let mut partial = [F::zero(); 8];
                let tail = add_to_partial_sums(g, &mut partial);
                let sum = finish_partial_sums(&partial, tail);
                let inverse = scale / sum;
                for gi in g.iter_mut() {
                    *gi *= inverse;
                }
                g[y] -= scale;
                sum
            }
            None => {
                // In blocks of 64 (a multiple of 8: the partial sums see the same sequence as
                // above, so the loss is the same bits with or without a gradient).
                let mut block = [F::zero(); 64];
                let mut partial = [F::zero(); 8];
                let blocks = z.chunks_exact(64);
                let rest = blocks.remainder();
                for chunk in blocks {
                    exponentials(chunk, maximum, &mut block);
                    add_to_partial_sums(&block, &mut partial);
                }
                let block = &mut block[..rest.len()];
                exponentials(rest, maximum, block);
                let tail = add_to_partial_sums(block, &mut partial);
                finish_partial_sums(&partial, tail)
            }
        };
        total += maximum + sum.ln() - z[y];
    }
    Ok(total * scale)
}

impl TopkLoss {
    /// Per-row losses, without reduction and without gradient (for callers that report a loss per
    /// sample). `losses.len()` must equal the batch size.
    pub fn per_row_losses<F: Real>(
        &self,
        logits: &[F],
        labels: &[usize],
        losses: &mut [F],
    ) -> Result<(), Error> {
        self.check_batch(logits, labels, None)?;
        Error::check_length("losses", labels.len(), losses.len())?;
        self.run_rows(
            0,
            logits,
            labels,
            None,
            F::one(),
            losses,
            &mut RowBuffers::default(),
        )
    }
}

/// The largest entry of `z` when every entry is finite (8 lanes of running maxima and of
/// finiteness flags: the loop vectorises; the maximum does not depend on the order).
#[inline(always)]
fn finite_maximum<F: Real>(z: &[F]) -> Option<F> {
    let mut maxima = [z[0]; 8];
    let mut finite = [true; 8];
    let chunks = z.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for lane in 0..8 {
            let v = chunk[lane];
            finite[lane] &= v.is_finite();
            maxima[lane] = if v > maxima[lane] { v } else { maxima[lane] };
        }
    }
    let mut maximum = z[0];
    let mut all_finite = finite.iter().all(|&f| f);
    for &v in maxima.iter().chain(tail) {
        all_finite &= v.is_finite();
        maximum = if v > maximum { v } else { maximum };
    }
    all_finite.then_some(maximum)
}

/// `out_i = exp(z_i − shift)`.
#[inline(always)]
fn exponentials<F: Real>(z: &[F], shift: F, out: &mut [F]) {
    for (o, &v) in out.iter_mut().zip(z) {
        *o = (v - shift).exp_nonpositive();
    }
}

/// Adds `values` to 8 interleaved partial sums (entry i to partial i mod 8: a dependency chain
/// of n/8 additions instead of n) up to the last whole 8; returns the rest (fewer than 8).
#[inline(always)]
fn add_to_partial_sums<'a, F: Real>(values: &'a [F], partial: &mut [F; 8]) -> &'a [F] {
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for lane in 0..8 {
            partial[lane] += chunk[lane];
        }
    }
    tail
}

/// The partial sums added in order, then the rest: `Σ` of everything given (differing from a
/// left-to-right sum by rounding only).
#[inline(always)]
fn finish_partial_sums<F: Real>(partial: &[F; 8], tail: &[F]) -> F {
    let mut sum = F::zero();
    for &p in partial.iter().chain(tail) {
        sum += p;
    }
    sum
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    /// Rows of pseudo-random logits in [−8, 8), seeded.
    fn logits<F: Real>(count: usize, seed: u64) -> alloc::vec::Vec<F> {
        let mut random = crate::test_random::Xorshift::seeded(seed);
        (0..count)
            .map(|_| F::of(random.uniform() * 16.0 - 8.0))
            .collect()
    }

    /// The dispatched cross-entropy (AVX2 where the CPU has it) gives the baseline build's bits,
    /// loss and gradient, and the same loss without a gradient, for row lengths with and
    /// without a tail of fewer than 8 and with and without a partial block of 64.
    fn dispatch_is_bit_identical<F: Real + core::fmt::Debug>() {
        for classes in [1usize, 3, 8, 13, 100, 1000, 1003] {
            let rows = 9;
            let z = logits::<F>(rows * classes, classes as u64);
            let labels: alloc::vec::Vec<usize> = (0..rows).map(|r| (r * 31) % classes).collect();
            let mut fast = alloc::vec![F::zero(); z.len()];
            let mut baseline = alloc::vec![F::one(); z.len()];
            let fast_loss = softmax_cross_entropy(&z, &labels, classes, Some(&mut fast)).unwrap();
            let baseline_loss =
                cross_entropy_rows(&z, &labels, classes, Some(&mut baseline)).unwrap();
            assert_eq!(
                fast_loss.as_f64().to_bits(),
                baseline_loss.as_f64().to_bits(),
                "{classes} classes: {fast_loss:?} {baseline_loss:?}"
            );
            for (a, b) in fast.iter().zip(&baseline) {
                assert_eq!(
                    a.as_f64().to_bits(),
                    b.as_f64().to_bits(),
                    "{classes} classes"
                );
            }
            let without = softmax_cross_entropy(&z, &labels, classes, None).unwrap();
            assert_eq!(without.as_f64().to_bits(), baseline_loss.as_f64().to_bits());
        }
    }

    #[test]
    fn cross_entropy_dispatch_is_bit_identical_f32() {
        dispatch_is_bit_identical::<f32>();
    }

    #[test]
    fn cross_entropy_dispatch_is_bit_identical_f64() {
        dispatch_is_bit_identical::<f64>();
    }
}
