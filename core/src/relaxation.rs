//! The relaxed comparators: the sigmoid `f` that turns a comparison into a mixing weight α.
//!
//! A comparator sees `a = x[wire_a]`, `b = x[wire_b]`, computes `v = b − a` and `α = f(v)` (α → 1
//! when b ≫ a: "no swap needed"), then emits `min ≈ α·a + (1−α)·b`, `max ≈ (1−α)·a + α·b`.
//! The formulas below, their epsilons and their derivatives are exactly those of the reference
//! (diffsort 0.2.0 / difftopk 0.2.0, spec section 1.1). With u = β·v:
//!
//! | relaxation | α = f(v) | f'(v) |
//! | --- | --- | --- |
//! | `logistic` | σ(u) | β σ(u)(1 − σ(u)) |
//! | `logistic_phi` (ART) | σ(β v / (\|v\| + 10⁻¹⁰)^λ) | σ'(g) β (\|v\|+ε)^(−λ−1) (\|v\| + ε − λ\|v\|), sign(0) = 0 |
//! | `gaussian` | Φ(u) = ½ + ½ erf(u/√2) | β φ(u) |
//! | `reciprocal` | ½ (u / (2 + \|u\|) + 1) | β / (2 + \|u\|)² |
//! | `cauchy` | atan(u)/π + ½ | β / (π (1 + u²)) |
//! | `optimal` | u + ½ on \|u\| ≤ ¼, 1 − 1/(16(u+ε)) above, 1/(16(\|u\|+ε)) below | β inside, β/(16(\|u\|+ε)²) outside |
//!
//! `cauchy`, `reciprocal` and `optimal` are the monotonic relaxations (Petersen et al., ICLR 2022):
//! every output of a network built from them is non-decreasing in every input.

use crate::{Error, Real};

/// Which sigmoid relaxes the comparators (`distribution` in the reference).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Relaxation {
    /// `'logistic'`: α = σ(βv).
    Logistic,
    /// `'logistic_phi'`, the activation replacement trick (ART): α = σ(βv / (|v| + 10⁻¹⁰)^λ).
    LogisticPhi {
        /// The ART exponent λ (`art_lambda`), ≥ 0; the paper's ImageNet and CIFAR runs use 0.5.
        lambda: f64,
    },
    /// `'gaussian'`: α = Φ(βv), the standard normal CDF.
    Gaussian,
    /// `'reciprocal'`: α = ½(βv/(2 + |βv|) + 1) (monotonic).
    Reciprocal,
    /// `'cauchy'`: α = atan(βv)/π + ½ (monotonic; diffsort's default).
    Cauchy,
    /// `'optimal'`: the piecewise "optimal" monotonic sigmoid of the ICLR 2022 paper.
    Optimal,
}

/// The smallest β accepted: the smallest normal `f32`, so that β stays a normal number in
/// either float type (one configuration serves both).
pub const MIN_INVERSE_TEMPERATURE: f64 = f32::MIN_POSITIVE as f64;
/// The largest β accepted; far below it every relaxation is already a hard comparator. With
/// logits up to ±[`crate::loss::MAX_LOGIT`], β·(b − a) may overflow `f32` to ±∞: every
/// relaxation saturates there (α = 0 or 1, or ½ for logistic_phi with λ > 1, whose argument
/// tends to 0), which the extremes property test and the unit tests below check.
pub const MAX_INVERSE_TEMPERATURE: f64 = 1e8;
/// The largest ART exponent accepted: at a tie `logistic_phi` divides by `(10⁻¹⁰)^λ`, which
/// underflows `f32` (a NaN loss) above λ ≈ 3.8.
pub const MAX_ART_LAMBDA: f64 = 3.0;
/// The largest slope `β·¼·10^(10λ)` of `logistic_phi` at tied logits accepted (three decimal
/// orders below `f32::MAX`, for the sums of the backward).
pub const MAX_TIE_SLOPE: f64 = 1e35;

/// `Ok` when β is finite and between [`MIN_INVERSE_TEMPERATURE`] and
/// [`MAX_INVERSE_TEMPERATURE`], else [`Error::InvalidInverseTemperature`].
pub fn check_inverse_temperature(beta: f64) -> Result<(), Error> {
    if (MIN_INVERSE_TEMPERATURE..=MAX_INVERSE_TEMPERATURE).contains(&beta) {
        Ok(())
    } else {
        Err(Error::InvalidInverseTemperature { value: beta })
    }
}

