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

use crate::config::Family;
use crate::network::Comparator;
use crate::relaxation::Sigmoid;
use crate::Real;

/// Rows processed together.
pub const LANES: usize = 8;

/// One value per lane.
pub type Lanes<F> = [F; LANES];

/// The per-rank arrays of a group of rows hold `R` ranks: this many where K (= len(P_K)) fits,
/// else [`crate::MAX_K`] (the lanes' code is compiled for both). They are zeroed for every
/// group: sized by `MAX_K` (64) for every K they had cost 6 KB (f32) to 10 KB (f64) of `memset`
/// a group, more than the gradient rows themselves at n = 100.
const FEW_RANKS: usize = 16;

/// [`crate::sweep::forward_with_mass`] on [`LANES`] rows: values `x` and mass `v` (one entry
/// per wire), recording `[α, f', f'·(a − b), f'·(v_a − v_b)]` per comparator in `tape`
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
        let (mut sloped_difference, mut sloped_mass_difference) =
            ([F::zero(); LANES], [F::zero(); LANES]);
        for lane in 0..LANES {
            let beta = F::one() - alpha[lane];
            x_min[lane] = alpha[lane] * a[lane] + beta * b[lane];
            x_max[lane] = beta * a[lane] + alpha[lane] * b[lane];
            v_min[lane] = alpha[lane] * va[lane] + beta * vb[lane];
            v_max[lane] = beta * va[lane] + alpha[lane] * vb[lane];
            sloped_difference[lane] = slope[lane] * (a[lane] - b[lane]);
            sloped_mass_difference[lane] = slope[lane] * (va[lane] - vb[lane]);
        }
        x[omin] = x_min;
        x[omax] = x_max;
        v[omin] = v_min;
        v[omax] = v_max;
        record[0] = alpha;
        record[1] = slope;
        record[2] = sloped_difference;
        record[3] = sloped_mass_difference;
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
        let (alpha, slope, sloped_difference, sloped_mass_difference) =
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
            let through = sloped_difference[lane] * (gmin[lane] - gmax[lane])
                + sloped_mass_difference[lane] * (hmin[lane] - hmax[lane]);
            let through_alpha = crate::sweep::through_alpha(slope[lane], through);
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

/// Working memory for [`loss_lanes`] (n′ sorted inputs, C comparators, K ranks).
#[derive(Debug)]
pub(crate) struct LaneBuffers<F> {
    x: alloc::vec::Vec<Lanes<F>>,
    v: alloc::vec::Vec<Lanes<F>>,
    tape: alloc::vec::Vec<Lanes<F>>,
    selection: alloc::vec::Vec<u32>,
    selected: alloc::vec::Vec<F>,
    selected_lanes: alloc::vec::Vec<Lanes<F>>,
    probability_lanes: alloc::vec::Vec<Lanes<F>>,
    /// NeuralSort / SoftSort: the K relaxed rows, `rows[ρ·n′ + i]`.
    rows: alloc::vec::Vec<Lanes<F>>,
    /// NeuralSort: c, then c̄.
    deviations: alloc::vec::Vec<Lanes<F>>,
    /// SoftSort: the exponentials of the top K − 1 scores about every centre,
    /// `own_exponentials[a·K + ρ]`.
    own_exponentials: alloc::vec::Vec<Lanes<F>>,
    /// NeuralSort: the sorted order and running sums of c and c̄.
    order: OrderLanes<F>,
    /// NeuralSort: the chained rows' weights `e^((s − s_max)·2β)` in sorted order, and
    /// per row its factor (`neuralsort::chain_factor`).
    chain_weights: alloc::vec::Vec<Lanes<F>>,
    chain_factors: alloc::vec::Vec<Lanes<F>>,
    /// NeuralSort: per row the shift of its arguments (see `neuralsort_rows_lanes`).
    chain_shifts: alloc::vec::Vec<Lanes<F>>,
    work: alloc::vec::Vec<F>,
    /// With m: the scaled gradient of each row's selected logits, `gradient_rows[r·n′ + i]`.
    gradient_rows: alloc::vec::Vec<F>,
    /// With m: the selection's guess for the next block of eight rows (see
    /// `select::SelectionHint`).
    selection_hint: crate::select::SelectionHint,
}

impl<F: Real> LaneBuffers<F> {
    /// Buffers for `inputs` sorted inputs, `comparators` comparators (networks) and
    /// `relaxed_rows` = K relaxed rows (NeuralSort, SoftSort; 0 for networks).
    pub(crate) fn new(inputs: usize, comparators: usize, relaxed_rows: usize) -> Self {
        use alloc::vec;
        LaneBuffers {
            x: vec![[F::zero(); LANES]; inputs],
            v: vec![[F::zero(); LANES]; inputs],
            tape: vec![[F::zero(); LANES]; 4 * comparators],
            selection: vec![0; LANES * inputs],
            selected: vec![F::zero(); LANES * inputs],
            selected_lanes: vec![[F::zero(); LANES]; inputs],
            probability_lanes: vec![[F::zero(); LANES]; inputs],
            rows: vec![[F::zero(); LANES]; relaxed_rows * inputs],
            deviations: vec![[F::zero(); LANES]; if relaxed_rows > 0 { inputs } else { 0 }],
            own_exponentials: vec![[F::zero(); LANES]; relaxed_rows * relaxed_rows],
            order: OrderLanes::new(if relaxed_rows > 0 { inputs } else { 0 }),
            chain_weights: vec![[F::zero(); LANES]; if relaxed_rows > 0 { inputs } else { 0 }],
            chain_factors: vec![[F::zero(); LANES]; relaxed_rows],
            chain_shifts: vec![[F::zero(); LANES]; relaxed_rows],
            work: vec![F::zero(); inputs],
            gradient_rows: vec![F::zero(); LANES * inputs],
            selection_hint: crate::select::SelectionHint::NONE,
        }
    }
}

/// Whether [`loss_lanes`] handles `config` (every network; NeuralSort up to
/// [`crate::neuralsort::DIRECT_MAX`] sorted inputs, where its order is counted over all pairs;
/// SoftSort always).
pub(crate) fn lanes_support(config: &crate::TopkLossConfig) -> bool {
    match config.method().family() {
        Family::SortingNetwork | Family::SoftSort => true,
        Family::NeuralSort => config.sorted_inputs() <= crate::neuralsort::DIRECT_MAX,
    }
}

/// The loss of up to [`LANES`] rows, the rows side by side: the same steps as
/// [`crate::loss::sample_loss`] (which see), bit-identical per row. `logits` holds
/// `labels.len()` rows; row `r` is reported as `first_row + r` in errors. `comparators` is the
/// network (empty for NeuralSort and SoftSort).
#[allow(clippy::too_many_arguments)]
pub(crate) fn loss_lanes<F: Real>(
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
    let group = Group {
        config,
        comparators,
        first_row,
        logits,
        labels,
        gradient,
        gradient_scale,
        losses,
    };
    if config.k() <= FEW_RANKS {
        loss_lanes_with::<F, FEW_RANKS>(group, buffers)
    } else {
        loss_lanes_with::<F, { crate::MAX_K }>(group, buffers)
    }
}

/// The arguments of [`loss_lanes`] for one group of rows, passed on as one value.
struct Group<'a, F> {
    config: &'a crate::TopkLossConfig,
    comparators: &'a [Comparator],
    first_row: usize,
    logits: &'a [F],
    labels: &'a [usize],
    gradient: Option<&'a mut [F]>,
    gradient_scale: F,
    losses: &'a mut [F],
}

/// [`loss_lanes`] with per-rank arrays of `R ≥ K` ranks.
#[inline(always)]
fn loss_lanes_with<F: Real, const R: usize>(
    group: Group<'_, F>,
    buffers: &mut LaneBuffers<F>,
) -> Result<(), crate::Error> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { loss_lanes_avx2::<F, R>(group, buffers) };
        }
    }
    loss_lanes_body::<F, R>(group, buffers)
}

/// [`loss_lanes_body`] compiled for AVX2 (8 f32 or 4 f64 lanes per instruction). Rust never
/// contracts `a·b + c` into FMA, so the results are bit-identical to the baseline build.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn loss_lanes_avx2<F: Real, const R: usize>(
    group: Group<'_, F>,
    buffers: &mut LaneBuffers<F>,
) -> Result<(), crate::Error> {
    loss_lanes_body::<F, R>(group, buffers)
}

