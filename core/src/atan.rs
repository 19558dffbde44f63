//! `atan` as straight-line arithmetic, **bit-identical to `libm::atanf` / `libm::atan`**
//! (FreeBSD's `s_atanf.c` / `s_atan.c`, Sun Microsystems 1993), so that loops over independent
//! rows vectorise (libm's version branches on the argument's range and stays a scalar call).
//!
//! Method (libm's): with `m = |x|`, the argument is reduced by the range of `m`: below 7/16 it is
//! used as it is (`id = −1`), else `t = (2m − 1)/(2 + m)`, `(m − 1)/(m + 1)`, `(m − 1.5)/(1 + 1.5m)`
//! or `−1/m` (`id = 0..3`, boundaries 11/16, 19/16, 39/16), and
//! `atan x = ±(atan_hi[id] − ((t·(s₁ + s₂) − atan_lo[id]) − t))` with `s₁ + s₂` the odd/even split
//! of the polynomial `Σ aTᵢ t^(2i+2)` (5 terms in f32, 11 in f64). Here every range's operands are
//! chosen by selects and the one division and the one polynomial are evaluated for all: the
//! same operations on the same operands as libm's taken branch, hence the same bits (the tests
//! compare every 61st `f32` bit pattern and a few million `f64` arguments across all ranges).
//! Error: libm's, below 1 ulp.
//!
//! Below `2⁻¹²` (`f32`) or `2⁻²⁷` (`f64`) the result is `x` itself, as in libm; the polynomial
//! is then evaluated at 0 instead, so that no subnormal intermediate (a microcode assist on x86)
//! is formed.

use crate::Real;

/// The type-specific constants of libm's `atan` (`f32`: `s_atanf.c`, `f64`: `s_atan.c`).
pub(crate) trait AtanConstants: Real {
    /// `atan(0.5)`, `atan(1)`, `atan(1.5)`, `atan(∞)`, high parts.
    const HIGH: [Self; 4];
    /// Their low parts.
    const LOW: [Self; 4];
    /// aT₀, aT₂, …: the even-indexed polynomial coefficients (the sum s₁, in `t²` and `t⁴`).
    const EVEN: &'static [Self];
    /// aT₁, aT₃, …: the odd-indexed coefficients (the sum s₂).
    const ODD: &'static [Self];
    /// Below this, `atan x = x`.
    const TINY: Self;
    /// From this on, `atan x = ±(atan_hi[3] + tiny)`.
    const HUGE: Self;
    /// `atan_hi[3]` plus libm's tiny constant, as libm returns it for huge arguments.
    const HUGE_RESULT: Self;
}

#[allow(clippy::excessive_precision, clippy::approx_constant)] // libm's literals, digit for digit
impl AtanConstants for f32 {
    const HIGH: [f32; 4] = [
        4.6364760399e-01,
        7.8539812565e-01,
        9.8279368877e-01,
        1.5707962513e+00,
    ];
    const LOW: [f32; 4] = [
        5.0121582440e-09,
        3.7748947079e-08,
        3.4473217170e-08,
        7.5497894159e-08,
    ];
    const EVEN: &'static [f32] = &[3.3333328366e-01, 1.4253635705e-01, 6.1687607318e-02];
    const ODD: &'static [f32] = &[-1.9999158382e-01, -1.0648017377e-01];
    const TINY: f32 = f32::from_bits(0x3980_0000); // 2⁻¹²
    const HUGE: f32 = f32::from_bits(0x4c80_0000); // 2²⁶
    const HUGE_RESULT: f32 = 1.5707962513e+00 + f32::from_bits(0x0380_0000);
}

