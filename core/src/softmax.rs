//! Numerically stable softmax and its vector-Jacobian product, on slices.
//!
//! The public functions check their input and return [`Error`]; the kernels call the unchecked
//! forms, whose callers guarantee non-empty rows of matching lengths.

use crate::{Error, Real};

/// `out_i = exp(z_i − max z) / Σ_j exp(z_j − max z)`; returns `(max z, Σ_j exp(z_j − max z))`
/// so that `log Σ exp z = max + ln(sum)`.
///
/// # Errors
/// [`Error::LengthMismatch`] when `logits` is empty or `out` has another length,
/// [`Error::NonFiniteInput`] (row 0) for a NaN or infinite logit.
pub fn softmax<F: Real>(logits: &[F], out: &mut [F]) -> Result<(F, F), Error> {
    check_row(logits)?;
    Error::check_length("out", logits.len(), out.len())?;
    Ok(softmax_unchecked(logits, out))
}

/// In place: `values ← softmax(values)`; returns `(max, Σ exp(z − max))` as [`softmax`].
///
/// # Errors
/// As [`softmax`].
pub fn softmax_in_place<F: Real>(values: &mut [F]) -> Result<(F, F), Error> {
    check_row(values)?;
    Ok(softmax_in_place_unchecked(values))
}

/// In place: `adjoint_i ← p_i (adjoint_i − Σ_j p_j adjoint_j)`, the VJP of softmax at output p.
///
/// # Errors
/// [`Error::LengthMismatch`] when `adjoint` and `probabilities` differ in length.
pub fn softmax_backward<F: Real>(probabilities: &[F], adjoint: &mut [F]) -> Result<(), Error> {
    Error::check_length("adjoint", probabilities.len(), adjoint.len())?;
    softmax_backward_unchecked(probabilities, adjoint);
    Ok(())
}

