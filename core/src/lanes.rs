//! The network sweeps over [`LANES`] rows at once.
//!
//! Every row of a batch runs the same network, so the comparator loop can carry several rows side
//! by side: `x[w][l]` is wire w of lane (row) l. The arithmetic per lane is exactly that of
//! [`crate::sweep`] (same operations, same order), so the results are bit-identical to the
//! one-row sweeps; what changes is that the independent lanes fill the CPU's pipelines (the
//! `exp`/`sqrt`/division latencies of one comparator overlap across rows) and the elementwise parts
//! vectorise.

// Loops run over lane indices on purpose: that is the shape the vectoriser turns into SIMD.
#![allow(clippy::needless_range_loop)]

use crate::network::Comparator;
use crate::relaxation::Sigmoid;
use crate::Real;

/// Rows processed together.
pub const LANES: usize = 8;

/// One value per lane.
pub type Lanes<F> = [F; LANES];

/// [`crate::sweep::forward_with_mass`] on [`LANES`] rows: values `x` and mass `v` (one entry
/// per wire), recording `[α, f'(b − a), a − b, v_a − v_b]` per comparator in `tape`
/// (`tape.len() ≥ 4 · comparators.len()`).
#[inline(always)]
pub(crate) fn forward_with_mass_lanes<F: Real, S: Sigmoid<F>>(
    sigmoid: S,
    comparators: &[Comparator],
    x: &mut [Lanes<F>],
    v: &mut [Lanes<F>],
    tape: &mut [Lanes<F>],
) {
    for (c, record) in comparators.iter().zip(tape.chunks_exact_mut(4)) {
        let (wa, wb) = (c.wire_a as usize, c.wire_b as usize);
        let (a, b) = (x[wa], x[wb]);
        let (va, vb) = (v[wa], v[wb]);
        let mut alpha = [F::zero(); LANES];
        let mut slope = [F::zero(); LANES];
        for lane in 0..LANES {
            (alpha[lane], slope[lane]) = sigmoid.alpha_and_slope(b[lane] - a[lane]);
        }
        let (omin, omax) = (c.out_min as usize, c.out_max as usize);
        let (mut x_min, mut x_max, mut v_min, mut v_max) = (
            [F::zero(); LANES],
            [F::zero(); LANES],
            [F::zero(); LANES],
            [F::zero(); LANES],
        );
        let (mut a_minus_b, mut va_minus_vb) = ([F::zero(); LANES], [F::zero(); LANES]);
        for lane in 0..LANES {
            let beta = F::one() - alpha[lane];
            x_min[lane] = alpha[lane] * a[lane] + beta * b[lane];
            x_max[lane] = beta * a[lane] + alpha[lane] * b[lane];
            v_min[lane] = alpha[lane] * va[lane] + beta * vb[lane];
            v_max[lane] = beta * va[lane] + alpha[lane] * vb[lane];
            a_minus_b[lane] = a[lane] - b[lane];
            va_minus_vb[lane] = va[lane] - vb[lane];
        }
        x[omin] = x_min;
        x[omax] = x_max;
        v[omin] = v_min;
        v[omax] = v_max;
        record[0] = alpha;
        record[1] = slope;
        record[2] = a_minus_b;
        record[3] = va_minus_vb;
    }
}

/// [`crate::sweep::backward_with_mass`] on [`LANES`] rows: on entry `gx`, `gv` hold the adjoints
/// of the final values and mass, on exit those of the inputs.
#[inline(always)]
pub(crate) fn backward_with_mass_lanes<F: Real>(
    comparators: &[Comparator],
    tape: &[Lanes<F>],
    gx: &mut [Lanes<F>],
    gv: &mut [Lanes<F>],
) {
    for (c, record) in comparators.iter().zip(tape.chunks_exact(4)).rev() {
        let (alpha, slope, a_minus_b, va_minus_vb) =
            (&record[0], &record[1], &record[2], &record[3]);
        let (omin, omax) = (c.out_min as usize, c.out_max as usize);
        let (gmin, gmax) = (gx[omin], gx[omax]);
        let (hmin, hmax) = (gv[omin], gv[omax]);
        let (mut ga, mut gb, mut ha, mut hb) = (
            [F::zero(); LANES],
            [F::zero(); LANES],
            [F::zero(); LANES],
            [F::zero(); LANES],
        );
        for lane in 0..LANES {
            let beta = F::one() - alpha[lane];
            let alpha_bar = a_minus_b[lane] * (gmin[lane] - gmax[lane])
                + va_minus_vb[lane] * (hmin[lane] - hmax[lane]);
            let through_alpha = slope[lane] * alpha_bar;
            ga[lane] = alpha[lane] * gmin[lane] + beta * gmax[lane] - through_alpha;
            gb[lane] = beta * gmin[lane] + alpha[lane] * gmax[lane] + through_alpha;
            ha[lane] = alpha[lane] * hmin[lane] + beta * hmax[lane];
            hb[lane] = beta * hmin[lane] + alpha[lane] * hmax[lane];
        }
        let (wa, wb) = (c.wire_a as usize, c.wire_b as usize);
        gx[wa] = ga;
        gx[wb] = gb;
        gv[wa] = ha;
        gv[wb] = hb;
    }
}