#[inline(always)]
fn loss_lanes_body<F: Real, const R: usize>(
    group: Group<'_, F>,
    buffers: &mut LaneBuffers<F>,
) -> Result<(), crate::Error> {
    let Group {
        config,
        comparators,
        first_row,
        logits,
        labels,
        gradient,
        gradient_scale,
        losses,
    } = group;
    use crate::loss::{check_and_preselect, write_gradient};
    let classes = config.classes();
    // (`loss_lanes` picks R ≥ K.)
    let (n, k) = (config.sorted_inputs(), config.k());
    let rows = labels.len();
    let family = config.method().family();
    // 1. Checks and preselection, row by row; the selected logits side by side.
    let mut sorted_labels = [0usize; LANES];
    buffers.selection_hint.refresh();
    for (lane, &label) in labels.iter().enumerate() {
        let row_logits = &logits[lane * classes..(lane + 1) * classes];
        sorted_labels[lane] = check_and_preselect(
            config,
            first_row + lane,
            row_logits,
            label,
            &mut buffers.selection[lane * n..(lane + 1) * n],
            &mut buffers.selected[lane * n..(lane + 1) * n],
            &mut buffers.selection_hint,
            lane + 1 == labels.len(),
        )?;
    }
    if !into_lanes(&buffers.selected, n, rows, &mut buffers.selected_lanes[..n]) {
        for wire in 0..n {
            for lane in 0..LANES {
                // Lanes past the last row run on zeros and are ignored.
                let value = if lane < rows {
                    buffers.selected[lane * n + wire]
                } else {
                    F::zero()
                };
                buffers.selected_lanes[wire][lane] = value;
            }
        }
    }
    // 2. The label's mass at the top K ranks: `mass[ρ][lane]`.
    let beta = F::of(config.inverse_temperature());
    let mut mass = [[F::zero(); LANES]; R];
    let mut top = [[0u32; LANES]; R];
    match family {
        Family::SortingNetwork => {
            for wire in 0..n {
                for lane in 0..LANES {
                    let one = lane < rows && wire == sorted_labels[lane];
                    buffers.x[wire][lane] = buffers.selected_lanes[wire][lane];
                    buffers.v[wire][lane] = if one { F::one() } else { F::zero() };
                }
            }
            let tape = &mut buffers.tape[..4 * comparators.len()];
            crate::relaxation::with_sigmoid!(config.relaxation(), beta, |sigmoid| {
                forward_with_mass_lanes(sigmoid, comparators, &mut buffers.x, &mut buffers.v, tape)
            });
            for (rank, m) in mass.iter_mut().take(k).enumerate() {
                *m = buffers.v[n - 1 - rank];
            }
        }
        Family::SoftSort => {
            let preselected = config.preselection().is_some();
            softsort_rows_lanes(buffers, n, k, beta, rows, &mut top, preselected);
            gather_label_mass(&buffers.rows, n, k, &sorted_labels, rows, &mut mass);
        }
        Family::NeuralSort => {
            // The rows are in each lane's ascending order: the label at its position there.
            let preselected = config.preselection().is_some();
            neuralsort_rows_lanes(buffers, n, k, beta, rows, preselected);
            let positions = buffers.order.positions_of(&sorted_labels);
            gather_label_mass(&buffers.rows, n, k, &positions, rows, &mut mass);
        }
    }
    // 3.–4. The top-1 softmax, the mixture, clamp and log.
    let q_adjoints = top1_and_mixture_lanes(config, buffers, &mass, &sorted_labels, rows, losses);
    let Some(gradient) = gradient else {
        return Ok(());
    };
    // Backward into buffers.x (the adjoints of the selected logits).
    let mut mass_adjoint = [[F::zero(); LANES]; R];
    for (rank, adjoint) in mass_adjoint.iter_mut().take(k).enumerate() {
        let weight = F::of(config.rank_weight(rank));
        for lane in 0..rows {
            adjoint[lane] = q_adjoints[lane] * weight;
        }
    }
    match family {
        Family::SortingNetwork => {
            // Reuse x, v as the adjoints ḡ, h̄.
            let (gx, gv) = (&mut buffers.x, &mut buffers.v);
            gx.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
            gv.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
            for rank in 0..k {
                gv[n - 1 - rank] = mass_adjoint[rank];
            }
            backward_with_mass_lanes(comparators, &buffers.tape[..4 * comparators.len()], gx, gv);
        }
        Family::SoftSort => softsort_backward_lanes(
            buffers,
            n,
            k,
            beta,
            rows,
            &top,
            &sorted_labels,
            &mass_adjoint,
        ),
        Family::NeuralSort => {
            let positions = buffers.order.positions_of(&sorted_labels);
            neuralsort_backward_lanes(buffers, n, k, beta, &positions, &mass_adjoint)
        }
    }
    // As `loss::finish_gradient` per lane: the top-1 term, then `scale · x` into the rows.
    top1_gradient_lanes(
        config,
        &q_adjoints,
        &buffers.probability_lanes[..n],
        &sorted_labels,
        rows,
        &mut buffers.x[..n],
    );
    let direct = config.preselection().is_none()
        && out_of_lanes(&buffers.x[..n], rows, gradient_scale, gradient, classes);
    // With m, a full group's scaled adjoints come out of the lanes by transposes into one
    // contiguous row each, then are scattered through the selection (as `write_gradient`:
    // zeros, then `scale · x` at the selected classes; the same products).
    let transposed = !direct
        && config.preselection().is_some()
        && out_of_lanes(
            &buffers.x[..n],
            rows,
            gradient_scale,
            &mut buffers.gradient_rows,
            n,
        );
    if transposed {
        // The group's rows are contiguous: one fill for all of them.
        gradient[..rows * classes]
            .iter_mut()
            .for_each(|g| *g = F::zero());
        for (lane, row_gradient) in gradient.chunks_exact_mut(classes).take(rows).enumerate() {
            let selection = &buffers.selection[lane * n..(lane + 1) * n];
            let scaled = &buffers.gradient_rows[lane * n..(lane + 1) * n];
            for (&class, &value) in selection.iter().zip(scaled) {
                row_gradient[class as usize] = value;
            }
        }
    } else if !direct {
        for lane in 0..rows {
            for (wire, w) in buffers.work.iter_mut().enumerate() {
                *w = buffers.x[wire][lane];
            }
            write_gradient(
                config,
                &buffers.selection[lane * n..(lane + 1) * n],
                &buffers.work,
                &mut gradient[lane * classes..(lane + 1) * classes],
                gradient_scale,
            );
        }
    }
    Ok(())
}

/// One wire of lanes as `f32` where `F` is `f32` (the AVX2 kernels' operands), else `None`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn f32_lane<F: Real>(values: &Lanes<F>) -> Option<[f32; LANES]> {
    F::as_f32_lanes(core::slice::from_ref(values)).map(|lanes| lanes[0])
}

/// A scalar for the AVX2 kernels, called where `F` is `f32` (the widening and narrowing are
/// then exact).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn as_f32<F: Real>(value: F) -> f32 {
    value.as_f64() as f32
}

/// `lanes[w][r] = source[r·n + w]` for a full group of f32 rows with AVX2
/// (`transpose_avx2::into_lanes`); `false` (nothing done) otherwise.
#[inline(always)]
fn into_lanes<F: Real>(source: &[F], n: usize, rows: usize, lanes: &mut [Lanes<F>]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(source), Some(lanes)) = (F::as_f32_slice(source), F::as_f32_lanes_mut(lanes)) {
        if rows == LANES && crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::transpose_avx2::into_lanes(&source[..LANES * n], n, lanes) };
            return true;
        }
    }
    let _ = (source, n, rows, lanes);
    false
}

/// `gradient[r·classes + w] = lanes[w][r] · scale` for a full group of f32 rows with AVX2
/// (`transpose_avx2::out_of_lanes`); `false` (nothing done) otherwise.
#[inline(always)]
fn out_of_lanes<F: Real>(
    lanes: &[Lanes<F>],
    rows: usize,
    scale: F,
    gradient: &mut [F],
    classes: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(lanes), Some(gradient)) = (F::as_f32_lanes(lanes), F::as_f32_slice_mut(gradient)) {
        if rows == LANES && crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::transpose_avx2::out_of_lanes(lanes, as_f32(scale), gradient, classes) };
            return true;
        }
    }
    let _ = (lanes, rows, scale, gradient, classes);
    false
}

/// The top-1 mode's term of the gradient for every lane, as `loss::finish_gradient` adds it per
/// row: `sm` adds `f·(δ_{i,label} − p_i)` with `f = (q̄·P_K[1])·p_label`, `smce` adds
/// `P_K[1]·(p_i − δ_{i,label})`, `sort` nothing (lanes past `rows` get a zero factor).
#[inline(always)]
fn top1_gradient_lanes<F: Real>(
    config: &crate::TopkLossConfig,
    q_adjoints: &Lanes<F>,
    probabilities: &[Lanes<F>],
    sorted_labels: &[usize; LANES],
    rows: usize,
    x: &mut [Lanes<F>],
) {
    let p_first = F::of(config.topk_distribution()[0]);
    let labels = label_lanes(sorted_labels);
    match config.top1_mode() {
        crate::Top1Mode::Softmax => {
            let mut factor = [F::zero(); LANES];
            for lane in 0..rows {
                factor[lane] =
                    q_adjoints[lane] * p_first * probabilities[sorted_labels[lane]][lane];
            }
            if !top1_step_avx2::<F, false>(probabilities, &labels, &factor, x) {
                for (wire, (g, p)) in x.iter_mut().zip(probabilities).enumerate() {
                    *g = softmax_top1_term(wire, g, p, &labels, &factor);
                }
            }
        }
        crate::Top1Mode::SoftmaxCrossEntropy => {
            if !top1_step_avx2::<F, true>(probabilities, &labels, &[p_first; LANES], x) {
                for (wire, (g, p)) in x.iter_mut().zip(probabilities).enumerate() {
                    *g = cross_entropy_top1_term(wire, g, p, &labels, p_first);
                }
            }
        }
        crate::Top1Mode::Sort => {}
    }
}

/// The top-1 term over all wires with the AVX2 kernel (`adjoint_avx2::top1_step`, the same
/// bits as [`softmax_top1_term`] and [`cross_entropy_top1_term`]) where `F` is `f32` and the
/// CPU has AVX2: the portable wire loops were vectorised across wires, with a transpose of
/// every operand. `false` (nothing done) otherwise.
#[inline(always)]
fn top1_step_avx2<F: Real, const CROSS_ENTROPY: bool>(
    probabilities: &[Lanes<F>],
    labels: &[u32; LANES],
    factor: &Lanes<F>,
    x: &mut [Lanes<F>],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(probabilities), Some(factor), Some(x)) = (
        F::as_f32_lanes(probabilities),
        f32_lane(factor),
        F::as_f32_lanes_mut(x),
    ) {
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe {
                crate::adjoint_avx2::top1_step::<CROSS_ENTROPY>(probabilities, labels, &factor, x)
            };
            return true;
        }
    }
    let _ = (probabilities, labels, factor, x);
    false
}

