//! Forward and reverse sweeps of values (and one row of P, the "mass") through a network.
//!
//! Data flow (spec section 12): the forward sweep runs the values x and the mass v = e_yᵀ·L₁…L_ℓ
//! of one input y through the comparators, recording per comparator the four numbers the
//! reverse sweep needs: `[α, f', f'·(a − b), f'·(v_a − v_b)]` with f' = f'(b − a). The reverse
//! sweep is the vector-Jacobian product: with adjoints ḡ (values) and h̄ (mass) of the two
//! outputs, `ā = α ḡ_min + (1−α) ḡ_max`, `b̄ = (1−α) ḡ_min + α ḡ_max` (same for the mass), and
//! `ᾱ = (a − b)(ḡ_min − ḡ_max) + (v_a − v_b)(h̄_min − h̄_max)`; α = f(b − a) adds `−f'ᾱ` to ā and
//! `+f'ᾱ` to b̄, computed as `(f'·(a − b))(ḡ_min − ḡ_max) + (f'·(v_a − v_b))(h̄_min − h̄_max)`:
//! the slope goes in first, so that where it is tiny and the logit difference huge (logistic_phi
//! with λ > 1 at logits of 10²⁰) no intermediate overflows.

use crate::network::Comparator;
use crate::relaxation::Sigmoid;
use crate::Real;

/// Reals recorded per comparator by [`forward_with_mass`].
pub(crate) const TAPE_PER_COMPARATOR: usize = 4;

/// Runs values `x` and mass `v` through `comparators` in place, recording the tape
/// (`tape.len() ≥ 4 · comparators.len()`).
#[inline]
pub(crate) fn forward_with_mass<F: Real, S: Sigmoid<F>>(
    sigmoid: S,
    comparators: &[Comparator],
    x: &mut [F],
    v: &mut [F],
    tape: &mut [F],
) {
    for (c, record) in comparators
        .iter()
        .zip(tape.chunks_exact_mut(TAPE_PER_COMPARATOR))
    {
        let (wa, wb) = (c.wire_a as usize, c.wire_b as usize);
        let (a, b) = (x[wa], x[wb]);
        let (va, vb) = (v[wa], v[wb]);
        let (alpha, slope) = sigmoid.alpha_and_slope(b - a);
        let beta = F::one() - alpha;
        let (omin, omax) = (c.out_min as usize, c.out_max as usize);
        x[omin] = alpha * a + beta * b;
        x[omax] = beta * a + alpha * b;
        v[omin] = alpha * va + beta * vb;
        v[omax] = beta * va + alpha * vb;
        record[0] = alpha;
        record[1] = slope;
        record[2] = slope * (a - b);
        record[3] = slope * (va - vb);
    }
}

/// The reverse sweep matching [`forward_with_mass`]: on entry `gx`, `gv` hold the adjoints of the
/// final values and mass, on exit those of the inputs (the mass input is a constant; its adjoint
/// is discarded by the caller).
#[inline]
pub(crate) fn backward_with_mass<F: Real>(
    comparators: &[Comparator],
    tape: &[F],
    gx: &mut [F],
    gv: &mut [F],
) {
    for (c, record) in comparators
        .iter()
        .zip(tape.chunks_exact(TAPE_PER_COMPARATOR))
        .rev()
    {
        let (alpha, slope, sloped_difference, sloped_mass_difference) =
            (record[0], record[1], record[2], record[3]);
        let beta = F::one() - alpha;
        let (omin, omax) = (c.out_min as usize, c.out_max as usize);
        let (gmin, gmax) = (gx[omin], gx[omax]);
        let (hmin, hmax) = (gv[omin], gv[omax]);
        let through_alpha = through_alpha(
            slope,
            sloped_difference * (gmin - gmax) + sloped_mass_difference * (hmin - hmax),
        );
        let (wa, wb) = (c.wire_a as usize, c.wire_b as usize);
        gx[wa] = alpha * gmin + beta * gmax - through_alpha;
        gx[wb] = beta * gmin + alpha * gmax + through_alpha;
        gv[wa] = alpha * hmin + beta * hmax;
        gv[wb] = beta * hmin + alpha * hmax;
    }
}

