//! The top-k cross-entropy loss of Petersen et al. (spec section 5), one sample at a time,
//! without materialising P (spec section 12).
//!
//! For logits s (n classes), label y and P_K = (p_1 … p_K):
//! 1. preselection (when m is set): s' = [s_y, the m−1 largest wrong-class logits descending]
//!    (ties: lower class index first), y' = 0; otherwise s' = s, y' = y;
//! 2. the mass of y' at the top K output positions, `mass[ρ] = P[y', n'−1−ρ]` (ρ = 0 the largest),
//!    from the chosen method;
//! 3. `q = Σ_ρ w_ρ mass[ρ]` with rank weights `w_ρ = Σ_{k ≥ max(ρ, first)} p_{k+1}` (first = 0 in
//!    `sort` mode, 1 otherwise), plus `p_1 · softmax(s')_{y'}` in `sm` mode;
//! 4. `loss = −log(q·(1 − 2·10⁻⁷) + 10⁻⁷)`; in `smce` mode
//!    `loss = p_1·CE(s', y') + (Σ_{k≥2} p_k)·(−log(q·(1 − 2·10⁻⁷) + 10⁻⁷))`.
//!
//! The gradient is the hand-written reverse sweep; it reaches only the m selected logits.

use crate::config::{Family, Top1Mode, TopkLossConfig};
use crate::network::NetworkRef;
use crate::neuralsort::{neuralsort_rows, neuralsort_rows_backward};
use crate::relaxation::with_sigmoid;
use crate::select::largest_indices_unchecked;
use crate::softmax::softmax_unchecked;
use crate::softsort::{softsort_rows, softsort_rows_backward};
use crate::sweep::{backward_with_mass, forward_with_mass, TAPE_PER_COMPARATOR};
use crate::{Error, Real};

/// The clamp of the reference: q ↦ q·(1 − 2·10⁻⁷) + 10⁻⁷ before the logarithm.
const CLAMP_SCALE: f64 = 1.0 - 2e-7;
const CLAMP_SHIFT: f64 = 1e-7;

/// Sizes of the caller-provided scratch of one sample (see [`scratch_size`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ScratchSize {
    /// Reals needed.
    pub reals: usize,
    /// Indices (`u32`) needed.
    pub indices: usize,
}

/// Caller-provided working memory of one sample: the kernels never allocate.
#[derive(Debug)]
pub struct Scratch<'a, F> {
    /// Real-valued scratch, at least [`ScratchSize::reals`] long.
    pub reals: &'a mut [F],
    /// Index scratch, at least [`ScratchSize::indices`] long.
    pub indices: &'a mut [u32],
}

/// The scratch one sample needs for `config` (with `comparators` the size of the network for the
/// sorting-network methods; ignored otherwise).
pub fn scratch_size(config: &TopkLossConfig, comparators: usize) -> ScratchSize {
    let n = config.sorted_inputs();
    let k = config.k();
    // selected logits, softmax probabilities, two working vectors
    let common = 4 * n;
    match config.method().family() {
        Family::SortingNetwork => ScratchSize {
            reals: common + TAPE_PER_COMPARATOR * comparators,
            indices: n,
        },
        // rows and their adjoints (k·n each), c (n), mass (k)
        Family::NeuralSort => ScratchSize {
            reals: common + 2 * k * n + n + k,
            indices: 2 * n,
        },
        Family::SoftSort => ScratchSize {
            reals: common + 2 * k * n + k,
            indices: n + k,
        },
    }
}

/// Checks that `network` fits `config` (sorting-network methods): its wire count. What it
/// sorts cannot be checked on a borrowed network: one the caller builds must bring the K
/// largest of its inputs, in order, to its last K wires (a splitter-selection network built for
/// a smaller k does not, and gives wrong masses); [`crate::TopkLoss`] builds the right one.
pub fn check_network(config: &TopkLossConfig, network: &NetworkRef<'_>) -> Result<(), Error> {
    if network.inputs() != config.sorted_inputs() {
        return Err(Error::NetworkSizeMismatch {
            network: network.inputs(),
            inputs: config.sorted_inputs(),
        });
    }
    Ok(())
}