/// `g + f·(δ − p)` for one wire of every lane (a function of its own, see
/// [`shifted_exponentials`]).
#[inline(always)]
fn softmax_top1_term<F: Real>(
    wire: usize,
    g: &Lanes<F>,
    p: &Lanes<F>,
    labels: &[u32; LANES],
    factor: &Lanes<F>,
) -> Lanes<F> {
    let mut out = *g;
    for lane in 0..LANES {
        let delta = if wire as u32 == labels[lane] {
            F::one()
        } else {
            F::zero()
        };
        out[lane] += factor[lane] * (delta - p[lane]);
    }
    out
}

/// `g + P_K[1]·(p − δ)` for one wire of every lane.
#[inline(always)]
fn cross_entropy_top1_term<F: Real>(
    wire: usize,
    g: &Lanes<F>,
    p: &Lanes<F>,
    labels: &[u32; LANES],
    p_first: F,
) -> Lanes<F> {
    let mut out = *g;
    for lane in 0..LANES {
        let delta = if wire as u32 == labels[lane] {
            F::one()
        } else {
            F::zero()
        };
        out[lane] += p_first * (p[lane] - delta);
    }
    out
}

/// `mass[ρ][lane] = rows[ρ·n + label(lane)][lane]`.
#[inline(always)]
fn gather_label_mass<F: Real, const R: usize>(
    relaxed_rows: &[Lanes<F>],
    n: usize,
    k: usize,
    sorted_labels: &[usize; LANES],
    rows: usize,
    mass: &mut [Lanes<F>; R],
) {
    for (rank, m) in mass.iter_mut().take(k).enumerate() {
        for lane in 0..rows {
            m[lane] = relaxed_rows[rank * n + sorted_labels[lane]][lane];
        }
    }
}

/// The top-1 softmax of the selected logits (per lane the operations of `softmax::softmax` in
/// its order), then per row `q = Σ_ρ w_ρ mass_ρ` and [`crate::loss::mixture_finish`]; writes the
/// losses (the probabilities stay in `probability_lanes` for [`top1_gradient_lanes`]); returns
/// ∂loss/∂q.
#[inline(always)]
fn top1_and_mixture_lanes<F: Real, const R: usize>(
    config: &crate::TopkLossConfig,
    buffers: &mut LaneBuffers<F>,
    mass: &[Lanes<F>; R],
    sorted_labels: &[usize; LANES],
    rows: usize,
    losses: &mut [F],
) -> Lanes<F> {
    let k = config.k();
    let mode = config.top1_mode();
    let (selected, probabilities) = (&buffers.selected_lanes, &mut buffers.probability_lanes);
    let mut maximum = selected[0];
    let mut sum = [F::zero(); LANES];
    if mode != crate::Top1Mode::Sort {
        maximum = lane_maxima(selected);
        if !shifted_exponentials_avx2(selected, &maximum, probabilities) {
            for (p, values) in probabilities.iter_mut().zip(selected.iter()) {
                *p = shifted_exponentials(values, &maximum);
            }
        }
        sum = normalise_lanes(probabilities);
    }
    let mut q_adjoints = [F::zero(); LANES];
    // q = Σ_ρ w_ρ mass_ρ, summed in rank order per lane as `loss::mixture` does.
    let mut q = [F::zero(); LANES];
    for (rank, m) in mass.iter().take(k).enumerate() {
        let weight = F::of(config.rank_weight(rank));
        for lane in 0..LANES {
            q[lane] += weight * m[lane];
        }
    }
    // `loss::mixture_finish` per lane, in two halves around the logarithms, which the eight
    // lanes take together (`Real::ln_lanes`: the bits of `Real::loss_ln`).
    let mut clamped = [F::zero(); LANES];
    let mut label_logits = [F::zero(); LANES];
    for lane in 0..LANES {
        let label = sorted_labels[lane];
        let label_probability = if mode == crate::Top1Mode::Softmax {
            probabilities[label][lane]
        } else {
            F::zero()
        };
        clamped[lane] = crate::loss::mixture_clamped(config, q[lane], label_probability);
        label_logits[lane] = selected[label][lane];
    }
    let mut log_partition = [F::zero(); LANES];
    if mode == crate::Top1Mode::SoftmaxCrossEntropy {
        let mut log_sums = sum;
        F::ln_lanes(&mut log_sums);
        for lane in 0..LANES {
            log_partition[lane] = maximum[lane] + log_sums[lane];
        }
    }
    let mut log_clamped = clamped;
    F::ln_lanes(&mut log_clamped);
    for lane in 0..rows {
        let (loss, q_adjoint) = crate::loss::mixture_from_log(
            config,
            clamped[lane],
            log_clamped[lane],
            log_partition[lane],
            label_logits[lane],
        );
        losses[lane] = loss;
        q_adjoints[lane] = q_adjoint;
    }
    q_adjoints
}

/// SoftSort's rows for every lane (as `softsort::softsort_rows`): the K largest selected logits
/// of each row (ties to the higher index; by a merge where they are `preselected`) into
/// `top[ρ][lane]`, then `rows[ρ·n + i] = softmax_i(−β |s_i − s_(ρ)|)` from shared
/// exponentials, sum, scaling.
#[inline(always)]
fn softsort_rows_lanes<F: Real, const R: usize>(
    buffers: &mut LaneBuffers<F>,
    n: usize,
    k: usize,
    beta: F,
    rows: usize,
    top: &mut [[u32; LANES]; R],
    preselected: bool,
) {
    if !(preselected && preselected_tops_lanes(&buffers.selected_lanes[..n], k, rows, top)) {
        let mut indices = [0u32; R];
        for lane in 0..rows {
            let values = &buffers.selected[lane * n..(lane + 1) * n];
            if preselected {
                crate::select::largest_indices_ties_high_of_preselected(values, &mut indices[..k]);
            } else {
                crate::select::largest_indices_ties_high_unchecked(values, None, &mut indices[..k]);
            }
            for rank in 0..k {
                top[rank][lane] = indices[rank];
            }
        }
    }
    // As `softsort::softsort_rows`: row k−1 (centre L, the lowest) holds the shared
    // exponentials, every other row their products with its factor e^(−β|s_(ρ) − L|).
    let selected = &buffers.selected_lanes;
    // The centres s_(ρ) of every lane, gathered once (each is read in k + 1 places below).
    let mut centers = [[F::zero(); LANES]; R];
    for (center, rank_top) in centers.iter_mut().zip(top.iter()).take(k) {
        for lane in 0..LANES {
            center[lane] = selected[rank_top[lane] as usize][lane];
        }
    }
    let lowest = centers[k - 1];
    let (upper, last) = buffers.rows[..k * n].split_at_mut((k - 1) * n);
    if !distance_exponentials_avx2(selected, &lowest, beta, last) {
        for (r, values) in last.iter_mut().zip(selected.iter()) {
            *r = softsort_exponentials(values, &lowest, beta);
        }
    }
    // own[a][ρ] = e^(−β|s_(a) − s_(ρ)|) for the scores above L (a < K − 1) and every centre:
    // symmetric (s − c and c − s are exact negations, so both orders give the same bits), and
    // for ρ = K − 1 it is row a's factor: with the factors (K − 1)(K + 2)/2 exponentials
    // instead of (K − 1)(K + 1), 14 instead of 24 for K = 5.
    let own = &mut buffers.own_exponentials[..k * k];
    for above in 0..k - 1 {
        own[above * k + k - 1] = softsort_exponentials(&centers[above], &lowest, beta);
        for rank in above..k - 1 {
            let exponentials = softsort_exponentials(&centers[above], &centers[rank], beta);
            own[above * k + rank] = exponentials;
            own[rank * k + above] = exponentials;
        }
    }
    for (rank, row) in upper.chunks_exact_mut(n).enumerate() {
        let factor = own[rank * k + k - 1];
        let mut threshold = [F::zero(); LANES];
        for lane in 0..LANES {
            threshold[lane] = F::MIN_POSITIVE / factor[lane];
        }
        for (r, shared) in row.iter_mut().zip(last.iter()) {
            *r = shared_products(shared, &factor, &threshold);
        }
    }
    // The scores above L, with their own exponentials in every row.
    for (above, own) in own.chunks_exact(k).enumerate().take(k - 1) {
        let values = centers[above];
        for (rank, own) in own.iter().enumerate() {
            for lane in 0..rows {
                if values[lane] > lowest[lane] {
                    buffers.rows[rank * n + top[above][lane] as usize][lane] = own[lane];
                }
            }
        }
    }
    for rank in 0..k {
        normalise_lanes(&mut buffers.rows[rank * n..(rank + 1) * n]);
    }
}

/// The K largest of preselected rows (wire 0 the label's logit, wires 1.. descending) in
/// every lane at once, as `select::largest_indices_ties_high_of_preselected` writes them where
/// the first K + 1 listed values of every used lane are strictly decreasing: the label's wire
/// goes at p = #{1 ≤ i ≤ K: s_i ≥ s_label}, the list's first K in order around it. `false`
/// (and `top` unspecified) where some used lane has a tie there: the per-row merge then runs.
#[inline(always)]
fn preselected_tops_lanes<F: Real, const R: usize>(
    selected: &[Lanes<F>],
    k: usize,
    rows: usize,
    top: &mut [[u32; LANES]; R],
) -> bool {
    let listed = (k + 2).min(selected.len());
    if !strictly_decreasing_lanes(&selected[1..listed], rows) {
        return false;
    }
    let mut at_or_above = [0u32; LANES];
    for values in &selected[1..(k + 1).min(selected.len())] {
        for lane in 0..LANES {
            at_or_above[lane] += u32::from(values[lane] >= selected[0][lane]);
        }
    }
    for (position, slot) in top.iter_mut().take(k).enumerate() {
        let position = position as u32;
        for lane in 0..LANES {
            slot[lane] = if position < at_or_above[lane] {
                position + 1
            } else if position == at_or_above[lane] {
                0
            } else {
                position
            };
        }
    }
    true
}