impl Relaxation {
    /// Parses the reference's `distribution` names (`logistic`, `logistic_phi`, `gaussian`,
    /// `reciprocal`, `cauchy`, `optimal`; `-` may replace `_`, as for [`crate::Method`]);
    /// `lambda` is used by `logistic_phi` only.
    pub fn from_name(name: &str, lambda: f64) -> Result<Self, Error> {
        let known = [
            Relaxation::Logistic,
            Relaxation::LogisticPhi { lambda },
            Relaxation::Gaussian,
            Relaxation::Reciprocal,
            Relaxation::Cauchy,
            Relaxation::Optimal,
        ];
        known
            .into_iter()
            .find(|relaxation| crate::config::name_matches(name, relaxation.name()))
            .ok_or(Error::UnknownName { what: "relaxation" })
    }

    /// The reference's name of this relaxation.
    pub fn name(&self) -> &'static str {
        match self {
            Relaxation::Logistic => "logistic",
            Relaxation::LogisticPhi { .. } => "logistic_phi",
            Relaxation::Gaussian => "gaussian",
            Relaxation::Reciprocal => "reciprocal",
            Relaxation::Cauchy => "cauchy",
            Relaxation::Optimal => "optimal",
        }
    }

    /// `true` for the monotonic relaxations (cauchy, reciprocal, optimal).
    pub fn is_monotonic(&self) -> bool {
        matches!(
            self,
            Relaxation::Cauchy | Relaxation::Reciprocal | Relaxation::Optimal
        )
    }

    /// `Ok` unless the parameter is invalid: ART λ must be finite, ≥ 0 and ≤
    /// [`MAX_ART_LAMBDA`].
    pub fn validate(&self) -> Result<(), Error> {
        if let Relaxation::LogisticPhi { lambda } = *self {
            if !(lambda.is_finite() && (0.0..=MAX_ART_LAMBDA).contains(&lambda)) {
                return Err(Error::InvalidArtLambda { value: lambda });
            }
        }
        Ok(())
    }

    /// [`Relaxation::validate`], [`check_inverse_temperature`] for `beta`, and for
    /// `logistic_phi` the slope at tied logits, `β·¼·10^(10λ)` (the `+10⁻¹⁰` guard of spec
    /// section 8), at most [`MAX_TIE_SLOPE`] ([`Error::TieSlopeTooSteep`]).
    pub fn validate_with(&self, beta: f64) -> Result<(), Error> {
        self.validate()?;
        check_inverse_temperature(beta)?;
        if let Relaxation::LogisticPhi { lambda } = *self {
            if beta * 0.25 * libm::pow(10.0, 10.0 * lambda) > MAX_TIE_SLOPE {
                return Err(Error::TieSlopeTooSteep { beta, lambda });
            }
        }
        Ok(())
    }

    /// α = f(v) and f'(v) for `v = b − a` at inverse temperature `beta` (unvalidated: the caller
    /// guarantees β > 0 and λ ≥ 0).
    #[inline]
    pub fn alpha_and_slope<F: Real>(&self, v: F, beta: F) -> (F, F) {
        match *self {
            Relaxation::Logistic => Logistic { beta }.alpha_and_slope(v),
            Relaxation::LogisticPhi { lambda } => LogisticPhi {
                beta,
                lambda: F::of(lambda),
            }
            .alpha_and_slope(v),
            Relaxation::Gaussian => Gaussian { beta }.alpha_and_slope(v),
            Relaxation::Reciprocal => Reciprocal { beta }.alpha_and_slope(v),
            Relaxation::Cauchy => Cauchy { beta }.alpha_and_slope(v),
            Relaxation::Optimal => Optimal { beta }.alpha_and_slope(v),
        }
    }
}

/// A relaxation bound to its parameters, evaluated in the hot loop. Implemented by one zero-cost
/// struct per relaxation so that the sweeps are monomorphised (no `match` per comparator).
pub trait Sigmoid<F: Real>: Copy {
    /// Returns `(f(v), f'(v))`.
    fn alpha_and_slope(&self, v: F) -> (F, F);
}

/// The ε of the reference's `logistic_phi` and `optimal` guards.
const GUARD: f64 = 1e-10;

/// σ(x) = 1 / (1 + e^(−x)), as torch computes it.
#[inline(always)]
fn sigmoid<F: Real>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// `'logistic'` with its β.
#[derive(Clone, Copy, Debug)]
pub struct Logistic<F> {
    /// β.
    pub beta: F,
}
impl<F: Real> Sigmoid<F> for Logistic<F> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let s = sigmoid(v * self.beta);
        (s, self.beta * s * (F::one() - s))
    }
}