/// The mean loss over a batch, `(1/B) Σ_b loss_b`, over row-major `(B, n)` logits and `B`
/// labels, with `∂mean/∂logits` written to `gradient` when given (every entry written): the
/// batch API without an allocator, for bare-metal callers who bring the network and one
/// sample's scratch ([`scratch_size`]), reused row after row.
///
/// The same bits as [`crate::TopkLoss::forward_backward`] (feature `alloc`), which runs eight
/// rows side by side where it can: the rows' losses are summed in row order and divided by B,
/// and each row's gradient is [`sample_loss`]'s with `gradient_scale = 1/B`. One row at a time,
/// so slower than that call where its lanes apply.
///
/// # Errors
/// [`Error::Empty`] for a batch without rows, [`Error::LengthMismatch`] for `logits` (B·n) or
/// `gradient`, and [`sample_loss`]'s errors with the row they concern (the first bad row; the
/// gradient of the rows before it is written, the rest unspecified).
pub fn batch_loss<F: Real>(
    config: &TopkLossConfig,
    network: Option<&NetworkRef<'_>>,
    logits: &[F],
    labels: &[usize],
    mut gradient: Option<&mut [F]>,
    scratch: Scratch<'_, F>,
) -> Result<F, Error> {
    let classes = config.classes();
    // (`TopkLoss::forward_backward`'s checks: the same error for the same call.)
    check_mean_batch(classes, logits, labels, gradient.as_deref())?;
    let scale = F::one() / F::of(labels.len() as f64);
    let Scratch { reals, indices } = scratch;
    let mut sum = F::zero();
    for (row, (row_logits, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let row_gradient = gradient
            .as_deref_mut()
            .map(|g| &mut g[row * classes..(row + 1) * classes]);
        sum += sample_loss(
            config,
            network,
            row,
            row_logits,
            label,
            row_gradient,
            scale,
            Scratch {
                reals: &mut *reals,
                indices: &mut *indices,
            },
        )?;
    }
    Ok(sum / F::of(labels.len() as f64))
}

/// The lengths of a batch of `labels.len()` rows of `classes` logits: `logits` B·n, `gradient`
/// (when given) as long as `logits`.
pub(crate) fn check_batch_lengths<F>(
    classes: usize,
    logits: &[F],
    labels: &[usize],
    gradient: Option<&[F]>,
) -> Result<(), Error> {
    // (a wrapped product on a 32-bit target would let a short buffer pass.)
    let expected = labels.len().saturating_mul(classes);
    Error::check_length("logits", expected, logits.len())?;
    if let Some(g) = gradient {
        Error::check_length("gradient", logits.len(), g.len())?;
    }
    Ok(())
}

/// [`check_batch_lengths`] plus a non-empty batch (the mean of nothing is undefined).
pub(crate) fn check_mean_batch<F>(
    classes: usize,
    logits: &[F],
    labels: &[usize],
    gradient: Option<&[F]>,
) -> Result<(), Error> {
    check_batch_lengths(classes, logits, labels, gradient)?;
    if labels.is_empty() {
        return Err(Error::Empty {
            what: "batch rows (labels)",
        });
    }
    Ok(())
}

/// The loss of one sample, and optionally `gradient_scale · ∂loss/∂logits` written to `gradient`
/// (all n entries are written; those the loss does not depend on are 0).
///
/// `network` is the network for `config.sorted_inputs()` wires and K (required for the sorting
/// network methods; built by [`crate::TopkLoss`] or by the caller); `row` only labels errors.
/// Never allocates; O(comparators) for the networks, O(K·n′ + n′²) for NeuralSort up to
/// n′ = 256 (its order counted over all pairs, vectorised) and O(K·n′ + n′ log n′) above,
/// O(K·n′) for SoftSort, plus O(n) for the preselection.
#[allow(clippy::too_many_arguments)]
pub fn sample_loss<F: Real>(
    config: &TopkLossConfig,
    network: Option<&NetworkRef<'_>>,
    row: usize,
    logits: &[F],
    label: usize,
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    scratch: Scratch<'_, F>,
) -> Result<F, Error> {
    let classes = config.classes();
    check_row(config, row, logits, label)?;
    let comparators = match (config.method().is_network(), network) {
        (true, Some(net)) => {
            check_network(config, net)?;
            net.comparators()
        }
        (true, None) => {
            return Err(Error::MissingNetwork {
                method: config.method(),
                inputs: config.sorted_inputs(),
            })
        }
        (false, _) => &[],
    };
    let needed = scratch_size(config, comparators.len());
    Error::check_scratch("reals", needed.reals, scratch.reals.len())?;
    Error::check_scratch("indices", needed.indices, scratch.indices.len())?;
    if let Some(g) = gradient.as_deref() {
        Error::check_length("gradient", classes, g.len())?;
    }

    let n = config.sorted_inputs();
    let k = config.k();
    let (selection, index_rest) = scratch.indices.split_at_mut(n);
    let (selected, reals) = scratch.reals.split_at_mut(n);
    let (probabilities, reals) = reals.split_at_mut(n);
    let (work_x, reals) = reals.split_at_mut(n);
    let (work_v, reals) = reals.split_at_mut(n);

    // 1. Preselection: the true class first, then the m − 1 largest wrong classes.
    let sorted_label = preselect(config, logits, label, selection, selected);

    // 2. Mass of the label at the top K positions (rank ρ = 0 the largest).
    let beta = F::of(config.inverse_temperature());
    let mut mass = [F::zero(); crate::MAX_K];
    let mut mass_adjoint = [F::zero(); crate::MAX_K];
    match config.method().family() {
        Family::SortingNetwork => {
            let tape = &mut reals[..TAPE_PER_COMPARATOR * comparators.len()];
            work_x.copy_from_slice(selected);
            work_v.iter_mut().for_each(|v| *v = F::zero());
            work_v[sorted_label] = F::one();
            with_sigmoid!(config.relaxation(), beta, |sigmoid| forward_with_mass(
                sigmoid,
                comparators,
                work_x,
                work_v,
                tape
            ));
            for (rank, m) in mass.iter_mut().take(k).enumerate() {
                *m = work_v[n - 1 - rank];
            }
        }
        Family::NeuralSort => {
            let (rows, rest) = reals.split_at_mut(k * n);
            let c = &mut rest[k * n..k * n + n];
            neuralsort_rows(selected, k, beta, rows, c, &mut index_rest[..n]);
            for (rank, m) in mass.iter_mut().take(k).enumerate() {
                *m = rows[rank * n + sorted_label];
            }
        }
        Family::SoftSort => {
            let rows = &mut reals[..k * n];
            let preselected = config.preselection().is_some();
            softsort_rows(selected, k, beta, rows, &mut index_rest[..k], preselected);
            for (rank, m) in mass.iter_mut().take(k).enumerate() {
                *m = rows[rank * n + sorted_label];
            }
        }
    }

    // 3.–4. Mixture, clamp, log.
    let (loss, q_adjoint) = mixture(config, &mass[..k], selected, sorted_label, probabilities);

    let Some(gradient) = gradient else {
        return Ok(loss);
    };

    // Backward: adjoints of the mass, then the method's reverse pass into work_x (n values).
    for (rank, adjoint) in mass_adjoint.iter_mut().take(k).enumerate() {
        *adjoint = q_adjoint * F::of(config.rank_weight(rank));
    }
    match config.method().family() {
        Family::SortingNetwork => {
            let tape = &reals[..TAPE_PER_COMPARATOR * comparators.len()];
            work_x.iter_mut().for_each(|g| *g = F::zero());
            work_v.iter_mut().for_each(|g| *g = F::zero());
            for rank in 0..k {
                work_v[n - 1 - rank] = mass_adjoint[rank];
            }
            backward_with_mass(comparators, tape, work_x, work_v);
        }
        Family::NeuralSort => {
            let (rows, rest) = reals.split_at_mut(k * n);
            let (adjoint, rest) = rest.split_at_mut(k * n);
            let c_bar = &mut rest[..n];
            adjoint.iter_mut().for_each(|a| *a = F::zero());
            for rank in 0..k {
                adjoint[rank * n + sorted_label] = mass_adjoint[rank];
            }
            work_x.iter_mut().for_each(|g| *g = F::zero());
            neuralsort_rows_backward(
                selected,
                k,
                beta,
                rows,
                adjoint,
                c_bar,
                &mut index_rest[..n],
                work_x,
            );
        }
        Family::SoftSort => {
            let (rows, rest) = reals.split_at_mut(k * n);
            let adjoint = &mut rest[..k * n];
            adjoint.iter_mut().for_each(|a| *a = F::zero());
            for rank in 0..k {
                adjoint[rank * n + sorted_label] = mass_adjoint[rank];
            }
            work_x.iter_mut().for_each(|g| *g = F::zero());
            softsort_rows_backward(selected, k, beta, rows, &index_rest[..k], adjoint, work_x);
        }
    }
    finish_gradient(
        config,
        q_adjoint,
        probabilities,
        sorted_label,
        selection,
        work_x,
        gradient,
        gradient_scale,
    );
    Ok(loss)
}

/// Validation of one row: its length, its label, finite logits (errors name `row`).
pub(crate) fn check_row<F: Real>(
    config: &TopkLossConfig,
    row: usize,
    logits: &[F],
    label: usize,
) -> Result<(), Error> {
    check_shape(config, row, logits.len(), label)?;
    check_values(row, logits)
}

/// The first part of [`check_row`]: the row's length and its label.
#[inline]
fn check_shape(
    config: &TopkLossConfig,
    row: usize,
    length: usize,
    label: usize,
) -> Result<(), Error> {
    let classes = config.classes();
    Error::check_length("logits", classes, length)?;
    if label >= classes {
        return Err(Error::LabelOutOfRange {
            row,
            label,
            classes,
        });
    }
    Ok(())
}

/// Every value finite and within ±[`MAX_LOGIT`]: the row check of the loss and the operators
/// ([`Error::NonFiniteInput`] for the first NaN or infinity, else [`Error::LogitTooLarge`],
/// naming `row` and the column).
pub fn check_values<F: Real>(row: usize, logits: &[F]) -> Result<(), Error> {
    // One pass without an early exit (it vectorises; NaN fails the comparison too); the
    // position only when something is wrong.
    let bound = F::of(MAX_LOGIT);
    if !all_within(logits, bound) {
        if let Some(column) = logits.iter().position(|z| !z.is_finite()) {
            return Err(Error::NonFiniteInput { row, column });
        }
        let column = logits.iter().position(|z| z.abs() > bound).unwrap_or(0);
        return Err(Error::LogitTooLarge { row, column });
    }
    Ok(())
}

/// Whether every value has `|z| ≤ bound` (NaN has not), in one pass without an early exit; for
/// f32 with AVX2 one compare and one AND per 8 values (the portable loop was vectorised with a
/// packing of the comparison masks to 16 bits, two shuffles per 8 values).
#[inline(always)]
fn all_within<F: Real>(values: &[F], bound: F) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(values), Some(&[bound])) = (
        F::as_f32_slice(values),
        F::as_f32_slice(core::slice::from_ref(&bound)),
    ) {
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { all_within_avx2(values, bound) };
        }
    }
    let mut all_in_range = true;
    for &z in values {
        all_in_range &= z.abs() <= bound;
    }
    all_in_range
}

