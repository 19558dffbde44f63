//! The relaxed sorting operators on their own (diffsort's `DiffSortNet`, difftopk's
//! `DiffTopkNet`), forward and vector-Jacobian product, allocation-free.
//!
//! Convention (spec section 0): `sorted = x · P`, `P[i, j]` (row-major, `p[i·n + j]`) is the weight
//! of input i at ascending output position j; `P_topk[i, r] = P[i, n−k+r]` (`p_topk[i·k + r]`),
//! column k−1 being rank 1. For a network the layer matrices are doubly stochastic, hence so is P.
//!
//! Costs: [`relaxed_sort`] O(n·C) time for P (one mass sweep per input row, C comparators),
//! O(C + n) scratch; [`relaxed_topk`] O(k·C) time and O(k·C + k·n) scratch (right-to-left
//! accumulation, spec section 3).

use crate::network::NetworkRef;
use crate::relaxation::with_sigmoid;
use crate::sweep::{backward_values, forward_values, mix_forward};
use crate::{Error, Real, Relaxation};

fn check_inputs<F: Real>(x: &[F], beta: F, relaxation: &Relaxation) -> Result<(), Error> {
    crate::loss::check_values(0, x)?;
    relaxation.validate_with(beta.as_f64())
}

/// `1 ≤ k ≤ n`, else [`Error::TopkLargerThanInputs`].
fn check_k(k: usize, n: usize) -> Result<(), Error> {
    if k == 0 || k > n {
        return Err(Error::TopkLargerThanInputs { k, inputs: n });
    }
    Ok(())
}

/// The forward value sweep every operator starts with: `values ← x` run through the network,
/// recording `[α, f', f'·(a − b)]` per comparator in `tape`.
fn record_forward<F: Real>(
    network: &NetworkRef<'_>,
    relaxation: Relaxation,
    beta: F,
    x: &[F],
    values: &mut [F],
    tape: &mut [F],
) {
    values.copy_from_slice(x);
    with_sigmoid!(relaxation, beta, |sigmoid| forward_values(
        sigmoid,
        network.comparators(),
        values,
        tape
    ));
}

/// Reals of scratch [`relaxed_sort`] and [`relaxed_sort_backward`] need.
pub fn relaxed_sort_scratch_len(network: &NetworkRef<'_>) -> usize {
    5 * network.comparators().len() + 2 * network.inputs()
}

/// Relaxed sort of one row: `sorted` (n) receives the relaxed values, `p` (n × n, when given) the
/// relaxed permutation matrix. `beta` is the steepness β.
pub fn relaxed_sort<F: Real>(
    network: &NetworkRef<'_>,
    relaxation: Relaxation,
    beta: F,
    x: &[F],
    sorted: &mut [F],
    p: Option<&mut [F]>,
    scratch: &mut [F],
) -> Result<(), Error> {
    let n = network.inputs();
    let comparators = network.comparators();
    Error::check_length("x", n, x.len())?;
    Error::check_length("sorted", n, sorted.len())?;
    check_inputs(x, beta, &relaxation)?;
    Error::check_scratch("reals", relaxed_sort_scratch_len(network), scratch.len())?;
    let tape = &mut scratch[..3 * comparators.len()];
    record_forward(network, relaxation, beta, x, sorted, tape);
    if let Some(p) = p {
        Error::check_length("P", n * n, p.len())?;
        for (i, row) in p.chunks_exact_mut(n).enumerate() {
            row.iter_mut().for_each(|v| *v = F::zero());
            row[i] = F::one();
            mix_forward(comparators, tape, row, None);
        }
    }
    Ok(())
}