/// `'logistic_phi'` (ART) with β and λ.
#[derive(Clone, Copy, Debug)]
pub struct LogisticPhi<F> {
    /// β.
    pub beta: F,
    /// λ.
    pub lambda: F,
}
impl<F: Real> Sigmoid<F> for LogisticPhi<F> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let shifted = v.abs() + F::of(GUARD);
        let denominator = art_power(shifted, self.lambda);
        // For λ > 1 and huge |v|, β v and (|v|+ε)^λ may both overflow (∞/∞): there the ratio is
        // formed as (v / denominator)·β, which tends to 0 as it should; elsewhere the reference's
        // order, bit for bit.
        let ratio = if denominator.is_finite() {
            v * self.beta / denominator
        } else {
            v / denominator * self.beta
        };
        let s = sigmoid(ratio);
        // d/dv [β v (|v|+ε)^−λ] = β (|v|+ε)^(−λ−1) (|v| + ε − λ v sign(v)); sign(0) = 0 as in torch.
        let inner = shifted - self.lambda * v.abs();
        let numerator = s * (F::one() - s) * self.beta * inner;
        let scale = denominator * shifted;
        let slope = if numerator.is_finite() && scale.is_finite() {
            numerator / scale
        } else {
            // (inner/shifted is bounded: no overflow where the reference's order overflows.)
            s * (F::one() - s) * self.beta * (inner / shifted) / denominator
        };
        (s, slope)
    }
}

/// `'logistic_phi'` for λ = ½ (`FOURTH = false`, `√x`) and λ = ¼ (`FOURTH = true`, `√√x`): the same
/// values as [`LogisticPhi`], with the power chosen at compile time so that loops over rows
/// vectorise (no branch on λ per comparator).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogisticPhiRoot<F, const FOURTH: bool> {
    pub(crate) beta: F,
    pub(crate) lambda: F,
}
impl<F: Real, const FOURTH: bool> Sigmoid<F> for LogisticPhiRoot<F, FOURTH> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let shifted = v.abs() + F::of(GUARD);
        let denominator = if FOURTH {
            shifted.sqrt().sqrt()
        } else {
            shifted.sqrt()
        };
        let s = sigmoid(v * self.beta / denominator);
        let inner = shifted - self.lambda * v.abs();
        let slope = s * (F::one() - s) * self.beta * inner / (denominator * shifted);
        (s, slope)
    }
}

/// x^λ, with the exponents torch's `pow` special-cases computed as torch does (λ = ½ → √x,
/// ¼ → √√x, 1 → x, 0 → 1); libm's `pow` otherwise.
#[inline(always)]
fn art_power<F: Real>(x: F, lambda: F) -> F {
    if lambda == F::of(0.5) {
        x.sqrt()
    } else if lambda == F::of(0.25) {
        x.sqrt().sqrt()
    } else if lambda == F::one() {
        x
    } else if lambda == F::zero() {
        F::one()
    } else {
        x.powf(lambda)
    }
}

/// `'gaussian'`: Φ(βv).
#[derive(Clone, Copy, Debug)]
pub struct Gaussian<F> {
    /// β.
    pub beta: F,
}
impl<F: Real> Sigmoid<F> for Gaussian<F> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let u = v * self.beta;
        let half = F::of(0.5);
        let alpha = half + half * (u * F::of(core::f64::consts::FRAC_1_SQRT_2)).erf();
        // 1/σ/√(2π) · exp(−½ (v/σ)²), σ = 1/β.
        let slope = self.beta * F::of(0.398_942_280_401_432_7) * (-half * u * u).exp();
        (alpha, slope)
    }
}

/// `'reciprocal'`.
#[derive(Clone, Copy, Debug)]
pub struct Reciprocal<F> {
    /// β.
    pub beta: F,
}
impl<F: Real> Sigmoid<F> for Reciprocal<F> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let u = v * self.beta;
        let d = F::of(2.0) + u.abs();
        // u/(2 + |u|) → ±1 where β·v overflowed (∞/∞ would be NaN); the same bits elsewhere.
        let ratio = u / d;
        let ratio = if d.is_finite() {
            ratio
        } else if u < F::zero() {
            -F::one()
        } else {
            F::one()
        };
        (F::of(0.5) * (ratio + F::one()), self.beta / (d * d))
    }
}

/// `'cauchy'`.
#[derive(Clone, Copy, Debug)]
pub struct Cauchy<F> {
    /// β.
    pub beta: F,
}
impl<F: Real> Sigmoid<F> for Cauchy<F> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let u = v * self.beta;
        let pi = F::of(core::f64::consts::PI);
        (
            u.atan() / pi + F::of(0.5),
            self.beta / (pi * (F::one() + u * u)),
        )
    }
}