/// [`all_within`] for f32 with AVX2 intrinsics.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn all_within_avx2(values: &[f32], bound: f32) -> bool {
    use core::arch::x86_64::{
        _mm256_and_ps, _mm256_castsi256_ps, _mm256_cmp_ps, _mm256_loadu_ps, _mm256_movemask_ps,
        _mm256_set1_epi32, _mm256_set1_ps, _CMP_LE_OQ,
    };
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let limit = _mm256_set1_ps(bound);
    let mut within = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let blocks = values.chunks_exact(8);
    let tail = blocks.remainder();
    for block in blocks {
        let absolute = _mm256_and_ps(_mm256_loadu_ps(block.as_ptr()), magnitude);
        // Ordered `≤`: false for NaN.
        within = _mm256_and_ps(within, _mm256_cmp_ps::<_CMP_LE_OQ>(absolute, limit));
    }
    _mm256_movemask_ps(within) == 0xff && tail.iter().all(|z| z.abs() <= bound)
}

/// The largest logit magnitude the top-k loss and the operators accept, 10³²
/// ([`Error::LogitTooLarge`] beyond): the range on which the loss and its gradient are tested
/// finite in `f32` with every method, relaxation and accepted β. Logit differences near
/// `f32::MAX` overflow the relaxed comparisons, and NeuralSort's `s·(n − 1)` must stay finite
/// (up to n ≈ 10⁶ classes here). (The plain softmax cross-entropy takes any finite logit.)
pub const MAX_LOGIT: f64 = 1e32;