/// VJP of [`relaxed_sort`]: adds `Σ_j ḡ_j ∂sorted_j/∂x + Σ_{i,j} Ḡ_ij ∂P_ij/∂x` to `grad_x`
/// for the adjoints `grad_sorted` (n) and `grad_p` (n × n), either of which may be absent.
/// Like every operator VJP of the crate (relaxed sort and top-k, NeuralSort, SoftSort) it
/// accumulates (`grad_x += Jᵀ ḡ`): zero `grad_x` first for the VJP alone. (The losses write
/// their gradients, and `softmax::softmax_backward` turns its adjoint into the result in
/// place.) Recomputes the forward sweep; O(n·C) time when `grad_p` is given, O(C) otherwise.
#[allow(clippy::too_many_arguments)]
pub fn relaxed_sort_backward<F: Real>(
    network: &NetworkRef<'_>,
    relaxation: Relaxation,
    beta: F,
    x: &[F],
    grad_sorted: Option<&[F]>,
    grad_p: Option<&[F]>,
    grad_x: &mut [F],
    scratch: &mut [F],
) -> Result<(), Error> {
    let n = network.inputs();
    let comparators = network.comparators();
    let count = comparators.len();
    Error::check_length("x", n, x.len())?;
    Error::check_length("grad_x", n, grad_x.len())?;
    check_inputs(x, beta, &relaxation)?;
    Error::check_scratch("reals", relaxed_sort_scratch_len(network), scratch.len())?;
    let (tape, rest) = scratch.split_at_mut(3 * count);
    let (alpha_bar, rest) = rest.split_at_mut(count);
    let (differences, rest) = rest.split_at_mut(count);
    let (mass, rest) = rest.split_at_mut(n);
    let adjoint = &mut rest[..n];
    // (the values themselves are not needed after the tape is recorded.)
    record_forward(network, relaxation, beta, x, adjoint, tape);
    alpha_bar.iter_mut().for_each(|a| *a = F::zero());
    if let Some(grad_p) = grad_p {
        Error::check_length("grad_P", n * n, grad_p.len())?;
        for (i, g_row) in grad_p.chunks_exact(n).enumerate() {
            if g_row.iter().all(|&g| g == F::zero()) {
                continue;
            }
            mass.iter_mut().for_each(|v| *v = F::zero());
            mass[i] = F::one();
            mix_forward(comparators, tape, mass, Some(differences));
            adjoint.copy_from_slice(g_row);
            mass_reverse(comparators, tape, differences, adjoint, alpha_bar);
        }
    }
    match grad_sorted {
        Some(g) => {
            Error::check_length("grad_sorted", n, g.len())?;
            adjoint.copy_from_slice(g);
        }
        None => adjoint.iter_mut().for_each(|g| *g = F::zero()),
    }
    backward_values(comparators, tape, alpha_bar, adjoint);
    for (g, &a) in grad_x.iter_mut().zip(adjoint.iter()) {
        *g += a;
    }
    Ok(())
}

/// Reverse sweep of a mass row: accumulates `ᾱ_c += (v_a − v_b)(h̄_min − h̄_max)` and pulls the
/// adjoint `h` back through the comparators.
fn mass_reverse<F: Real>(
    comparators: &[crate::Comparator],
    tape: &[F],
    differences: &[F],
    h: &mut [F],
    alpha_bar: &mut [F],
) {
    for (index, c) in comparators.iter().enumerate().rev() {
        let alpha = tape[3 * index];
        let beta = F::one() - alpha;
        let (hmin, hmax) = (h[c.out_min as usize], h[c.out_max as usize]);
        alpha_bar[index] += differences[index] * (hmin - hmax);
        h[c.wire_a as usize] = alpha * hmin + beta * hmax;
        h[c.wire_b as usize] = beta * hmin + alpha * hmax;
    }
}

/// Reals of scratch [`relaxed_topk`] and [`relaxed_topk_backward`] need for top `k`.
pub fn relaxed_topk_scratch_len(network: &NetworkRef<'_>, k: usize) -> usize {
    let count = network.comparators().len();
    4 * count + k * count + k * network.inputs()
}

/// Right-to-left accumulation `P_topk = L_1 ⋯ L_D E_k` given the recorded α's; with
/// `differences`, records `P_l[o_min, :] − P_l[o_max, :]` (k values) per comparator.
fn accumulate_topk<F: Real>(
    comparators: &[crate::Comparator],
    tape: &[F],
    k: usize,
    p_topk: &mut [F],
    mut differences: Option<&mut [F]>,
) {
    let n = p_topk.len() / k;
    p_topk.iter_mut().for_each(|v| *v = F::zero());
    for r in 0..k {
        p_topk[(n - k + r) * k + r] = F::one();
    }
    for (index, c) in comparators.iter().enumerate().rev() {
        let alpha = tape[3 * index];
        let beta = F::one() - alpha;
        let (omin, omax) = (c.out_min as usize * k, c.out_max as usize * k);
        let (wa, wb) = (c.wire_a as usize * k, c.wire_b as usize * k);
        for r in 0..k {
            let (low, high) = (p_topk[omin + r], p_topk[omax + r]);
            if let Some(d) = differences.as_deref_mut() {
                d[index * k + r] = low - high;
            }
            p_topk[wa + r] = alpha * low + beta * high;
            p_topk[wb + r] = beta * low + alpha * high;
        }
    }
}

