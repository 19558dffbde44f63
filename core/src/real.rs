//! The float abstraction: [`Real`], implemented for `f32` and `f64`.
//!
//! Arithmetic comes from `num-traits` (`Num` + assignment operators). The transcendental
//! functions are the same code on every target, with or without `std`, so that results are
//! bit-identical on a microcontroller and on a server (the standard library's `exp` and libm's
//! may differ by an ulp): `ln` and `powf` are `libm`'s; `atan` and `erf` are `libm`'s algorithms
//! written as straight-line code so that loops over rows vectorise, bit-identical to `libm`
//! (`atan.rs`, `erf.rs`); `exp` is the crate's own (`exp.rs`: at most 2 ulp, results below the
//! normal range flushed to 0); `sqrt` is correctly rounded (an instruction where there is one).

use core::fmt::{Debug, Display};
use core::ops::Neg;
use num_traits::{NumAssign, NumCast};

/// A floating-point type the kernels can run on (`f32`, `f64`).
///
/// Accuracy: below 1 ulp for `ln`, `powf`, `atan` and `erf` (libm's, the FreeBSD/musl
/// implementations), at most 2 ulp for `exp` (0 where eˣ is below the normal range), `sqrt`
/// correctly rounded.
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
    /// `eˣ` for `x ≤ 0`: the same value as [`Real::exp`] there, computed with less work where
    /// the type allows (every exponential of the loss has a non-positive argument). For
    /// `x > 0` the result is unspecified.
    #[doc(hidden)]
    #[inline(always)]
    fn exp_nonpositive(self) -> Self {
        self.exp()
    }
    /// Whether [`Real::exp`] gives exactly +0 here (below the normal range: the crate's `exp`
    /// flushes those results; `false` where unknown). Lets a caller skip whole blocks of
    /// exponentials whose results are 0 anyway.
    #[doc(hidden)]
    #[inline(always)]
    fn exp_flushes(self) -> bool {
        false
    }
    /// The largest reach of NeuralSort's chained rows (`neuralsort::chain_reach`): a bound `R`
    /// with `eˣ` a normal number for every `|x| ≤ R`, with a margin (80 in `f32`, whose normal
    /// numbers run from e^−87.3 to e^88.7; 700 in `f64`, e^−708.4 to e^709.8). 0 where unknown,
    /// which keeps every row with any spread on the direct exponentials (equal scores, reach 0,
    /// chain by factors of exactly 1).
    #[doc(hidden)]
    #[inline(always)]
    fn chain_limit() -> Self {
        Self::zero()
    }
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// The loss's logarithm: [`Real::ln`]'s value, from code compiled into this crate where
    /// the type has it (f32: libm's `logf` algorithm in `ln.rs`), so that the one-row and
    /// lane paths agree bit for bit whatever libm version a build resolves.
    #[doc(hidden)]
    #[inline(always)]
    fn loss_ln(self) -> Self {
        self.ln()
    }
    /// [`Real::loss_ln`] of eight values in place, the same bits; computed for the eight at
    /// once where the type allows.
    #[doc(hidden)]
    #[inline(always)]
    fn ln_lanes(values: &mut [Self; 8]) {
        for value in values.iter_mut() {
            *value = value.loss_ln();
        }
    }
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
    /// An integer that orders like the value: `a < b ⇔ a.order_key() < b.order_key()` for
    /// non-NaN values, with −0 and +0 both mapped to 0 (they compare equal): the IEEE 754 bit
    /// pattern with its sign-magnitude turned into two's complement, so that adjacent floats
    /// get adjacent keys (−1, the key of −0, is left unused).
    fn order_key(self) -> i64;
    /// The inverse of [`Real::order_key`] on its range (key 0 gives +0).
    fn from_order_key(key: i64) -> Self;
    /// Whether any of the 8 values is `≥ bound` (SIMD compares and one mask test on x86-64,
    /// where the generic loop stays scalar).
    #[inline(always)]
    fn any_at_or_above(block: &[Self; 8], bound: Self) -> bool {
        block
            .iter()
            .fold(false, |any, &value| any | (value >= bound))
    }
    /// The type's name as numpy spells it (`"float32"`, `"float64"`).
    const NAME: &'static str;
    /// The smallest positive normal value (2⁻¹²⁶ for `f32`, 2⁻¹⁰²² for `f64`).
    const MIN_POSITIVE: Self;
    /// `values` as `f32` where `Self` is `f32` (the entry of the AVX2 selection), else `None`.
    #[doc(hidden)]
    #[inline(always)]
    fn as_f32_slice(values: &[Self]) -> Option<&[f32]> {
        let _ = values;
        None
    }
    /// Rows of 8 values as `f32` where `Self` is `f32` (the entry of the AVX2 lane kernels).
    #[doc(hidden)]
    #[inline(always)]
    fn as_f32_lanes(values: &[[Self; 8]]) -> Option<&[[f32; 8]]> {
        let _ = values;
        None
    }
    /// [`Real::as_f32_slice`], mutable.
    #[doc(hidden)]
    #[inline(always)]
    fn as_f32_slice_mut(values: &mut [Self]) -> Option<&mut [f32]> {
        let _ = values;
        None
    }
    /// [`Real::as_f32_lanes`], mutable.
    #[doc(hidden)]
    #[inline(always)]
    fn as_f32_lanes_mut(values: &mut [[Self; 8]]) -> Option<&mut [[f32; 8]]> {
        let _ = values;
        None
    }
}