/// Step 1 of the loss: `selected` receives the logits to sort — with m, the true class's first,
/// then the m − 1 largest others' (ties to the lower index), whose classes go to `selection`
/// (n′ indices); without m, all logits in class order (the selection is the identity, and
/// `selection` is left as it is). Returns the label's position among them.
pub(crate) fn preselect<F: Real>(
    config: &TopkLossConfig,
    logits: &[F],
    label: usize,
    selection: &mut [u32],
    selected: &mut [F],
) -> usize {
    let n = config.sorted_inputs();
    match config.preselection() {
        Some(_) => {
            selection[0] = label as u32;
            largest_indices_unchecked(logits, Some(label), &mut selection[1..n]);
            gather_selected(logits, &selection[..n], selected);
            0
        }
        None => {
            selected[..n].copy_from_slice(&logits[..n]);
            label
        }
    }
}

/// [`check_row`], then [`preselect`]; with m, for `f32` rows on x86-64 with AVX2, the range
/// check runs inside the selection's pass over the row (`select_avx2::largest_indices_within`)
/// instead of a pass of its own. The same result and the same errors as the two calls. `hint`
/// is the selection's guess carried between rows (`learn`: this row joins its averages).
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn check_and_preselect<F: Real>(
    config: &TopkLossConfig,
    row: usize,
    logits: &[F],
    label: usize,
    selection: &mut [u32],
    selected: &mut [F],
    hint: &mut crate::select::SelectionHint,
    learn: bool,
) -> Result<usize, Error> {
    // (Only the AVX2 selection takes the hint.)
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (hint, learn);
    #[cfg(target_arch = "x86_64")]
    if config.preselection().is_some() && crate::cpu::has_avx2() && crate::cpu::has_popcnt() {
        if let Some(values) = F::as_f32_slice(logits) {
            check_shape(config, row, logits.len(), label)?;
            let n = config.sorted_inputs();
            // SAFETY: the CPU supports AVX2 and POPCNT, checked above.
            let outcome = unsafe {
                crate::select_avx2::largest_indices_within(
                    values,
                    Some(label),
                    &mut selection[1..n],
                    MAX_LOGIT as f32,
                    hint,
                    learn,
                )
            };
            match outcome {
                crate::select_avx2::Outcome::Selected => {
                    selection[0] = label as u32;
                    gather_selected(logits, &selection[..n], selected);
                    return Ok(0);
                }
                // The check below names the entry (and returns its error).
                crate::select_avx2::Outcome::OutOfRange | crate::select_avx2::Outcome::Declined => {
                }
            }
        }
    }
    check_row(config, row, logits, label)?;
    Ok(preselect(config, logits, label, selection, selected))
}