/// Whether in each of the first `rows` lanes the wires' values strictly decrease (the
/// preselected list's order, without ties).
#[inline(always)]
fn strictly_decreasing_lanes<F: Real>(wires: &[Lanes<F>], rows: usize) -> bool {
    let mut decreasing = [true; LANES];
    for pair in wires.windows(2) {
        for lane in 0..LANES {
            decreasing[lane] &= pair[0][lane] > pair[1][lane];
        }
    }
    decreasing[..rows].iter().all(|&strict| strict)
}

/// `softsort::shared_product` per lane (a function of its own: written inline in the wire
/// loop, it stayed scalar).
#[inline(always)]
fn shared_products<F: Real>(
    shared: &Lanes<F>,
    factor: &Lanes<F>,
    threshold: &Lanes<F>,
) -> Lanes<F> {
    let mut out = [F::zero(); LANES];
    for lane in 0..LANES {
        out[lane] = crate::softsort::shared_product(shared[lane], factor[lane], threshold[lane]);
    }
    out
}

/// Per lane, the largest value over the wires. Four running maxima over interleaved wires,
/// then combined (one chain of compare-and-select ran at its latency); the value is the one
/// `softmax`'s scan in wire order finds, up to the sign of a zero maximum, which no use can
/// see: every use subtracts it before an exponential (e^(±0) = 1) or adds it to a logarithm.
#[inline(always)]
fn lane_maxima<F: Real>(wires: &[Lanes<F>]) -> Lanes<F> {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2() {
        if let Some(values) = F::as_f32_lanes(wires) {
            let mut maximum = [F::zero(); LANES];
            // SAFETY: the CPU supports AVX2, checked just above.
            let found = unsafe { crate::exp_avx2::lane_maxima(values) };
            if let Some(out) = F::as_f32_lanes_mut(core::slice::from_mut(&mut maximum)) {
                out[0] = found;
            }
            return maximum;
        }
    }
    let larger = |maximum: &mut Lanes<F>, values: &Lanes<F>| {
        for lane in 0..LANES {
            if values[lane] > maximum[lane] {
                maximum[lane] = values[lane];
            }
        }
    };
    let mut maxima = [wires[0]; 4];
    let mut blocks = wires.chunks_exact(4);
    for block in &mut blocks {
        for (maximum, values) in maxima.iter_mut().zip(block) {
            larger(maximum, values);
        }
    }
    for values in blocks.remainder() {
        larger(&mut maxima[0], values);
    }
    let [mut maximum, second, third, fourth] = maxima;
    for values in [second, third, fourth] {
        larger(&mut maximum, &values);
    }
    maximum
}

/// Per lane, divides the wires by their sum (summed in wire order, then one reciprocal and a
/// multiplication, as `softmax` does); returns the sums.
#[inline(always)]
fn normalise_lanes<F: Real>(wires: &mut [Lanes<F>]) -> Lanes<F> {
    let mut sum = [F::zero(); LANES];
    for values in wires.iter() {
        for lane in 0..LANES {
            sum[lane] += values[lane];
        }
    }
    let mut inverse = [F::zero(); LANES];
    for lane in 0..LANES {
        inverse[lane] = F::one() / sum[lane];
    }
    for values in wires.iter_mut() {
        for lane in 0..LANES {
            values[lane] *= inverse[lane];
        }
    }
    sum
}

/// [`shifted_exponentials`] over all wires (`out[w]` from `values[w]`) with the AVX-512 kernel
/// of [`crate::exp_avx512`] where `F` is `f32` and `cpu::prefers_avx512`, else the AVX2 kernel
/// of [`crate::exp_avx2`] where the CPU has AVX2 (the same bits either way); `false` (nothing
/// done) otherwise.
#[inline(always)]
fn shifted_exponentials_avx2<F: Real>(
    values: &[Lanes<F>],
    shift: &Lanes<F>,
    out: &mut [Lanes<F>],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(values), Some(shift), Some(out)) = (
        F::as_f32_lanes(values),
        f32_lane(shift),
        F::as_f32_lanes_mut(out),
    ) {
        if crate::cpu::prefers_avx512() {
            // SAFETY: the CPU supports AVX-512F and AVX2 (`prefers_avx512` implies both).
            unsafe { crate::exp_avx512::shifted_exponentials(values, &shift, out) };
            return true;
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::exp_avx2::shifted_exponentials(values, &shift, out) };
            return true;
        }
    }
    let _ = (values, shift, out);
    false
}

/// [`softsort_exponentials`] over all wires, as [`shifted_exponentials_avx2`].
#[inline(always)]
fn distance_exponentials_avx2<F: Real>(
    values: &[Lanes<F>],
    center: &Lanes<F>,
    beta: F,
    out: &mut [Lanes<F>],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(values), Some(center), Some(out)) = (
        F::as_f32_lanes(values),
        f32_lane(center),
        F::as_f32_lanes_mut(out),
    ) {
        if crate::cpu::prefers_avx512() {
            // SAFETY: the CPU supports AVX-512F and AVX2 (`prefers_avx512` implies both).
            unsafe { crate::exp_avx512::distance_exponentials(values, &center, as_f32(beta), out) };
            return true;
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::exp_avx2::distance_exponentials(values, &center, as_f32(beta), out) };
            return true;
        }
    }
    let _ = (values, center, beta, out);
    false
}

/// [`scaled_exponentials`] over all wires of `rows`, in place, as [`shifted_exponentials_avx2`].
#[inline(always)]
fn scaled_exponentials_avx2<F: Real>(rows: &mut [Lanes<F>], shift: &Lanes<F>, beta: F) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Some(shift), Some(rows)) = (f32_lane(shift), F::as_f32_lanes_mut(rows)) {
        if crate::cpu::prefers_avx512() {
            // SAFETY: the CPU supports AVX-512F and AVX2 (`prefers_avx512` implies both).
            unsafe { crate::exp_avx512::scaled_exponentials(rows, &shift, as_f32(beta)) };
            return true;
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::exp_avx2::scaled_exponentials(rows, &shift, as_f32(beta)) };
            return true;
        }
    }
    let _ = (rows, shift, beta);
    false
}

/// `exp(x − shift)` for one wire of every lane. (A function of its own: written inline in the
/// wire loops, the exponentials stayed scalar.)
#[inline(always)]
fn shifted_exponentials<F: Real>(values: &Lanes<F>, shift: &Lanes<F>) -> Lanes<F> {
    let mut out = [F::zero(); LANES];
    for lane in 0..LANES {
        out[lane] = (values[lane] - shift[lane]).exp();
    }
    out
}

/// `exp((x − shift)·β)` for one wire of every lane; +0 without the exponentials where all
/// eight are flushed (`Real::exp_flushes`: the same bits).
#[inline(always)]
fn scaled_exponentials<F: Real>(values: &Lanes<F>, shift: &Lanes<F>, beta: F) -> Lanes<F> {
    let mut arguments = [F::zero(); LANES];
    let mut flushed = true;
    for lane in 0..LANES {
        arguments[lane] = (values[lane] - shift[lane]) * beta;
        flushed &= arguments[lane].exp_flushes();
    }
    if flushed {
        return [F::zero(); LANES];
    }
    let mut out = [F::zero(); LANES];
    for lane in 0..LANES {
        out[lane] = arguments[lane].exp();
    }
    out
}

/// `exp(−β |s − center|)` for one wire of every lane.
#[inline(always)]
fn softsort_exponentials<F: Real>(values: &Lanes<F>, center: &Lanes<F>, beta: F) -> Lanes<F> {
    let mut out = [F::zero(); LANES];
    for lane in 0..LANES {
        out[lane] = (-beta * (values[lane] - center[lane]).abs()).exp();
    }
    out
}