/// `f'·ᾱ`, the adjoint reaching a comparator's inputs through α, given as `through` (the sum of
/// the slope-weighted products, see the module docs); 0 where the comparator is saturated
/// (`f' = 0`): there a product may have overflowed in `f32` (adjoints of 10⁹ at a steep tie
/// elsewhere), and 0·∞ would make the whole gradient NaN; everywhere else `through` itself
/// (only the sign of a zero term differs: +0 where the products gave ±0).
#[inline(always)]
pub(crate) fn through_alpha<F: Real>(slope: F, through: F) -> F {
    if slope == F::zero() {
        F::zero()
    } else {
        through
    }
}

/// Runs values only, recording `[α, f', f'·(a − b)]` per comparator (`tape.len() ≥ 3·C`).
#[inline]
pub(crate) fn forward_values<F: Real, S: Sigmoid<F>>(
    sigmoid: S,
    comparators: &[Comparator],
    x: &mut [F],
    tape: &mut [F],
) {
    for (c, record) in comparators.iter().zip(tape.chunks_exact_mut(3)) {
        let (wa, wb) = (c.wire_a as usize, c.wire_b as usize);
        let (a, b) = (x[wa], x[wb]);
        let (alpha, slope) = sigmoid.alpha_and_slope(b - a);
        let beta = F::one() - alpha;
        x[c.out_min as usize] = alpha * a + beta * b;
        x[c.out_max as usize] = beta * a + alpha * b;
        record[0] = alpha;
        record[1] = slope;
        record[2] = slope * (a - b);
    }
}

/// Reverse sweep of the values recorded by [`forward_values`], with an extra adjoint `extra[c]`
/// of each comparator's α (from an operator's P output) added to the values' own.
#[inline]
pub(crate) fn backward_values<F: Real>(
    comparators: &[Comparator],
    tape: &[F],
    extra_alpha_bar: &[F],
    gx: &mut [F],
) {
    for ((c, record), &extra) in comparators
        .iter()
        .zip(tape.chunks_exact(3))
        .zip(extra_alpha_bar)
        .rev()
    {
        let (alpha, slope, sloped_difference) = (record[0], record[1], record[2]);
        let beta = F::one() - alpha;
        let (gmin, gmax) = (gx[c.out_min as usize], gx[c.out_max as usize]);
        let through_alpha = through_alpha(slope, sloped_difference * (gmin - gmax) + slope * extra);
        gx[c.wire_a as usize] = alpha * gmin + beta * gmax - through_alpha;
        gx[c.wire_b as usize] = beta * gmin + alpha * gmax + through_alpha;
    }
}

/// Mixes a row-vector quantity (mass, or a forward-propagated adjoint) through the comparators
/// with recorded α's: `v'[o_min] = α v[w_a] + (1−α) v[w_b]`, `v'[o_max] = (1−α) v[w_a] + α v[w_b]`.
/// When `differences` is given it receives `v[w_a] − v[w_b]` per comparator.
#[inline]
pub(crate) fn mix_forward<F: Real>(
    comparators: &[Comparator],
    tape: &[F],
    v: &mut [F],
    mut differences: Option<&mut [F]>,
) {
    for (index, (c, record)) in comparators.iter().zip(tape.chunks_exact(3)).enumerate() {
        let alpha = record[0];
        let beta = F::one() - alpha;
        let (va, vb) = (v[c.wire_a as usize], v[c.wire_b as usize]);
        v[c.out_min as usize] = alpha * va + beta * vb;
        v[c.out_max as usize] = beta * va + alpha * vb;
        if let Some(d) = differences.as_deref_mut() {
            d[index] = va - vb;
        }
    }
}