/// The relaxed top-k matrix of one row (`DiffTopkNet`): `p_topk` (n × k) receives
/// `P_topk = P[:, n−k..]`. For a splitter-selection network built for (n, k) this is its own
/// (shallower) relaxation, not the last columns of a full sort's P.
pub fn relaxed_topk<F: Real>(
    network: &NetworkRef<'_>,
    relaxation: Relaxation,
    beta: F,
    k: usize,
    x: &[F],
    p_topk: &mut [F],
    scratch: &mut [F],
) -> Result<(), Error> {
    let n = network.inputs();
    let comparators = network.comparators();
    Error::check_length("x", n, x.len())?;
    check_k(k, n)?;
    Error::check_length("P_topk", n * k, p_topk.len())?;
    check_inputs(x, beta, &relaxation)?;
    Error::check_scratch("reals", relaxed_topk_scratch_len(network, k), scratch.len())?;
    let (tape, rest) = scratch.split_at_mut(3 * comparators.len());
    let values = &mut rest[..n];
    record_forward(network, relaxation, beta, x, values, tape);
    accumulate_topk(comparators, tape, k, p_topk, None);
    Ok(())
}

/// VJP of [`relaxed_topk`]: adds `Σ_{i,r} Ḡ[i,r] ∂P_topk[i,r]/∂x` to `grad_x` (accumulates,
/// as every operator VJP of the crate) for the adjoint `grad_p_topk` (n × k). ᾱ of a
/// comparator is `Σ_r (H[w_a,r] − H[w_b,r])(P[o_min,r] − P[o_max,r])` with H the adjoint
/// pushed left to right through the layers' transposes.
#[allow(clippy::too_many_arguments)]
pub fn relaxed_topk_backward<F: Real>(
    network: &NetworkRef<'_>,
    relaxation: Relaxation,
    beta: F,
    k: usize,
    x: &[F],
    grad_p_topk: &[F],
    grad_x: &mut [F],
    scratch: &mut [F],
) -> Result<(), Error> {
    let n = network.inputs();
    let comparators = network.comparators();
    let count = comparators.len();
    Error::check_length("x", n, x.len())?;
    Error::check_length("grad_x", n, grad_x.len())?;
    check_k(k, n)?;
    Error::check_length("grad_P_topk", n * k, grad_p_topk.len())?;
    check_inputs(x, beta, &relaxation)?;
    Error::check_scratch("reals", relaxed_topk_scratch_len(network, k), scratch.len())?;
    let (tape, rest) = scratch.split_at_mut(3 * count);
    let (alpha_bar, rest) = rest.split_at_mut(count);
    let (differences, rest) = rest.split_at_mut(count * k);
    let adjoint = &mut rest[..n * k];
    // (the values themselves are not needed after the tape is recorded.)
    record_forward(network, relaxation, beta, x, &mut adjoint[..n], tape);
    // Forward P_topk again to record the differences (the result itself lands in `adjoint`
    // and is overwritten next).
    accumulate_topk(comparators, tape, k, adjoint, Some(differences));
    adjoint.copy_from_slice(grad_p_topk);
    for (index, c) in comparators.iter().enumerate() {
        let alpha = tape[3 * index];
        let beta = F::one() - alpha;
        let (wa, wb) = (c.wire_a as usize * k, c.wire_b as usize * k);
        let (omin, omax) = (c.out_min as usize * k, c.out_max as usize * k);
        let mut sum = F::zero();
        for r in 0..k {
            let (ha, hb) = (adjoint[wa + r], adjoint[wb + r]);
            sum += (ha - hb) * differences[index * k + r];
            adjoint[omin + r] = alpha * ha + beta * hb;
            adjoint[omax + r] = beta * ha + alpha * hb;
        }
        alpha_bar[index] = sum;
    }
    let values_adjoint = &mut adjoint[..n];
    values_adjoint.iter_mut().for_each(|g| *g = F::zero());
    backward_values(comparators, tape, alpha_bar, values_adjoint);
    for (g, &a) in grad_x.iter_mut().zip(values_adjoint.iter()) {
        *g += a;
    }
    Ok(())
}