/// NeuralSort's rows for every lane (as `neuralsort::neuralsort_rows`, which see), each
/// lane's wires in its ascending order (`buffers.order`): `rows[ρ·n + r] = softmax(β (z −
/// max z))` at sorted position r, `z = s (n − 1 − 2ρ) − c`, `c_i = Σ_l |s_i − s_l|`. Row
/// K−1's exponentials directly, rows K−2, …, 0 chained from the row below in the lanes whose
/// spread allows (`neuralsort::chain_reach`), directly in the others; then each row divided
/// by its sum. In sorted order a directly computed row's few entries that are not flushed sit
/// together: blocks of 8 lanes whose exponentials would all be flushed to +0 are set to +0
/// without them (the same bits).
#[inline(always)]
fn neuralsort_rows_lanes<F: Real>(
    buffers: &mut LaneBuffers<F>,
    n: usize,
    k: usize,
    beta: F,
    rows: usize,
    preselected: bool,
) {
    use crate::neuralsort::chain_reach;
    let selected = &buffers.selected_lanes[..n];
    if !(preselected && listed_order_lanes(selected, rows, &mut buffers.order)) {
        ascending_order_lanes(selected, rows, &mut buffers.order);
    }
    deviation_sums_lanes(&mut buffers.order, n, &mut buffers.deviations[..n]);
    let sorted = &buffers.order.values;
    let (smallest, largest) = (sorted[0], sorted[n - 1]);
    // Per lane, whether its rows K−2, …, 0 are chained (`direct[lane]` all bits where not).
    let mut direct = [0u32; LANES];
    let mut any_chained = false;
    for lane in 0..LANES {
        let chained = k > 1 && chain_reach(smallest[lane], largest[lane], beta) <= F::chain_limit();
        direct[lane] = if chained { 0 } else { u32::MAX };
        any_chained |= chained;
    }
    if any_chained {
        let weights = &mut buffers.chain_weights[..n];
        weights.copy_from_slice(&sorted[..n]);
        // `neuralsort::chain_weight`: e^((s − s_max)·2β).
        if !scaled_exponentials_avx2(weights, &largest, beta + beta) {
            for w in weights.iter_mut() {
                *w = scaled_exponentials(w, &largest, beta + beta);
            }
        }
    }
    // Per row its factor (all at once: their exponentials overlap) and its shift: each lane's
    // max z (as the one-row code: β z itself may overflow), or in a chained lane z at the
    // row's peak, the ρ-th largest score (sorted position n − 1 − ρ), where max z is.
    let any_direct = direct.iter().any(|&d| d != 0);
    let factors = &mut buffers.chain_factors[..k];
    let shifts = &mut buffers.chain_shifts[..k];
    for rank in (0..k).rev() {
        let chained_row = rank + 1 < k && any_chained;
        let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64);
        let row = &mut buffers.rows[rank * n..(rank + 1) * n];
        if !chained_row || any_direct {
            for ((r, s), c) in row.iter_mut().zip(sorted.iter()).zip(&buffers.deviations) {
                for lane in 0..LANES {
                    r[lane] = s[lane] * scale - c[lane];
                }
            }
            shifts[rank] = lane_maxima(row);
        }
        if !chained_row {
            if !scaled_exponentials_avx2(row, &shifts[rank], beta) {
                for r in row.iter_mut() {
                    *r = scaled_exponentials(r, &shifts[rank], beta);
                }
            }
            continue;
        }
        let (peak, deviation) = (&sorted[n - 1 - rank], &buffers.deviations[n - 1 - rank]);
        for lane in 0..LANES {
            if direct[lane] == 0 {
                shifts[rank][lane] = peak[lane] * scale - deviation[lane];
            }
        }
        factors[rank] = chain_factors(&sorted[n - 1 - rank], &sorted[n - 2 - rank], &largest, beta);
    }
    if any_chained {
        let chain = ChainOperands {
            weights: &buffers.chain_weights[..n],
            sorted: &buffers.order.values[..n],
            deviations: &buffers.deviations[..n],
            shifts: &buffers.chain_shifts[..k],
            factors: &buffers.chain_factors[..k],
            beta,
            direct,
        };
        let rows = &mut buffers.rows[..k * n];
        if !chained_rows_avx2(rows, n, k, &chain) {
            chained_rows(rows, n, k, &chain);
        }
    }
    for rank in 0..k {
        normalise_lanes(&mut buffers.rows[rank * n..(rank + 1) * n]);
    }
}

/// `neuralsort::chain_factor` for every lane. (A function of its own, so that the
/// exponentials vectorise.) Lanes outside the chain may give any value, even +∞: theirs is not
/// used.
#[inline(always)]
fn chain_factors<F: Real>(
    peak: &Lanes<F>,
    lower: &Lanes<F>,
    largest: &Lanes<F>,
    beta: F,
) -> Lanes<F> {
    let mut factor = [F::zero(); LANES];
    for lane in 0..LANES {
        factor[lane] =
            crate::neuralsort::chain_factor(peak[lane], lower[lane], largest[lane], beta);
    }
    factor
}

/// The operands of NeuralSort's chained rows (`neuralsort::chained_entry`), eight lanes per
/// wire in each lane's ascending order: the weights `e^((s − s_max)·2β)`, the sorted scores,
/// their `c`, and per row its shift (z at the row's peak, or the row's maximum in a direct
/// lane) and factor; for any `F` here, `f32` in the kernels (`exp_avx2::chained_rows`,
/// `exp_avx512::chained_rows`). All finite (the loss's logits are within ±`MAX_LOGIT`): the
/// kernels clamp the arguments at 0 in direct lanes too, which only a NaN would notice.
pub(crate) struct ChainOperands<'a, F> {
    /// `e^((s − s_max)·2β)` per wire.
    pub(crate) weights: &'a [Lanes<F>],
    /// The scores per wire, ascending.
    pub(crate) sorted: &'a [Lanes<F>],
    /// `c = Σ_l |s − s_l|` per wire.
    pub(crate) deviations: &'a [Lanes<F>],
    /// Per row, the shift of its arguments.
    pub(crate) shifts: &'a [Lanes<F>],
    /// Per row, `neuralsort::chain_factor`.
    pub(crate) factors: &'a [Lanes<F>],
    /// β.
    pub(crate) beta: F,
    /// Lanes (all bits) whose rows take their exponentials directly.
    pub(crate) direct: [u32; LANES],
}

/// Rows K−2, …, 0 of NeuralSort's chained rows in place (row K−1 already there,
/// unnormalised): per lane `neuralsort::chained_entry` of `neuralsort::chained_argument`, or
/// in a lane set in `direct`, `e^((z − shift)·β)` (the portable code of
/// `exp_avx2::chained_rows`).
#[inline(always)]
fn chained_rows<F: Real>(rows: &mut [Lanes<F>], n: usize, k: usize, chain: &ChainOperands<'_, F>) {
    use crate::neuralsort::{chained_argument, chained_entry};
    let beta = chain.beta;
    for rank in (0..k.saturating_sub(1)).rev() {
        let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64);
        let (shift, factor) = (&chain.shifts[rank], &chain.factors[rank]);
        let (row, next) = rows[rank * n..(rank + 2) * n].split_at_mut(n);
        for (wire, r) in row.iter_mut().enumerate() {
            let (score, deviation) = (&chain.sorted[wire], &chain.deviations[wire]);
            for lane in 0..LANES {
                let z = score[lane] * scale - deviation[lane];
                r[lane] = if chain.direct[lane] != 0 {
                    ((z - shift[lane]) * beta).exp()
                } else {
                    let argument = chained_argument(z, shift[lane], beta);
                    let weight = chain.weights[wire][lane];
                    chained_entry(argument, next[wire][lane], weight, factor[lane])
                };
            }
        }
    }
}

/// [`chained_rows`] by `exp_avx512::chained_rows` (where `cpu::prefers_avx512`) or
/// `exp_avx2::chained_rows` where `F` is `f32` and the CPU has AVX2 (the same bits); `false`
/// (nothing done) otherwise.
#[inline(always)]
fn chained_rows_avx2<F: Real>(
    rows: &mut [Lanes<F>],
    n: usize,
    k: usize,
    chain: &ChainOperands<'_, F>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (
        Some(rows),
        Some(weights),
        Some(sorted),
        Some(deviations),
        Some(shifts),
        Some(factors),
    ) = (
        F::as_f32_lanes_mut(rows),
        F::as_f32_lanes(chain.weights),
        F::as_f32_lanes(chain.sorted),
        F::as_f32_lanes(chain.deviations),
        F::as_f32_lanes(chain.shifts),
        F::as_f32_lanes(chain.factors),
    ) {
        let operands = ChainOperands {
            weights,
            sorted,
            deviations,
            shifts,
            factors,
            beta: as_f32(chain.beta),
            direct: chain.direct,
        };
        if crate::cpu::prefers_avx512() {
            // SAFETY: the CPU supports AVX-512F and AVX2 (`prefers_avx512` implies both);
            // the slices hold k·n, n and k wires (`chained_rows` checks).
            unsafe { crate::exp_avx512::chained_rows(rows, n, k, &operands) };
            return true;
        }
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above; the slices as above.
            unsafe { crate::exp_avx2::chained_rows(rows, n, k, &operands) };
            return true;
        }
    }
    let _ = (rows, n, k, chain);
    false
}