/// `selected[p] = logits[selection[p]]` for the first `selection.len()` positions.
#[inline(always)]
fn gather_selected<F: Real>(logits: &[F], selection: &[u32], selected: &mut [F]) {
    for (x, &i) in selected.iter_mut().zip(selection) {
        *x = logits[i as usize];
    }
}

/// Steps 3–4: the mixture `q` of the label's mass at the top K positions (`mass[ρ]`, ρ = 0 the
/// largest) and, by the top-1 mode, the softmax of the selected logits; the clamp and the log.
/// Returns `(loss, ∂loss/∂q)`; `probabilities` receives the softmax when the mode uses it.
pub(crate) fn mixture<F: Real>(
    config: &TopkLossConfig,
    mass: &[F],
    selected: &[F],
    sorted_label: usize,
    probabilities: &mut [F],
) -> (F, F) {
    let mode = config.top1_mode();
    let mut q = F::zero();
    for (rank, &m) in mass.iter().enumerate() {
        q += F::of(config.rank_weight(rank)) * m;
    }
    let mut log_partition = F::zero();
    if mode != Top1Mode::Sort {
        let (maximum, sum) = softmax_unchecked(selected, probabilities);
        // log Σ exp s′ enters only the cross-entropy term (one `ln` saved in the other modes).
        if mode == Top1Mode::SoftmaxCrossEntropy {
            log_partition = maximum + sum.loss_ln();
        }
    }
    let label_probability = if mode == Top1Mode::Softmax {
        probabilities[sorted_label]
    } else {
        F::zero()
    };
    mixture_finish(
        config,
        q,
        label_probability,
        log_partition,
        selected[sorted_label],
    )
}

/// The end of step 3–4 once `q = Σ_ρ w_ρ mass_ρ` is known: the top-1 term by the mode (the
/// label's softmax probability in `sm`, log Σ exp s′ and the label's logit in `smce`), the
/// clamp and the log. Returns `(loss, ∂loss/∂q)`. (Inlined: the lanes call it per row, and
/// its reads of the configuration then leave the loop.)
#[inline(always)]
pub(crate) fn mixture_finish<F: Real>(
    config: &TopkLossConfig,
    q: F,
    label_probability: F,
    log_partition: F,
    label_logit: F,
) -> (F, F) {
    let clamped = mixture_clamped(config, q, label_probability);
    mixture_from_log(
        config,
        clamped,
        clamped.loss_ln(),
        log_partition,
        label_logit,
    )
}

