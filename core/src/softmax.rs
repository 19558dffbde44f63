//! Numerically stable softmax and its vector-Jacobian product, on slices.

use crate::Real;

/// `out_i = exp(z_i − max z) / Σ_j exp(z_j − max z)`; returns `(max z, Σ_j exp(z_j − max z))`
/// so that `log Σ exp z = max + ln(sum)`.
#[inline]
pub fn softmax<F: Real>(logits: &[F], out: &mut [F]) -> (F, F) {
    out.copy_from_slice(logits);
    softmax_in_place(out)
}

/// In place: `values ← softmax(values)`; returns `(max, Σ exp(z − max))` as [`softmax`].
#[inline]
pub fn softmax_in_place<F: Real>(values: &mut [F]) -> (F, F) {
    let mut maximum = values[0];
    for &z in &values[1..] {
        if z > maximum {
            maximum = z;
        }
    }
    let mut sum = F::zero();
    for z in values.iter_mut() {
        *z = (*z - maximum).exp();
    }
    for &z in values.iter() {
        sum += z;
    }
    let inverse = F::one() / sum;
    for z in values.iter_mut() {
        *z *= inverse;
    }
    (maximum, sum)
}

/// In place: `adjoint_i ← p_i (adjoint_i − Σ_j p_j adjoint_j)`, the VJP of softmax at output p.
#[inline]
pub fn softmax_backward<F: Real>(probabilities: &[F], adjoint: &mut [F]) {
    let mut dot = F::zero();
    for (&p, &g) in probabilities.iter().zip(adjoint.iter()) {
        dot += p * g;
    }
    for (g, &p) in adjoint.iter_mut().zip(probabilities) {
        *g = p * (*g - dot);
    }
}