/// [`ascending_order_lanes`]'s order for preselected rows (wire 0 the label's logit, wires
/// 1.. its list of the largest, descending) where every used lane's list is strictly
/// decreasing: then the ranks follow from the label's place alone. With `d_i` the listed
/// values and `s_0` the label's, wire i ≥ 1 has rank `(n − 1 − i) + [s_0 ≤ d_i]` (the listed
/// values after it are all smaller, those before all larger; the label, before it, counts
/// where `≤`) and the label rank `p = #{i ≥ 1: d_i < s_0}`; in ascending order position q
/// holds wire `n − 1 − q` below p, the label at p and wire `n − q` above. `false` (and `order`
/// unspecified) where some used lane's list is not strictly decreasing.
#[inline(always)]
fn listed_order_lanes<F: Real>(
    selected: &[Lanes<F>],
    rows: usize,
    order: &mut OrderLanes<F>,
) -> bool {
    let n = selected.len();
    if n < 2 {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::has_avx2() {
        if let (Some(values), Some(sorted)) = (
            F::as_f32_lanes(selected),
            F::as_f32_lanes_mut(&mut order.values[..n]),
        ) {
            let used = (1i32 << rows) - 1;
            // SAFETY: the CPU supports AVX2, checked just above.
            let listed = unsafe {
                crate::rank_avx2::listed_order(
                    values,
                    used,
                    &mut order.ranks,
                    &mut order.wires,
                    sorted,
                )
            };
            return match listed {
                Some(any_tie) => {
                    order.any_tie = any_tie;
                    true
                }
                None => false,
            };
        }
    }
    if !strictly_decreasing_lanes(&selected[1..n], rows) {
        return false;
    }
    let label = selected[0];
    let mut label_rank = [0u32; LANES];
    for (wire, listed) in selected.iter().enumerate().skip(1) {
        let mut rank = [0u32; LANES];
        for lane in 0..LANES {
            let at_or_above = label[lane] <= listed[lane];
            rank[lane] = (n - 1 - wire) as u32 + u32::from(at_or_above);
            label_rank[lane] += u32::from(!at_or_above);
        }
        order.ranks[wire] = rank;
    }
    order.ranks[0] = label_rank;
    for position in 0..n {
        let below = &selected[n - 1 - position];
        let above = &selected[n - position.max(1)];
        let (mut wires, mut values) = ([0u32; LANES], [F::zero(); LANES]);
        for lane in 0..LANES {
            let p = label_rank[lane] as usize;
            (wires[lane], values[lane]) = if position < p {
                ((n - 1 - position) as u32, below[lane])
            } else if position == p {
                (0, label[lane])
            } else {
                ((n - position) as u32, above[lane])
            };
        }
        order.wires[position] = wires;
        order.values[position] = values;
    }
    order.find_ties(n, rows);
    true
}

/// NeuralSort's order for every lane (as `neuralsort::ascending_order`): the rank of wire i
/// among the lane's values in ascending (value, wire) order, counted over all pairs (`≤` for
/// the wires before i, `<` for those after), then the wires and values in that order:
/// `order.wires[r][lane]`, `order.values[r][lane]`.
#[inline(always)]
fn ascending_order_lanes<F: Real>(selected: &[Lanes<F>], rows: usize, order: &mut OrderLanes<F>) {
    let n = selected.len();
    #[cfg(target_arch = "x86_64")]
    let counted = match F::as_f32_lanes(selected) {
        Some(values) if crate::cpu::has_avx2() => {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::rank_avx2::ranks(values, &mut order.ranks[..n]) };
            true
        }
        _ => false,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let counted = false;
    if !counted {
        for (i, score) in selected.iter().enumerate() {
            let mut rank = [0u32; LANES];
            for earlier in &selected[..i] {
                for lane in 0..LANES {
                    rank[lane] += u32::from(earlier[lane] <= score[lane]);
                }
            }
            for later in &selected[i + 1..] {
                for lane in 0..LANES {
                    rank[lane] += u32::from(later[lane] < score[lane]);
                }
            }
            order.ranks[i] = rank;
        }
    }
    for (wire, (rank, score)) in order.ranks[..n].iter().zip(selected).enumerate() {
        for lane in 0..LANES {
            let position = rank[lane] as usize;
            order.wires[position][lane] = wire as u32;
            order.values[position][lane] = score[lane];
        }
    }
    order.find_ties(n, rows);
}

/// The sorted order of every lane and the running sums over it (see [`deviation_sums_lanes`]).
#[derive(Debug)]
pub(crate) struct OrderLanes<F> {
    /// Per wire, its position in ascending order.
    ranks: alloc::vec::Vec<[u32; LANES]>,
    /// Per position, the wire there and its value.
    wires: alloc::vec::Vec<[u32; LANES]>,
    values: alloc::vec::Vec<Lanes<F>>,
    /// Running sums in sorted order (n + 1), per position the start of its tie group and the
    /// running sum there, and the terms summed (the scores less the smallest in the forward,
    /// the adjoints c̄ in the backward).
    running: alloc::vec::Vec<[f64; LANES]>,
    group_start: alloc::vec::Vec<[f64; LANES]>,
    group_below: alloc::vec::Vec<[f64; LANES]>,
    sorted_terms: alloc::vec::Vec<[f64; LANES]>,
    /// Whether some lane has equal values ([`OrderLanes::find_ties`]).
    any_tie: bool,
}

impl<F: Real> OrderLanes<F> {
    fn new(inputs: usize) -> Self {
        use alloc::vec;
        OrderLanes {
            ranks: vec![[0; LANES]; inputs],
            wires: vec![[0; LANES]; inputs],
            values: vec![[F::zero(); LANES]; inputs],
            running: vec![[0.0; LANES]; inputs + 1],
            group_start: vec![[0.0; LANES]; inputs],
            group_below: vec![[0.0; LANES]; inputs],
            sorted_terms: vec![[0.0; LANES]; inputs],
            any_tie: true,
        }
    }

    /// Whether any of the first `rows` lanes holds equal values (adjacent in sorted order);
    /// set by [`ascending_order_lanes`] and [`listed_order_lanes`]. Without ties every
    /// position is a tie group of its own and the running sums need no scans. (The padding
    /// lanes of a last partial group, all zeros, tie everywhere; their results are not used,
    /// so the scans may be skipped there.)
    #[inline(always)]
    fn find_ties(&mut self, n: usize, rows: usize) {
        let mut tied = [false; LANES];
        for (lower, upper) in self.values[..n].iter().zip(&self.values[1..n]) {
            for lane in 0..LANES {
                tied[lane] |= lower[lane] == upper[lane];
            }
        }
        self.any_tie = tied[..rows].iter().any(|&tie| tie);
    }

    /// From `sorted_terms` (n, in sorted order): `running` (n + 1) and, where there are ties,
    /// per position the start of its tie group and the running sum there (`group_start`,
    /// `group_below`).
    #[inline(always)]
    fn running_sums(&mut self, n: usize) {
        let mut running = [0.0f64; LANES];
        for (sum, term) in self.running[..n].iter_mut().zip(&self.sorted_terms[..n]) {
            *sum = running;
            for lane in 0..LANES {
                running[lane] += term[lane];
            }
        }
        self.running[n] = running;
        if !self.any_tie {
            return;
        }
        self.group_start[0] = [0.0; LANES];
        self.group_below[0] = [0.0; LANES];
        for r in 1..n {
            for lane in 0..LANES {
                let tie = self.values[r][lane] == self.values[r - 1][lane];
                self.group_start[r][lane] = if tie {
                    self.group_start[r - 1][lane]
                } else {
                    r as f64
                };
                self.group_below[r][lane] = if tie {
                    self.group_below[r - 1][lane]
                } else {
                    self.running[r][lane]
                };
            }
        }
    }

    /// Per lane, the sorted position of wire `wires[lane]`.
    #[inline(always)]
    fn positions_of(&self, wires: &[usize; LANES]) -> [usize; LANES] {
        let mut positions = [0; LANES];
        for lane in 0..LANES {
            positions[lane] = self.ranks[wires[lane]][lane] as usize;
        }
        positions
    }

    /// For a walk from the last position down: at position `r`, per lane, the end of its tie
    /// group (`end`, starting at n) and the running sum there (`upto`, starting at the total).
    /// (A method, not a visitor closure: closures do not take the caller's AVX2 and stayed
    /// separate scalar functions.)
    #[inline(always)]
    fn step_down(&self, r: usize, n: usize, end: &mut [f64; LANES], upto: &mut [f64; LANES]) {
        if r + 1 < n {
            for lane in 0..LANES {
                let tie = self.values[r + 1][lane] == self.values[r][lane];
                end[lane] = if tie { end[lane] } else { (r + 1) as f64 };
                upto[lane] = if tie {
                    upto[lane]
                } else {
                    self.running[r + 1][lane]
                };
            }
        }
    }
}

/// `c_i = Σ_l |s_i − s_l|` for every wire of every lane, as `neuralsort::absolute_deviation_sums`
/// per lane, bit for bit: the values less the lane's smallest, running sums in sorted order,
/// `neuralsort::deviation_at` per position; `c` in sorted order.
#[inline(always)]
fn deviation_sums_lanes<F: Real>(order: &mut OrderLanes<F>, n: usize, c: &mut [Lanes<F>]) {
    #[cfg(target_arch = "x86_64")]
    if !order.any_tie && crate::cpu::has_avx2() {
        if let (Some(sorted), Some(c)) =
            (F::as_f32_lanes(&order.values[..n]), F::as_f32_lanes_mut(c))
        {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { crate::deviation_avx2::deviation_sums(sorted, &mut order.running, c) };
            return;
        }
    }
    let mut pivot = [0.0f64; LANES];
    for lane in 0..LANES {
        pivot[lane] = order.values[0][lane].as_f64();
    }
    for r in 0..n {
        for lane in 0..LANES {
            order.sorted_terms[r][lane] = order.values[r][lane].as_f64() - pivot[lane];
        }
    }
    order.running_sums(n);
    let total = order.running[n];
    let count = n as f64;
    if !order.any_tie {
        // Each position its own group: it starts at r, ends at r + 1.
        for r in 0..n {
            for lane in 0..LANES {
                let sum = crate::neuralsort::deviation_at(
                    order.sorted_terms[r][lane],
                    r as f64,
                    order.running[r][lane],
                    total[lane],
                    order.running[r + 1][lane],
                    count - (r + 1) as f64,
                );
                c[r][lane] = F::of(sum);
            }
        }
        return;
    }
    let (mut end, mut upto) = ([count; LANES], total);
    for r in (0..n).rev() {
        order.step_down(r, n, &mut end, &mut upto);
        for lane in 0..LANES {
            let sum = crate::neuralsort::deviation_at(
                order.sorted_terms[r][lane],
                order.group_start[r][lane],
                order.group_below[r][lane],
                total[lane],
                upto[lane],
                count - end[lane],
            );
            c[r][lane] = F::of(sum);
        }
    }
}

/// SoftSort's backward into `buffers.x` (as `softsort::softsort_rows_backward`): per relaxed
/// row the softmax adjoint `a_i = P̂[ρ,i] (δ_{i,label} ā_ρ − d)`, `d = 0 + P̂[ρ,label] ā_ρ` (see
/// [`neuralsort_backward_lanes`]), used as it is made: `d_i = a_i β sign(s_i − s_(ρ))`,
/// `ḡ_i −= d_i`, the centre's adjoint `+= d_i`. Bit-identical to the one-row code.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn softsort_backward_lanes<F: Real, const R: usize>(
    buffers: &mut LaneBuffers<F>,
    n: usize,
    k: usize,
    beta: F,
    rows: usize,
    top: &[[u32; LANES]; R],
    sorted_labels: &[usize; LANES],
    mass_adjoint: &[Lanes<F>; R],
) {
    let gx = &mut buffers.x;
    gx.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
    let selected = &buffers.selected_lanes;
    let labels = label_lanes(sorted_labels);
    for rank in 0..k {
        let row = &buffers.rows[rank * n..(rank + 1) * n];
        let adjoint = &mass_adjoint[rank];
        let dot = one_hot_dot(row, sorted_labels, adjoint, n);
        let mut center = [F::zero(); LANES];
        for lane in 0..LANES {
            center[lane] = selected[top[rank][lane] as usize][lane];
        }
        let mut center_bar = [F::zero(); LANES];
        #[cfg(target_arch = "x86_64")]
        let stepped = match (
            F::as_f32_lanes(row),
            F::as_f32_lanes(&selected[..n]),
            F::as_f32_lanes_mut(&mut gx[..n]),
            f32_lane(adjoint),
            f32_lane(&dot),
            f32_lane(&center),
        ) {
            (Some(row), Some(scores), Some(gradient), Some(adjoint), Some(dot), Some(center))
                if crate::cpu::has_avx2() =>
            {
                // SAFETY: the CPU supports AVX2, checked just above.
                Some(unsafe {
                    crate::adjoint_avx2::softsort_adjoint_step(
                        row,
                        scores,
                        &labels,
                        &adjoint,
                        &dot,
                        &center,
                        as_f32(beta),
                        gradient,
                    )
                })
            }
            _ => None,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let stepped: Option<[f32; LANES]> = None;
        if let (Some(sum), Some(out)) = (
            stepped,
            F::as_f32_lanes_mut(core::slice::from_mut(&mut center_bar)),
        ) {
            out[0] = sum;
        }
        let stepped = stepped.is_some();
        for (wire, ((g, p), s)) in gx
            .iter_mut()
            .zip(row.iter())
            .zip(selected.iter())
            .enumerate()
            .filter(|_| !stepped)
        {
            let d = softsort_adjoint_term(wire, p, s, &center, &labels, adjoint, &dot, beta);
            for lane in 0..LANES {
                g[lane] -= d[lane];
                center_bar[lane] += d[lane];
            }
        }
        for lane in 0..rows {
            gx[top[rank][lane] as usize][lane] += center_bar[lane];
        }
    }
}

/// `a_i β sign(s_i − s_(ρ))` for wire i of every lane, `a_i = P̂[ρ,i] (δ_{i,label} ā − d)`
/// (a function of its own: written inline in the wire loop, it stayed scalar).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn softsort_adjoint_term<F: Real>(
    wire: usize,
    p: &Lanes<F>,
    s: &Lanes<F>,
    center: &Lanes<F>,
    labels: &[u32; LANES],
    adjoint: &Lanes<F>,
    dot: &Lanes<F>,
    beta: F,
) -> Lanes<F> {
    let a = softmax_adjoint_term::<F, false>(wire, p, labels, adjoint, dot, &[F::zero(); LANES]);
    let mut out = [F::zero(); LANES];
    for lane in 0..LANES {
        let difference = s[lane] - center[lane];
        let negative = if difference < F::zero() {
            -F::one()
        } else {
            F::zero()
        };
        let sign = if difference > F::zero() {
            F::one()
        } else {
            negative
        };
        out[lane] = a[lane] * beta * sign;
    }
    out
}

