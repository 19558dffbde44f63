//! The float abstraction: [`Real`], implemented for `f32` and `f64`.
//!
//! Arithmetic comes from `num-traits` (`Num` + assignment operators); every transcendental function
//! is computed by `libm` on every target, with or without `std`, so that results are bit-identical
//! on a microcontroller and on a server (the standard library's `exp` and libm's may differ by an
//! ulp).

use core::fmt::{Debug, Display};
use core::ops::Neg;
use num_traits::{NumAssign, NumCast};

/// A floating-point type the kernels can run on (`f32`, `f64`).
///
/// Accuracy is that of `libm` (the musl implementations: < 1 ulp for `exp`, `log`, `atan`, `erf`,
/// `pow`, `sqrt` in round-to-nearest).
pub trait Real:
    NumAssign
    + NumCast
    + Neg<Output = Self>
    + Copy
    + PartialOrd
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// Converts an `f64` constant (rounding to nearest for `f32`).
    fn of(value: f64) -> Self;
    /// Widens to `f64`.
    fn as_f64(self) -> f64;
    /// eˣ.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `self` raised to a real power.
    fn powf(self, exponent: Self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Arc tangent, in (−π/2, π/2).
    fn atan(self) -> Self;
    /// The error function erf(x) = 2/√π ∫₀ˣ e^(−t²) dt.
    fn erf(self) -> Self;
    /// |x|.
    fn abs(self) -> Self;
    /// `true` unless NaN or ±∞.
    fn is_finite(self) -> bool;
    /// The larger of two values (NaN-ignoring as `libm::fmax`).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values (NaN-ignoring as `libm::fmin`).
    fn min(self, other: Self) -> Self;
    /// The type's name as numpy spells it (`"float32"`, `"float64"`).
    const NAME: &'static str;
}

impl Real for f32 {
    const NAME: &'static str = "float32";
    #[inline(always)]
    fn of(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp(self) -> Self {
        crate::exp::exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        libm::logf(self)
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        libm::powf(self, exponent)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // Both correctly rounded (IEEE 754); std's lowers to an instruction loops can vectorise.
        #[cfg(feature = "std")]
        return std::primitive::f32::sqrt(self);
        #[cfg(not(feature = "std"))]
        return libm::sqrtf(self);
    }
    #[inline(always)]
    fn atan(self) -> Self {
        libm::atanf(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        libm::fabsf(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        libm::fmaxf(self, other)
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        libm::fminf(self, other)
    }
}

impl Real for f64 {
    const NAME: &'static str = "float64";
    #[inline(always)]
    fn of(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp(self) -> Self {
        crate::exp::exp_f64(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        libm::log(self)
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        libm::pow(self, exponent)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        #[cfg(feature = "std")]
        return std::primitive::f64::sqrt(self);
        #[cfg(not(feature = "std"))]
        return libm::sqrt(self);
    }
    #[inline(always)]
    fn atan(self) -> Self {
        libm::atan(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        libm::fabs(self)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline(always)]
    fn max(self, other: Self) -> Self {
        libm::fmax(self, other)
    }
    #[inline(always)]
    fn min(self, other: Self) -> Self {
        libm::fmin(self, other)
    }
}