/// Working memory for [`network_loss_lanes`] (n′ sorted inputs, C comparators).
pub(crate) struct LaneBuffers<F> {
    x: alloc::vec::Vec<Lanes<F>>,
    v: alloc::vec::Vec<Lanes<F>>,
    tape: alloc::vec::Vec<Lanes<F>>,
    selection: alloc::vec::Vec<u32>,
    selected: alloc::vec::Vec<F>,
    probabilities: alloc::vec::Vec<F>,
    selected_lanes: alloc::vec::Vec<Lanes<F>>,
    probability_lanes: alloc::vec::Vec<Lanes<F>>,
    work: alloc::vec::Vec<F>,
}

impl<F: Real> LaneBuffers<F> {
    pub(crate) fn new(inputs: usize, comparators: usize) -> Self {
        use alloc::vec;
        LaneBuffers {
            x: vec![[F::zero(); LANES]; inputs],
            v: vec![[F::zero(); LANES]; inputs],
            tape: vec![[F::zero(); LANES]; 4 * comparators],
            selection: vec![0; LANES * inputs],
            selected: vec![F::zero(); LANES * inputs],
            probabilities: vec![F::zero(); LANES * inputs],
            selected_lanes: vec![[F::zero(); LANES]; inputs],
            probability_lanes: vec![[F::zero(); LANES]; inputs],
            work: vec![F::zero(); inputs],
        }
    }
}

/// The loss of up to [`LANES`] rows of a sorting-network method, the rows side by side: the
/// same steps as [`crate::loss::sample_loss`] (which see), bit-identical per row. `logits` holds
/// `labels.len()` rows; row `r` is reported as `first_row + r` in errors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn network_loss_lanes<F: Real>(
    config: &crate::TopkLossConfig,
    comparators: &[Comparator],
    first_row: usize,
    logits: &[F],
    labels: &[usize],
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    losses: &mut [F],
    buffers: &mut LaneBuffers<F>,
) -> Result<(), crate::Error> {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe {
                network_loss_lanes_avx2(
                    config,
                    comparators,
                    first_row,
                    logits,
                    labels,
                    gradient,
                    gradient_scale,
                    losses,
                    buffers,
                )
            };
        }
    }
    network_loss_lanes_body(
        config,
        comparators,
        first_row,
        logits,
        labels,
        gradient,
        gradient_scale,
        losses,
        buffers,
    )
}