/// `P̂[ρ,i] (δ_{i,label} ā − d)` for wire i of every lane: the adjoint of a relaxed row's
/// softmax logits under the one-hot adjoint ā at the label (d from [`one_hot_dot`]); with
/// `FLUSH` (NeuralSort) by `softmax::softmax_backward_flushed`'s rule (P̂[ρ,i] taken as 0 off the
/// label where it is below `threshold`, from [`flush_thresholds`]).
#[inline(always)]
fn softmax_adjoint_term<F: Real, const FLUSH: bool>(
    wire: usize,
    p: &Lanes<F>,
    labels: &[u32; LANES],
    adjoint: &Lanes<F>,
    dot: &Lanes<F>,
    threshold: &Lanes<F>,
) -> Lanes<F> {
    let mut a = [F::zero(); LANES];
    for lane in 0..LANES {
        let one_hot = if wire as u32 == labels[lane] {
            adjoint[lane]
        } else {
            F::zero()
        };
        let kept = if FLUSH {
            crate::softmax::kept_probability(p[lane], one_hot, threshold[lane])
        } else {
            p[lane]
        };
        a[lane] = kept * (one_hot - dot[lane]);
    }
    a
}

/// `softmax::flush_threshold` per lane.
#[inline(always)]
fn flush_thresholds<F: Real>(dot: &Lanes<F>) -> Lanes<F> {
    let mut threshold = [F::zero(); LANES];
    for lane in 0..LANES {
        threshold[lane] = crate::softmax::flush_threshold(dot[lane]);
    }
    threshold
}

/// The label wires as 32-bit lanes (compared with the wire index as one vector compare).
#[inline(always)]
fn label_lanes(sorted_labels: &[usize; LANES]) -> [u32; LANES] {
    let mut labels = [0u32; LANES];
    for (label, &sorted) in labels.iter_mut().zip(sorted_labels) {
        *label = sorted as u32;
    }
    labels
}

/// `0 + P̂[ρ,label] ā_ρ` per lane: the softmax backward's dot product `Σ_j P̂[ρ,j] a_j` over
/// the one-hot adjoint, as the one-row code sums it in column order (every other term is +0).
#[inline(always)]
fn one_hot_dot<F: Real>(
    row: &[Lanes<F>],
    sorted_labels: &[usize; LANES],
    adjoint: &Lanes<F>,
    n: usize,
) -> Lanes<F> {
    let mut dot = [F::zero(); LANES];
    for lane in 0..LANES {
        dot[lane] = F::zero() + row[sorted_labels[lane].min(n - 1)][lane] * adjoint[lane];
    }
    dot
}

/// NeuralSort's backward into `buffers.x` (as `neuralsort::neuralsort_rows_backward`).
///
/// Per relaxed row ρ the adjoint of its softmax logits is `a_i = P̂[ρ,i] (δ_{i,label} ā_ρ − d)`
/// with `d = 0 + P̂[ρ,label] ā_ρ` (the one-row code's dot product over a one-hot adjoint, summed
/// in column order: every other term is +0, so the sum is that product, or +0 for −0); it is
/// used as it is made (`ḡ_i += a_i β scale_ρ`, `c̄_i −= a_i β`; for f32 with AVX2 by
/// `adjoint_avx2::neuralsort_adjoint_step`), never stored. The VJP of c then comes from the
/// forward's order ([`signed_adjoint_sums_lanes`]). Bit-identical to the one-row code.
#[inline(always)]
fn neuralsort_backward_lanes<F: Real, const R: usize>(
    buffers: &mut LaneBuffers<F>,
    n: usize,
    k: usize,
    beta: F,
    label_positions: &[usize; LANES],
    mass_adjoint: &[Lanes<F>; R],
) {
    // ḡ and c̄ in sorted order (as the rows), ḡ in `v` (unused by NeuralSort otherwise).
    let gx = &mut buffers.v;
    gx.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
    let c_bar = &mut buffers.deviations;
    c_bar.iter_mut().for_each(|w| *w = [F::zero(); LANES]);
    let labels = label_lanes(label_positions);
    for rank in 0..k {
        let row = &buffers.rows[rank * n..(rank + 1) * n];
        let adjoint = &mass_adjoint[rank];
        let dot = one_hot_dot(row, label_positions, adjoint, n);
        let threshold = flush_thresholds(&dot);
        let scale = F::of((n as f64) - 1.0 - 2.0 * rank as f64) * beta;
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::has_avx2() {
            if let (Some(row), Some(gx), Some(c_bar), Some(adjoint), Some(dot), Some(threshold)) = (
                F::as_f32_lanes(row),
                F::as_f32_lanes_mut(&mut gx[..n]),
                F::as_f32_lanes_mut(&mut c_bar[..n]),
                f32_lane(adjoint),
                f32_lane(&dot),
                f32_lane(&threshold),
            ) {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe {
                    crate::adjoint_avx2::neuralsort_adjoint_step(
                        row,
                        &labels,
                        &adjoint,
                        &dot,
                        &threshold,
                        as_f32(scale),
                        as_f32(beta),
                        gx,
                        c_bar,
                    )
                };
                continue;
            }
        }
        for (wire, ((g, cb), p)) in gx
            .iter_mut()
            .zip(c_bar.iter_mut())
            .zip(row.iter())
            .enumerate()
        {
            let a = softmax_adjoint_term::<F, true>(wire, p, &labels, adjoint, &dot, &threshold);
            for lane in 0..LANES {
                g[lane] += a[lane] * scale;
                cb[lane] -= a[lane] * beta;
            }
        }
    }
    signed_adjoint_sums_lanes(&mut buffers.order, n, &c_bar[..n], &mut gx[..n]);
    // Back to wire order, into `x`.
    for (sorted, wires) in gx[..n].iter().zip(&buffers.order.wires) {
        for lane in 0..LANES {
            buffers.x[wires[lane] as usize][lane] = sorted[lane];
        }
    }
}