/// `'optimal'`.
#[derive(Clone, Copy, Debug)]
pub struct Optimal<F> {
    /// β.
    pub beta: F,
}
impl<F: Real> Sigmoid<F> for Optimal<F> {
    #[inline(always)]
    fn alpha_and_slope(&self, v: F) -> (F, F) {
        let u = v * self.beta;
        let quarter = F::of(0.25);
        if u.abs() <= quarter {
            return (u + F::of(0.5), self.beta);
        }
        let shifted = u.abs() + F::of(GUARD);
        // clamp(u, −¼, ¼) + ½ + sign(u)·(¼ − 1/16/(|u|+ε)), as the reference writes it.
        let tail = quarter - F::of(1.0 / 16.0) / shifted;
        let alpha = if u > F::zero() {
            quarter + F::of(0.5) + tail
        } else {
            -quarter + F::of(0.5) - tail
        };
        (alpha, self.beta / (F::of(16.0) * shifted * shifted))
    }
}

/// Calls `$body` with `$sigmoid` bound to the monomorphised [`Sigmoid`] of `$relaxation`.
macro_rules! with_sigmoid {
    ($relaxation:expr, $beta:expr, |$sigmoid:ident| $body:expr) => {{
        let beta = $beta;
        match $relaxation {
            $crate::Relaxation::Logistic => {
                let $sigmoid = $crate::relaxation::Logistic { beta };
                $body
            }
            $crate::Relaxation::LogisticPhi { lambda } if lambda == 0.5 => {
                let $sigmoid = $crate::relaxation::LogisticPhiRoot::<_, false> {
                    beta,
                    lambda: $crate::Real::of(lambda),
                };
                $body
            }
            $crate::Relaxation::LogisticPhi { lambda } if lambda == 0.25 => {
                let $sigmoid = $crate::relaxation::LogisticPhiRoot::<_, true> {
                    beta,
                    lambda: $crate::Real::of(lambda),
                };
                $body
            }
            $crate::Relaxation::LogisticPhi { lambda } => {
                let $sigmoid = $crate::relaxation::LogisticPhi {
                    beta,
                    lambda: $crate::Real::of(lambda),
                };
                $body
            }
            $crate::Relaxation::Gaussian => {
                let $sigmoid = $crate::relaxation::Gaussian { beta };
                $body
            }
            $crate::Relaxation::Reciprocal => {
                let $sigmoid = $crate::relaxation::Reciprocal { beta };
                $body
            }
            $crate::Relaxation::Cauchy => {
                let $sigmoid = $crate::relaxation::Cauchy { beta };
                $body
            }
            $crate::Relaxation::Optimal => {
                let $sigmoid = $crate::relaxation::Optimal { beta };
                $body
            }
        }
    }};
}
pub(crate) use with_sigmoid;

#[cfg(test)]
mod tests {
    use super::*;

    /// β·v beyond f32's range (logits near ±f32::MAX): the reciprocal saturates to (1, 0) and
    /// (0, 0) instead of ∞/∞ = NaN, and keeps its bits elsewhere.
    #[test]
    fn reciprocal_saturates_where_the_argument_overflows() {
        let relaxation = Relaxation::Reciprocal;
        assert_eq!(relaxation.alpha_and_slope(3e38f32, 10.0), (1.0, 0.0));
        assert_eq!(relaxation.alpha_and_slope(-3e38f32, 10.0), (0.0, 0.0));
        let (alpha, slope) = relaxation.alpha_and_slope(0.3f32, 2.0);
        let u = 0.6f32;
        assert_eq!(alpha, 0.5 * (u / (2.0 + u) + 1.0));
        assert_eq!(slope, 2.0 / ((2.0 + u) * (2.0 + u)));
    }

    /// logistic_phi with λ > 1 at a huge difference: β·v and (|v|+ε)^λ both overflow f32 (∞/∞
    /// made α NaN); the argument tends to 0, so α = ½ with a finite slope, and moderate values keep
    /// the reference's bits.
    #[test]
    fn logistic_phi_above_one_saturates_to_one_half() {
        for lambda in [1.5f32, 2.0, 3.0] {
            let relaxation = Relaxation::LogisticPhi {
                lambda: lambda as f64,
            };
            for v in [2e32f32, -2e32, 1e31] {
                let (alpha, slope) = relaxation.alpha_and_slope(v, 1e8f32);
                assert!(alpha.is_finite() && slope.is_finite(), "λ {lambda}, v {v}");
                assert!((alpha - 0.5).abs() < 1e-6, "λ {lambda}, v {v}: α {alpha}");
            }
            let v = 0.75f32;
            let shifted = v + 1e-10;
            let denominator = libm::powf(shifted, lambda);
            let (alpha, _) = relaxation.alpha_and_slope(v, 2.0f32);
            assert_eq!(
                alpha,
                1.0 / (1.0 + crate::exp::exp_f32(-(v * 2.0 / denominator)))
            );
        }
    }
}