/// [`network_loss_lanes_body`] compiled for AVX2 (8 f32 or 4 f64 lanes per instruction). Rust
/// never contracts `a·b + c` into FMA, so the results are bit-identical to the baseline build.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn network_loss_lanes_avx2<F: Real>(
    config: &crate::TopkLossConfig,
    comparators: &[Comparator],
    first_row: usize,
    logits: &[F],
    labels: &[usize],
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    losses: &mut [F],
    buffers: &mut LaneBuffers<F>,
) -> Result<(), crate::Error> {
    network_loss_lanes_body(
        config,
        comparators,
        first_row,
        logits,
        labels,
        gradient,
        gradient_scale,
        losses,
        buffers,
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn network_loss_lanes_body<F: Real>(
    config: &crate::TopkLossConfig,
    comparators: &[Comparator],
    first_row: usize,
    logits: &[F],
    labels: &[usize],
    gradient: Option<&mut [F]>,
    gradient_scale: F,
    losses: &mut [F],
    buffers: &mut LaneBuffers<F>,
) -> Result<(), crate::Error> {
    use crate::loss::{check_row, finish_gradient, mixture_finish, preselect};
    let classes = config.classes();
    let (n, k) = (config.sorted_inputs(), config.k());
    let rows = labels.len();
    let mut sorted_labels = [0usize; LANES];
    for (lane, &label) in labels.iter().enumerate() {
        let row_logits = &logits[lane * classes..(lane + 1) * classes];
        check_row(config, first_row + lane, row_logits, label)?;
        sorted_labels[lane] = preselect(
            config,
            row_logits,
            label,
            &mut buffers.selection[lane * n..(lane + 1) * n],
            &mut buffers.selected[lane * n..(lane + 1) * n],
        );
    }
    for wire in 0..n {
        for lane in 0..LANES {
            // Lanes past the last row run on zeros and are ignored.
            let (value, mass) = if lane < rows {
                let one = wire == sorted_labels[lane];
                (
                    buffers.selected[lane * n + wire],
                    if one { F::one() } else { F::zero() },
                )
            } else {
                (F::zero(), F::zero())
            };
            buffers.x[wire][lane] = value;
            buffers.v[wire][lane] = mass;
            buffers.selected_lanes[wire][lane] = value;
        }
    }
    let beta = F::of(config.inverse_temperature());
    let tape = &mut buffers.tape[..4 * comparators.len()];
    crate::relaxation::with_sigmoid!(config.relaxation(), beta, |sigmoid| {
        forward_with_mass_lanes(sigmoid, comparators, &mut buffers.x, &mut buffers.v, tape)
    });
    // The softmax of the selected logits for the top-1 term, the rows side by side: per lane
    // the operations of `softmax::softmax` in its order (maximum, exponentials, sum, scaling).
    let mode = config.top1_mode();
    let (selected, probabilities) = (&buffers.selected_lanes, &mut buffers.probability_lanes);
    let mut maximum = selected[0];
    let mut sum = [F::zero(); LANES];
    if mode != crate::Top1Mode::Sort {
        for values in &selected[1..] {
            for lane in 0..LANES {
                if values[lane] > maximum[lane] {
                    maximum[lane] = values[lane];
                }
            }
        }
        for (p, values) in probabilities.iter_mut().zip(selected.iter()) {
            for lane in 0..LANES {
                p[lane] = (values[lane] - maximum[lane]).exp();
            }
        }
        for p in probabilities.iter() {
            for lane in 0..LANES {
                sum[lane] += p[lane];
            }
        }
        let mut inverse = [F::zero(); LANES];
        for lane in 0..LANES {
            inverse[lane] = F::one() / sum[lane];
        }
        for p in probabilities.iter_mut() {
            for lane in 0..LANES {
                p[lane] *= inverse[lane];
            }
        }
    }
    let mut q_adjoints = [F::zero(); LANES];
    for lane in 0..rows {
        let mut q = F::zero();
        for rank in 0..k {
            q += F::of(config.rank_weight(rank)) * buffers.v[n - 1 - rank][lane];
        }
        let label = sorted_labels[lane];
        let log_partition = if mode == crate::Top1Mode::SoftmaxCrossEntropy {
            maximum[lane] + sum[lane].ln()
        } else {
            F::zero()
        };
        let label_probability = if mode == crate::Top1Mode::Softmax {
            probabilities[label][lane]
        } else {
            F::zero()
        };
        let (loss, q_adjoint) = mixture_finish(
            config,
            q,
            label_probability,
            log_partition,
            selected[label][lane],
        );
        losses[lane] = loss;
        q_adjoints[lane] = q_adjoint;
        // The row's probabilities where `finish_gradient` reads them.
        for (wire, p) in probabilities.iter().enumerate() {
            buffers.probabilities[lane * n + wire] = p[lane];
        }
    }
    let Some(gradient) = gradient else {
        return Ok(());
    };
    // Reuse x, v as the adjoints ḡ, h̄.
    let (gx, gv) = (&mut buffers.x, &mut buffers.v);
    gx.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
    gv.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
    for lane in 0..rows {
        for rank in 0..k {
            gv[n - 1 - rank][lane] = q_adjoints[lane] * F::of(config.rank_weight(rank));
        }
    }
    backward_with_mass_lanes(comparators, &buffers.tape[..4 * comparators.len()], gx, gv);
    for lane in 0..rows {
        for (wire, w) in buffers.work.iter_mut().enumerate() {
            *w = gx[wire][lane];
        }
        finish_gradient(
            config,
            q_adjoints[lane],
            &buffers.probabilities[lane * n..(lane + 1) * n],
            sorted_labels[lane],
            &buffers.selection[lane * n..(lane + 1) * n],
            &mut buffers.work,
            &mut gradient[lane * classes..(lane + 1) * classes],
            gradient_scale,
        );
    }
    Ok(())
}