/// `ḡ_i += Σ_l sign(s_i − s_l)(c̄_i + c̄_l)` (sign(0) = 0) for every wire of every lane, as
/// `neuralsort::absolute_deviation_sums_backward` per lane, bit for bit; `c_bar` and
/// `gradient` in the sorted order of the forward's [`ascending_order_lanes`].
#[inline(always)]
fn signed_adjoint_sums_lanes<F: Real>(
    order: &mut OrderLanes<F>,
    n: usize,
    c_bar: &[Lanes<F>],
    gradient: &mut [Lanes<F>],
) {
    #[cfg(target_arch = "x86_64")]
    if !order.any_tie && crate::cpu::has_avx2() {
        if let (Some(c_bar), Some(gradient)) =
            (F::as_f32_lanes(&c_bar[..n]), F::as_f32_lanes_mut(gradient))
        {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe {
                crate::deviation_avx2::signed_adjoint_sums(c_bar, &mut order.running, gradient)
            };
            return;
        }
    }
    for r in 0..n {
        for lane in 0..LANES {
            order.sorted_terms[r][lane] = c_bar[r][lane].as_f64();
        }
    }
    order.running_sums(n);
    let total = order.running[n];
    let count = n as f64;
    if !order.any_tie {
        for r in 0..n {
            for lane in 0..LANES {
                let term = crate::neuralsort::signed_adjoint_at(
                    order.sorted_terms[r][lane],
                    r as f64,
                    count - (r + 1) as f64,
                    order.running[r][lane],
                    total[lane],
                    order.running[r + 1][lane],
                );
                gradient[r][lane] += F::of(term);
            }
        }
        return;
    }
    let (mut end, mut upto) = ([count; LANES], total);
    for r in (0..n).rev() {
        order.step_down(r, n, &mut end, &mut upto);
        for lane in 0..LANES {
            let term = crate::neuralsort::signed_adjoint_at(
                order.sorted_terms[r][lane],
                order.group_start[r][lane],
                count - end[lane],
                order.group_below[r][lane],
                total[lane],
                upto[lane],
            );
            gradient[r][lane] += F::of(term);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The AVX2 and AVX-512 kernels of NeuralSort's chained rows give the portable code's
    /// bits ([`chained_rows`]), for odd and even n, with direct lanes, flushed arguments and
    /// entries back from a flush (a zero below an argument in the normal range) among them,
    /// and on rows where no entry needs its exponential (the first pass alone).
    #[test]
    fn chained_kernels_equal_the_portable_code() {
        #[cfg(target_arch = "x86_64")]
        {
            if !crate::cpu::has_avx2() {
                return;
            }
            let mut random = crate::test_random::Xorshift::new(0x2545_F491_4F6C_DD1D);
            let mut uniform = |low: f32, high: f32| low + (high - low) * random.uniform() as f32;
            let (mut restarted, mut flushed, mut direct_entries, mut cases) = (0, 0, 0, 0);
            // Rows where no entry needs its exponential (the kernels' first pass alone).
            let mut clean_rows = 0;
            for n in [1usize, 2, 3, 8, 15, 16, 17, 40] {
                for k in [2usize, 3, 5] {
                    for (beta, clean) in [(0.5f32, false), (4.0, false), (30.0, false), (0.1, true)]
                    {
                        let lanes =
                            |values: &mut dyn FnMut() -> f32, wires: usize| -> Vec<Lanes<f32>> {
                                (0..wires)
                                    .map(|_| core::array::from_fn(|_| values()))
                                    .collect()
                            };
                        let sorted = lanes(&mut || uniform(-3.0, 3.0), n);
                        let deviations = lanes(&mut || uniform(0.0, 20.0), n);
                        // Clean rows: weights and factors near 1, no zeros below, no direct
                        // lane, arguments far from the flush.
                        let low_weight = if clean { 0.5 } else { 1e-6 };
                        let weights = lanes(&mut || uniform(low_weight, 1.0), n);
                        let high_factor = if clean { 2.0 } else { 1e10 };
                        let factors = lanes(&mut || uniform(1.0, high_factor), k);
                        let mut direct = [0u32; LANES];
                        for d in direct.iter_mut() {
                            *d = if !clean && uniform(0.0, 1.0) < 0.25 {
                                u32::MAX
                            } else {
                                0
                            };
                        }
                        let mut shifts = alloc::vec![[0.0f32; LANES]; k];
                        for (rank, shift) in shifts.iter_mut().enumerate() {
                            let scale = ((n as f64) - 1.0 - 2.0 * rank as f64) as f32;
                            for lane in 0..LANES {
                                let largest = (0..n)
                                    .map(|w| sorted[w][lane] * scale - deviations[w][lane])
                                    .fold(f32::MIN, f32::max);
                                // Direct lanes shift by the maximum; chained ones by about it.
                                shift[lane] = largest
                                    + if direct[lane] != 0 {
                                        0.0
                                    } else {
                                        uniform(-2.0, 2.0)
                                    };
                            }
                        }
                        let mut rows = alloc::vec![[0.0f32; LANES]; k * n];
                        for value in rows[(k - 1) * n..].iter_mut().flatten() {
                            *value = if clean {
                                uniform(0.5, 1.0)
                            } else if uniform(0.0, 1.0) < 0.3 {
                                0.0
                            } else {
                                uniform(1.0, 2.0) * 2f32.powi(-(uniform(0.0, 125.0) as i32))
                            };
                        }
                        let chain = ChainOperands {
                            weights: &weights,
                            sorted: &sorted,
                            deviations: &deviations,
                            shifts: &shifts,
                            factors: &factors,
                            beta,
                            direct,
                        };
                        let mut expected = rows.clone();
                        chained_rows(&mut expected, n, k, &chain);
                        for rank in 0..k - 1 {
                            let before = restarted + direct_entries;
                            let scale = ((n as f64) - 1.0 - 2.0 * rank as f64) as f32;
                            for wire in 0..n {
                                for lane in 0..LANES {
                                    let z = sorted[wire][lane] * scale - deviations[wire][lane];
                                    let argument = crate::neuralsort::chained_argument(
                                        z,
                                        shifts[rank][lane],
                                        beta,
                                    );
                                    let below = expected[(rank + 1) * n + wire][lane];
                                    if direct[lane] != 0 {
                                        direct_entries += 1;
                                    } else if argument.exp_flushes() {
                                        flushed += 1;
                                    } else if below == 0.0 {
                                        restarted += 1;
                                    }
                                }
                            }
                            clean_rows += usize::from(restarted + direct_entries == before);
                        }
                        let mut kernels: Vec<(&str, Vec<Lanes<f32>>)> = Vec::new();
                        let mut actual = rows.clone();
                        // SAFETY: the CPU supports AVX2, checked above; sizes as required.
                        unsafe { crate::exp_avx2::chained_rows(&mut actual, n, k, &chain) };
                        kernels.push(("AVX2", actual));
                        if crate::cpu::has_avx512f() {
                            let mut actual = rows.clone();
                            // SAFETY: the CPU supports AVX-512F (and AVX2); sizes as above.
                            unsafe { crate::exp_avx512::chained_rows(&mut actual, n, k, &chain) };
                            kernels.push(("AVX-512", actual));
                        }
                        for (name, actual) in &kernels {
                            for (index, (a, e)) in actual.iter().zip(&expected).enumerate() {
                                for lane in 0..LANES {
                                    assert_eq!(
                                        a[lane].to_bits(),
                                        e[lane].to_bits(),
                                        "{name}: n {n}, k {k}, β {beta}, wire {index}, lane {lane}"
                                    );
                                }
                            }
                        }
                        cases += 1;
                    }
                }
            }
            assert_eq!(cases, 96);
            assert!(
                restarted > 200 && flushed > 200 && direct_entries > 200 && clean_rows > 20,
                "restarted {restarted}, flushed {flushed}, direct {direct_entries}, clean rows {clean_rows}"
            );
        }
    }

    /// NeuralSort's adjoint terms in lanes (with the flush) equal the one-row
    /// `softmax_backward_flushed` under the same one-hot adjoint, lane by lane, bit for bit, on
    /// rows whose products do underflow.
    #[test]
    fn flushed_adjoint_terms_equal_the_one_row_code() {
        let mut random = crate::test_random::Xorshift::new(0x9E37_79B9_7F4A_7C15);
        let mut flushed = 0;
        for n in [1usize, 2, 7, 40, 100] {
            let mut row = alloc::vec![[0.0f32; LANES]; n];
            for wire in row.iter_mut() {
                for value in wire.iter_mut() {
                    let bits = random.next_u64();
                    *value = (1.0 + (bits >> 41) as f32 / (1u64 << 23) as f32)
                        * 2f32.powi(-((bits % 126) as i32));
                }
            }
            let mut sorted_labels = [0usize; LANES];
            let mut adjoint = [0.0f32; LANES];
            for lane in 0..LANES {
                sorted_labels[lane] = (lane * 13 + n) % n;
                adjoint[lane] = [-1.0, -1e-25, 0.0, 3.0][lane % 4];
            }
            let labels = label_lanes(&sorted_labels);
            let dot = one_hot_dot(&row, &sorted_labels, &adjoint, n);
            let threshold = flush_thresholds(&dot);
            let terms: Vec<Lanes<f32>> = (0..n)
                .map(|wire| {
                    softmax_adjoint_term::<f32, true>(
                        wire, &row[wire], &labels, &adjoint, &dot, &threshold,
                    )
                })
                .collect();
            for lane in 0..LANES {
                let probabilities: Vec<f32> = row.iter().map(|w| w[lane]).collect();
                let mut expected = alloc::vec![0.0f32; n];
                expected[sorted_labels[lane]] = adjoint[lane];
                let mut unflushed = expected.clone();
                crate::softmax::softmax_backward_flushed(&probabilities, &mut expected);
                crate::softmax::softmax_backward_unchecked(&probabilities, &mut unflushed);
                for wire in 0..n {
                    assert_eq!(
                        terms[wire][lane].to_bits(),
                        expected[wire].to_bits(),
                        "n {n}, wire {wire}, lane {lane}"
                    );
                    flushed += usize::from(expected[wire].to_bits() != unflushed[wire].to_bits());
                }
            }
        }
        assert!(flushed > 50, "only {flushed} terms flushed");
    }
}