/// The clamped mixture `c = q′·(1 − 2·10⁻⁷) + 10⁻⁷`, with `q′ = q + P_K[1]·p_label` in `sm`
/// and `q′ = q` otherwise: the argument of the loss's logarithm (first half of
/// [`mixture_finish`]).
#[inline(always)]
pub(crate) fn mixture_clamped<F: Real>(
    config: &TopkLossConfig,
    mut q: F,
    label_probability: F,
) -> F {
    if config.top1_mode() == Top1Mode::Softmax {
        q += F::of(config.topk_distribution()[0]) * label_probability;
    }
    q * F::of(CLAMP_SCALE) + F::of(CLAMP_SHIFT)
}

/// `(loss, ∂loss/∂q)` from the clamped mixture `clamped` and its logarithm `log_clamped`
/// (second half of [`mixture_finish`]).
#[inline(always)]
pub(crate) fn mixture_from_log<F: Real>(
    config: &TopkLossConfig,
    clamped: F,
    log_clamped: F,
    log_partition: F,
    label_logit: F,
) -> (F, F) {
    let scale = F::of(CLAMP_SCALE);
    match config.top1_mode() {
        Top1Mode::Softmax | Top1Mode::Sort => (-log_clamped, -scale / clamped),
        Top1Mode::SoftmaxCrossEntropy => {
            let p_first = F::of(config.topk_distribution()[0]);
            let rest_weight = F::of(config.topk_distribution()[1..].iter().sum::<f64>());
            let cross_entropy = log_partition - label_logit;
            (
                p_first * cross_entropy - rest_weight * log_clamped,
                -rest_weight * scale / clamped,
            )
        }
    }
}

/// The end of the backward pass: adds the softmax / cross-entropy term of the top-1 mode to
/// `work_x` (the adjoint of the selected logits) and scatters `scale · work_x` into the row's
/// gradient through `selection` (zero for classes the preselection left out); without a
/// preselection, `selection` is not read and the gradient is `scale · work_x` in class order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_gradient<F: Real>(
    config: &TopkLossConfig,
    q_adjoint: F,
    probabilities: &[F],
    sorted_label: usize,
    selection: &[u32],
    work_x: &mut [F],
    gradient: &mut [F],
    gradient_scale: F,
) {
    let p_first = F::of(config.topk_distribution()[0]);
    match config.top1_mode() {
        Top1Mode::Softmax => {
            // ∂softmax_y/∂s_i = p_y (δ_iy − p_i)
            let factor = q_adjoint * p_first * probabilities[sorted_label];
            for (i, (g, &p)) in work_x.iter_mut().zip(probabilities.iter()).enumerate() {
                let delta = if i == sorted_label {
                    F::one()
                } else {
                    F::zero()
                };
                *g += factor * (delta - p);
            }
        }
        Top1Mode::SoftmaxCrossEntropy => {
            for (i, (g, &p)) in work_x.iter_mut().zip(probabilities.iter()).enumerate() {
                let delta = if i == sorted_label {
                    F::one()
                } else {
                    F::zero()
                };
                *g += p_first * (p - delta);
            }
        }
        Top1Mode::Sort => {}
    }
    write_gradient(config, selection, work_x, gradient, gradient_scale);
}

/// The last step of [`finish_gradient`]: `scale · work_x` into the row's gradient, through
/// `selection` with a preselection (zero for the classes it left out), else in class order.
#[inline]
pub(crate) fn write_gradient<F: Real>(
    config: &TopkLossConfig,
    selection: &[u32],
    work_x: &[F],
    gradient: &mut [F],
    gradient_scale: F,
) {
    if config.preselection().is_some() {
        gradient.iter_mut().for_each(|g| *g = F::zero());
        for (&i, &g) in selection.iter().zip(work_x.iter()) {
            gradient[i as usize] = g * gradient_scale;
        }
    } else {
        // The selection is the identity: a plain loop (it vectorises), the same values.
        for (out, &g) in gradient.iter_mut().zip(work_x.iter()) {
            *out = g * gradient_scale;
        }
    }
}