/// A non-empty row of finite values.
fn check_row<F: Real>(values: &[F]) -> Result<(), Error> {
    if values.is_empty() {
        return Err(Error::Empty {
            what: "softmax row values",
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(column) => Err(Error::NonFiniteInput { row: 0, column }),
        None => Ok(()),
    }
}

/// [`softmax`] without the checks (`logits` non-empty, `out` as long).
#[inline]
pub(crate) fn softmax_unchecked<F: Real>(logits: &[F], out: &mut [F]) -> (F, F) {
    out.copy_from_slice(logits);
    softmax_in_place_unchecked(out)
}

/// [`softmax_in_place`] without the checks (`values` non-empty).
#[inline]
pub(crate) fn softmax_in_place_unchecked<F: Real>(values: &mut [F]) -> (F, F) {
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

/// [`softmax_backward`] without the check (equal lengths).
#[inline]
pub(crate) fn softmax_backward_unchecked<F: Real>(probabilities: &[F], adjoint: &mut [F]) {
    let mut dot = F::zero();
    for (&p, &g) in probabilities.iter().zip(adjoint.iter()) {
        dot += p * g;
    }
    for (g, &p) in adjoint.iter_mut().zip(probabilities) {
        *g = p * (*g - dot);
    }
}

/// [`softmax_backward`] without the products below the normal range: where `adjoint_i = 0`
/// the term `p_i (0 − d)` (d = Σ_j p_j adjoint_j) is taken as `0 · (0 − d)` when
/// `p_i < 2⁻¹²⁶ / |d|` (f32; 2⁻¹⁰²² in f64), so it is never computed as a subnormal number.
///
/// Such a product would change a gradient entry by less than 2⁻¹²⁶ (times the factors applied
/// after it); computed, it costs a microcode assist of a hundred cycles or more on x86, and the
/// relaxed rows of NeuralSort, which span dozens of binades, make them by the thousand (the same
/// reasoning as `exp`'s flush, see `exp.rs`). NeuralSort's backward uses it (SoftSort's rows,
/// `exp(−β|s_i − s_(ρ)|)`, rarely make such products, and its loop ran slower with the test);
/// the lanes code applies the same rule in the same order, so the one-row and the batch paths
/// stay bit-identical.
#[inline]
pub(crate) fn softmax_backward_flushed<F: Real>(probabilities: &[F], adjoint: &mut [F]) {
    let mut dot = F::zero();
    for (&p, &g) in probabilities.iter().zip(adjoint.iter()) {
        dot += p * g;
    }
    let threshold = flush_threshold(dot);
    for (g, &p) in adjoint.iter_mut().zip(probabilities) {
        *g = kept_probability(p, *g, threshold) * (*g - dot);
    }
}

/// `2⁻¹²⁶ / |d|` (`MIN_POSITIVE / |d|`; +∞ for d = 0): the probabilities below it make
/// subnormal products with d.
#[inline(always)]
pub(crate) fn flush_threshold<F: Real>(dot: F) -> F {
    F::MIN_POSITIVE / dot.abs()
}

/// `p`, or 0 where its adjoint is 0 and `p < threshold` (see [`softmax_backward_flushed`]).
#[inline(always)]
pub(crate) fn kept_probability<F: Real>(p: F, adjoint: F, threshold: F) -> F {
    if (adjoint != F::zero()) | (p >= threshold) {
        p
    } else {
        F::zero()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::{softmax_backward_flushed, softmax_backward_unchecked};
    use alloc::vec::Vec;

    /// Probabilities over many binades (one-hot and dense adjoints): the flushed VJP has the
    /// unflushed one's bits wherever that is a normal number or 0, and ±0 exactly where the
    /// unflushed term is a subnormal number made by a probability whose adjoint is 0.
    fn check<F: crate::Real>(probabilities: &[F], adjoint: &[F]) -> usize {
        let mut plain = adjoint.to_vec();
        softmax_backward_unchecked(probabilities, &mut plain);
        let mut flushed = adjoint.to_vec();
        softmax_backward_flushed(probabilities, &mut flushed);
        let mut changed = 0;
        for i in 0..adjoint.len() {
            let (p, f) = (plain[i], flushed[i]);
            if p.as_f64().to_bits() == f.as_f64().to_bits() {
                continue;
            }
            changed += 1;
            assert!(adjoint[i] == F::zero(), "entry {i} with an adjoint changed");
            assert!(f == F::zero(), "entry {i}: {f:?} instead of 0 or {p:?}");
            assert!(
                p.abs() < F::MIN_POSITIVE,
                "entry {i}: flushed {p:?}, a normal number"
            );
        }
        changed
    }

    #[test]
    fn flushes_only_subnormal_products() {
        let mut changed = 0;
        let mut random = crate::test_random::Xorshift::new(0x2545_f491_4f6c_dd1d);
        for trial in 0..400 {
            let n = 3 + trial % 40;
            let mut probabilities32 = Vec::new();
            let mut probabilities64 = Vec::new();
            for _ in 0..n {
                let bits = random.next_u64();
                // 2^-(0..140) for f32, 2^-(0..1100) for f64, with a random mantissa.
                let mantissa = 1.0 + (bits >> 40) as f64 / (1u64 << 24) as f64;
                probabilities32.push((mantissa * 2f64.powi(-((bits % 141) as i32))) as f32);
                probabilities64.push(mantissa * 2f64.powi(-((bits % 1101) as i32)));
            }
            let label = trial % n;
            let weight = if trial % 3 == 0 { 1.0 } else { 1e-30 };
            let mut adjoint32 = alloc::vec![0.0f32; n];
            let mut adjoint64 = alloc::vec![0.0f64; n];
            adjoint32[label] = -weight as f32;
            adjoint64[label] = -weight * 1e-270;
            changed += check(&probabilities32, &adjoint32);
            changed += check(&probabilities64, &adjoint64);
            if trial % 5 == 0 {
                // A dense adjoint: only its zero entries may change.
                adjoint32.iter_mut().step_by(2).for_each(|a| *a = 0.25);
                adjoint64.iter_mut().step_by(2).for_each(|a| *a = 0.25e-300);
                changed += check(&probabilities32, &adjoint32);
                changed += check(&probabilities64, &adjoint64);
            }
        }
        // The inputs do make subnormal products (else the test proves nothing).
        assert!(changed > 500, "only {changed} entries flushed");
    }
}