impl Real for f32 {
    const NAME: &'static str = "float32";
    const MIN_POSITIVE: Self = f32::MIN_POSITIVE;
    #[inline(always)]
    fn as_f32_slice(values: &[Self]) -> Option<&[f32]> {
        Some(values)
    }
    #[inline(always)]
    fn as_f32_lanes(values: &[[Self; 8]]) -> Option<&[[f32; 8]]> {
        Some(values)
    }
    #[inline(always)]
    fn as_f32_lanes_mut(values: &mut [[Self; 8]]) -> Option<&mut [[f32; 8]]> {
        Some(values)
    }
    #[inline(always)]
    fn as_f32_slice_mut(values: &mut [Self]) -> Option<&mut [f32]> {
        Some(values)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn any_at_or_above(block: &[Self; 8], bound: Self) -> bool {
        use core::arch::x86_64::{
            _mm_cmpge_ps, _mm_loadu_ps, _mm_movemask_ps, _mm_or_ps, _mm_set1_ps,
        };
        // SAFETY: SSE2 is part of x86-64; the loads read the 8 values of `block`.
        unsafe {
            let bound = _mm_set1_ps(bound);
            let low = _mm_cmpge_ps(_mm_loadu_ps(block.as_ptr()), bound);
            let high = _mm_cmpge_ps(_mm_loadu_ps(block.as_ptr().add(4)), bound);
            _mm_movemask_ps(_mm_or_ps(low, high)) != 0
        }
    }
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
    fn exp_nonpositive(self) -> Self {
        crate::exp::exp_nonpositive_f32(self)
    }
    #[inline(always)]
    fn exp_flushes(self) -> bool {
        self < crate::exp::LOWEST_NORMAL_ARGUMENT_F32
    }
    #[inline(always)]
    fn chain_limit() -> Self {
        80.0
    }
    #[inline(always)]
    fn ln(self) -> Self {
        libm::logf(self)
    }
    #[inline(always)]
    fn loss_ln(self) -> Self {
        crate::ln::logf(self)
    }
    #[inline(always)]
    fn ln_lanes(values: &mut [Self; 8]) {
        crate::ln::logf_lanes(values);
    }
    #[inline(always)]
    fn powf(self, exponent: Self) -> Self {
        libm::powf(self, exponent)
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // All correctly rounded (IEEE 754). The SSE instruction (x86-64, with or without std)
        // and std's both lower to a square root loops can vectorise; libm's is a call.
        #[cfg(target_arch = "x86_64")]
        return x86_64_sqrt::f32(self);
        #[cfg(all(not(target_arch = "x86_64"), feature = "std"))]
        return std::primitive::f32::sqrt(self);
        #[cfg(all(not(target_arch = "x86_64"), not(feature = "std")))]
        return libm::sqrtf(self);
    }
    #[inline(always)]
    fn atan(self) -> Self {
        crate::atan::atan(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        crate::erf::erf(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // libm::fabsf's operation (clear the sign bit), written here so that it inlines and
        // loops over it vectorise (libm's is not marked inline).
        f32::from_bits(self.to_bits() & 0x7fff_ffff)
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
    #[inline(always)]
    fn order_key(self) -> i64 {
        let bits = self.to_bits() as i32;
        // Negative values: flip the magnitude bits, so larger magnitudes sort lower; −0 → −1.
        let key = if bits < 0 { bits ^ 0x7fff_ffff } else { bits };
        if self == 0.0 {
            0
        } else {
            key as i64
        }
    }
    #[inline(always)]
    fn from_order_key(key: i64) -> Self {
        let key = key as i32;
        f32::from_bits((if key < 0 { key ^ 0x7fff_ffff } else { key }) as u32)
    }
}

impl Real for f64 {
    const NAME: &'static str = "float64";
    const MIN_POSITIVE: Self = f64::MIN_POSITIVE;
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn any_at_or_above(block: &[Self; 8], bound: Self) -> bool {
        use core::arch::x86_64::{
            _mm_cmpge_pd, _mm_loadu_pd, _mm_movemask_pd, _mm_or_pd, _mm_set1_pd,
        };
        // SAFETY: SSE2 is part of x86-64; the loads read the 8 values of `block`.
        unsafe {
            let bound = _mm_set1_pd(bound);
            let pointer = block.as_ptr();
            let first = _mm_or_pd(
                _mm_cmpge_pd(_mm_loadu_pd(pointer), bound),
                _mm_cmpge_pd(_mm_loadu_pd(pointer.add(2)), bound),
            );
            let second = _mm_or_pd(
                _mm_cmpge_pd(_mm_loadu_pd(pointer.add(4)), bound),
                _mm_cmpge_pd(_mm_loadu_pd(pointer.add(6)), bound),
            );
            _mm_movemask_pd(_mm_or_pd(first, second)) != 0
        }
    }
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
    fn exp_nonpositive(self) -> Self {
        crate::exp::exp_nonpositive_f64(self)
    }
    #[inline(always)]
    fn exp_flushes(self) -> bool {
        self < crate::exp::LOWEST_NORMAL_ARGUMENT_F64
    }
    #[inline(always)]
    fn chain_limit() -> Self {
        700.0
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
        #[cfg(target_arch = "x86_64")]
        return x86_64_sqrt::f64(self);
        #[cfg(all(not(target_arch = "x86_64"), feature = "std"))]
        return std::primitive::f64::sqrt(self);
        #[cfg(all(not(target_arch = "x86_64"), not(feature = "std")))]
        return libm::sqrt(self);
    }
    #[inline(always)]
    fn atan(self) -> Self {
        crate::atan::atan(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        crate::erf::erf(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::from_bits(self.to_bits() & 0x7fff_ffff_ffff_ffff)
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
    #[inline(always)]
    fn order_key(self) -> i64 {
        let bits = self.to_bits() as i64;
        let key = if bits < 0 {
            bits ^ 0x7fff_ffff_ffff_ffff
        } else {
            bits
        };
        if self == 0.0 {
            0
        } else {
            key
        }
    }
    #[inline(always)]
    fn from_order_key(key: i64) -> Self {
        f64::from_bits(
            (if key < 0 {
                key ^ 0x7fff_ffff_ffff_ffff
            } else {
                key
            }) as u64,
        )
    }
}

/// Square roots through SSE/SSE2, part of every x86-64 CPU, so also without `std`: the
/// intrinsics lower to LLVM's own square root, which the vectoriser turns into `sqrtps` over
/// rows (libm's is an opaque call per value). Correctly rounded, the same bits as libm's.
#[cfg(target_arch = "x86_64")]
mod x86_64_sqrt {
    use core::arch::x86_64::{
        _mm_cvtsd_f64, _mm_cvtss_f32, _mm_set_sd, _mm_set_ss, _mm_sqrt_pd, _mm_sqrt_ss,
    };

    #[inline(always)]
    #[allow(unused_unsafe)] // safe functions where SSE2 is enabled (always, on x86-64)
    pub(super) fn f32(x: f32) -> f32 {
        // SAFETY: SSE is part of the x86-64 baseline.
        unsafe { _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))) }
    }

    #[inline(always)]
    #[allow(unused_unsafe)]
    pub(super) fn f64(x: f64) -> f64 {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        unsafe { _mm_cvtsd_f64(_mm_sqrt_pd(_mm_set_sd(x))) }
    }
}

#[cfg(test)]
mod tests {
    use super::Real;

    fn check<F: Real>(x: F, ours: F, expected: F) {
        let same = ours.as_f64().to_bits() == expected.as_f64().to_bits();
        let both_nan = ours.as_f64().is_nan() && expected.as_f64().is_nan();
        assert!(
            same || both_nan,
            "sqrt({x:?}) = {ours:?}, libm {expected:?}"
        );
    }

    /// The square roots equal libm's (both correctly rounded) bit for bit: normal, subnormal,
    /// zero of both signs, infinity, and NaN for negative arguments.
    #[test]
    fn square_roots_equal_libm() {
        for x in [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::MIN_POSITIVE,
            1e-45,
            -1.0,
            4.0,
        ] {
            check(x, Real::sqrt(x), libm::sqrtf(x));
        }
        for x in [
            0.0f64,
            -0.0,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
            -1.0,
            4.0,
        ] {
            check(x, Real::sqrt(x), libm::sqrt(x));
        }
        let mut random = crate::test_random::Xorshift::new(0x853c_49e6_748f_ea9b);
        for _ in 0..20_000 {
            let bits = random.next_u64();
            let x = f32::from_bits((bits >> 32) as u32 & 0x7fff_ffff);
            check(x, Real::sqrt(x), libm::sqrtf(x));
            let x = f64::from_bits(bits & 0x7fff_ffff_ffff_ffff);
            check(x, Real::sqrt(x), libm::sqrt(x));
        }
    }
}