#[allow(clippy::excessive_precision, clippy::approx_constant)] // libm's literals, digit for digit
impl AtanConstants for f64 {
    const HIGH: [f64; 4] = [
        4.63647609000806093515e-01,
        7.85398163397448278999e-01,
        9.82793723247329054082e-01,
        1.57079632679489655800e+00,
    ];
    const LOW: [f64; 4] = [
        2.26987774529616870924e-17,
        3.06161699786838301793e-17,
        1.39033110312309984516e-17,
        6.12323399573676603587e-17,
    ];
    const EVEN: &'static [f64] = &[
        3.33333333333329318027e-01,
        1.42857142725034663711e-01,
        9.09088713343650656196e-02,
        6.66107313738753120669e-02,
        4.97687799461593236017e-02,
        1.62858201153657823623e-02,
    ];
    const ODD: &'static [f64] = &[
        -1.99999999998764832476e-01,
        -1.11111104054623557880e-01,
        -7.69187620504482999495e-02,
        -5.83357013379057348645e-02,
        -3.65315727442169155270e-02,
    ];
    const TINY: f64 = f64::from_bits(0x3e40_0000_0000_0000); // 2⁻²⁷
    const HUGE: f64 = f64::from_bits(0x4410_0000_0000_0000); // 2⁶⁶
    const HUGE_RESULT: f64 = 1.57079632679489655800e+00 + f64::from_bits(0x0380_0000);
}

/// `c₀ + w(c₁ + w(c₂ + …))`, libm's nesting (a fixed-length loop: unrolled, branch-free).
#[inline(always)]
pub(crate) fn horner<F: Real>(w: F, coefficients: &[F]) -> F {
    let (&last, rest) = coefficients
        .split_last()
        .expect("a polynomial has a coefficient");
    let mut sum = last;
    for &c in rest.iter().rev() {
        sum = c + w * sum;
    }
    sum
}

/// The arc tangent of `x` in (−π/2, π/2), bit-identical to libm's (see the module docs).
#[inline(always)]
pub(crate) fn atan<F: AtanConstants>(x: F) -> F {
    let one = F::one();
    let two = F::of(2.0);
    let one_and_half = F::of(1.5);
    let m = x.abs();
    let tiny = m < F::TINY;
    let first = m < F::of(0.4375);
    let second = m < F::of(0.6875);
    let third = m < F::of(1.1875);
    let fourth = m < F::of(2.4375);
    // The reduction's numerator and denominator, by range (one division for all).
    let (numerator, denominator, high, low) = if second {
        (two * m - one, two + m, F::HIGH[0], F::LOW[0])
    } else if third {
        (m - one, m + one, F::HIGH[1], F::LOW[1])
    } else if fourth {
        (
            m - one_and_half,
            one + one_and_half * m,
            F::HIGH[2],
            F::LOW[2],
        )
    } else {
        (-one, m, F::HIGH[3], F::LOW[3])
    };
    let reduced = numerator / denominator;
    let t = if first { x } else { reduced };
    let t = if tiny { F::zero() } else { t };
    let z = t * t;
    let w = z * z;
    let s1 = z * horner(w, F::EVEN);
    let s2 = w * horner(w, F::ODD);
    let near_zero = t - t * (s1 + s2);
    let reduced_result = high - ((t * (s1 + s2) - low) - t);
    let reduced_result = if x < F::zero() {
        -reduced_result
    } else {
        reduced_result
    };
    let huge = if x < F::zero() {
        -F::HUGE_RESULT
    } else {
        F::HUGE_RESULT
    };
    let result = if first { near_zero } else { reduced_result };
    let result = if m >= F::HUGE { huge } else { result };
    let result = if tiny { x } else { result };
    // NaN in, NaN out (every comparison above is false for it).
    #[allow(clippy::eq_op)]
    let is_number = x == x;
    if is_number {
        result
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libm_parity::*;

    fn check_f32(x: f32) {
        assert_same_bits_f32("atan", atan, libm::atanf, x);
    }

    fn check_f64(x: f64) {
        assert_same_bits_f64("atan", atan, libm::atan, x);
    }

    #[test]
    fn f32_bit_identical_to_libm_on_every_61st_bit_pattern() {
        every_61st_f32(check_f32);
        let boundaries = [
            0x3980_0000,
            0x3ee0_0000,
            0x3f30_0000,
            0x3f98_0000,
            0x401c_0000,
        ];
        around_f32_boundaries(&boundaries, check_f32);
    }

    #[test]
    fn f64_bit_identical_to_libm() {
        // Uniform in the exponent (2⁻⁴⁰ to 2⁷⁰) and in the mantissa, either sign.
        random_f64(7, 2_000_000, 983, 110, check_f64);
        let high_words = [
            0x3e40_0000,
            0x3fdc_0000,
            0x3fe6_0000,
            0x3ff3_0000,
            0x4003_8000,
            0x4410_0000,
        ];
        around_f64_high_words(&high_words, check_f64);
        special_f64(f64::MAX, check_f64);
    }
}
