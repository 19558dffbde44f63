//! Numerically stable softmax and its vector-Jacobian product, on slices.

use crate::Real;

/// `out_i = exp(z_i − max z) / Σ_j exp(z_j − max z)`; returns `(max z, Σ_j exp(z_j − max z))`
/// so that `log Σ exp z = max + ln(sum)`.
#[inline]
pub fn softmax<F: Real>(logits: &[F], out: &mut [F]) -> (F, F) {
    let mut maximum = logits[0];
    for &z in &logits[1..] {
        if z > maximum {
            maximum = z;
        }
    }
    let mut sum = F::zero();
    for (o, &z) in out.iter_mut().zip(logits) {
        let e = (z - maximum).exp();
        *o = e;
        sum += e;
    }
    let inverse = F::one() / sum;
    for o in out.iter_mut() {
        *o *= inverse;
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
