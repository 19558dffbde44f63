//! `erf` as straight-line arithmetic, **bit-identical to `libm::erff` / `libm::erf`** (FreeBSD's
//! `s_erff.c` / `s_erf.c`, Sun Microsystems 1993), so that loops over independent rows vectorise
//! (libm's version branches on the argument's range and stays a scalar call; the gaussian
//! relaxation spent most of its time there).
//!
//! Method (libm's), with `m = |x|`:
//! * `m < 2⁻²⁸`: `(8x + efx8·x)/8`;
//! * `m < 0.84375`: `x + x·R(x²)/S(x²)`;
//! * `m < 1.25`: `±(1 − ((1 − erx) − P(m − 1)/Q(m − 1)))`;
//! * `m < 6`: `±(1 − e^(−z² − 0.5625)·e^((z − m)(z + m) + R(1/m²)/S(1/m²))/m)` with z = m with its
//!   low mantissa bits cleared (12 bits kept in `f32`, the high word in `f64`) and one of two
//!   rational approximations (boundary 1/0.35);
//! * beyond: `±(1 − tiny)`, which rounds to ±1.
//!
//! Every range is evaluated with selects for its operands and the results are selected: the
//! same operations on the same operands as libm's taken branch, hence the same bits (the tests
//! compare every 61st `f32` bit pattern and a few million `f64` arguments). The exponentials are
//! libm's `expf` / `exp` ported the same way for the arguments this function gives them (between
//! −37 and 1). Error: libm's, below 1 ulp. Arguments that a range does not use are replaced by
//! benign values before its arithmetic, so no subnormal intermediate (a microcode assist on x86)
//! is formed.

use crate::atan::horner;
use crate::Real;

/// The type-specific constants of libm's `erf` and of the part of `exp` it uses.
pub(crate) trait ErfConstants: Real {
    /// erx = erf(1) rounded.
    const ERX: Self;
    /// efx8 = 8·(2/√π − 1).
    const EFX8: Self;
    /// pp₀ … pp₄ (numerator in x², `m < 0.84375`).
    const PP: [Self; 5];
    /// 1, qq₁ … qq₅ (denominator).
    const QQ: [Self; 6];
    /// pa₀ … pa₆ (numerator in m − 1, `m < 1.25`).
    const PA: [Self; 7];
    /// 1, qa₁ … qa₆.
    const QA: [Self; 7];
    /// ra₀ … ra₇ (numerator in 1/m², `m < 1/0.35`).
    const RA: [Self; 8];
    /// 1, sa₁ … sa₈.
    const SA: [Self; 9];
    /// rb₀ … rb₆ and a trailing 0 (`m ≥ 1/0.35`; `rb₆ + s·0` is rb₆ exactly, so the one
    /// evaluation of eight coefficients gives libm's seven-term value).
    const RB: [Self; 8];
    /// 1, sb₁ … sb₇ and a trailing 0.
    const SB: [Self; 9];
    /// Below this, the first range's linear formula.
    const TINY: Self;
    /// libm's boundary near 1/0.35 between the two tail approximations.
    const TAIL_SPLIT: Self;
    /// `1 − tiny` as libm writes it for `m ≥ 6`.
    const SATURATED: Self;
    /// `x` with libm's low bits cleared (the `z` of the tail).
    fn truncated(self) -> Self;

    /// `exp`: ln 2 high part (`k·LN2_HI` exact), low part, 1/ln 2.
    const LN2_HIGH: Self;
    /// ln 2, low part.
    const LN2_LOW: Self;
    /// 1/ln 2.
    const INVERSE_LN2: Self;
    /// `exp`'s polynomial P₁, P₂, … of `c = r − r²·P(r²)`.
    const EXP_P: &'static [Self];
    /// From this `|x|` on, `exp` reduces by `k = trunc(x/ln 2 ± ½)` (libm: above 1.5 ln 2).
    const EXP_FAR: Self;
    /// From this `|x|` on, by `k = ±1` (libm: above ½ ln 2).
    const EXP_NEAR: Self;
    /// Below this `|x|`, `exp x = 1 + x`.
    const EXP_TINY: Self;
    /// 2ᵏ for an integral `k` with 2ᵏ normal.
    fn power_of_two(k: Self) -> Self;
    /// A value ≥ 2^(mantissa bits) (adding and subtracting it rounds to an integer).
    const ROUNDER: Self;
}

#[allow(clippy::excessive_precision, clippy::approx_constant)] // libm's literals, digit for digit
impl ErfConstants for f32 {
    const ERX: f32 = 8.4506291151e-01;
    const EFX8: f32 = 1.0270333290e+00;
    const PP: [f32; 5] = [
        1.2837916613e-01,
        -3.2504209876e-01,
        -2.8481749818e-02,
        -5.7702702470e-03,
        -2.3763017452e-05,
    ];
    const QQ: [f32; 6] = [
        1.0,
        3.9791721106e-01,
        6.5022252500e-02,
        5.0813062117e-03,
        1.3249473704e-04,
        -3.9602282413e-06,
    ];
    const PA: [f32; 7] = [
        -2.3621185683e-03,
        4.1485610604e-01,
        -3.7220788002e-01,
        3.1834661961e-01,
        -1.1089469492e-01,
        3.5478305072e-02,
        -2.1663755178e-03,
    ];
    const QA: [f32; 7] = [
        1.0,
        1.0642088205e-01,
        5.4039794207e-01,
        7.1828655899e-02,
        1.2617121637e-01,
        1.3637083583e-02,
        1.1984500103e-02,
    ];
    const RA: [f32; 8] = [
        -9.8649440333e-03,
        -6.9385856390e-01,
        -1.0558626175e+01,
        -6.2375331879e+01,
        -1.6239666748e+02,
        -1.8460508728e+02,
        -8.1287437439e+01,
        -9.8143291473e+00,
    ];
    const SA: [f32; 9] = [
        1.0,
        1.9651271820e+01,
        1.3765776062e+02,
        4.3456588745e+02,
        6.4538726807e+02,
        4.2900814819e+02,
        1.0863500214e+02,
        6.5702495575e+00,
        -6.0424413532e-02,
    ];
    const RB: [f32; 8] = [
        -9.8649431020e-03,
        -7.9928326607e-01,
        -1.7757955551e+01,
        -1.6063638306e+02,
        -6.3756646729e+02,
        -1.0250950928e+03,
        -4.8351919556e+02,
        0.0,
    ];
    const SB: [f32; 9] = [
        1.0,
        3.0338060379e+01,
        3.2579251099e+02,
        1.5367296143e+03,
        3.1998581543e+03,
        2.5530502930e+03,
        4.7452853394e+02,
        -2.2440952301e+01,
        0.0,
    ];
    const TINY: f32 = f32::from_bits(0x3180_0000); // 2⁻²⁸
    const TAIL_SPLIT: f32 = f32::from_bits(0x4036_db6d);
    const SATURATED: f32 = 1.0 - f32::from_bits(0x0380_0000);
    #[inline(always)]
    fn truncated(self) -> f32 {
        f32::from_bits(self.to_bits() & 0xffff_e000)
    }

    const LN2_HIGH: f32 = 6.9314575195e-01;
    const LN2_LOW: f32 = 1.4286067653e-06;
    const INVERSE_LN2: f32 = 1.4426950216e+00;
    const EXP_P: &'static [f32] = &[1.6666625440e-1, -2.7667332906e-3];
    const EXP_FAR: f32 = f32::from_bits(0x3f85_1593); // libm: |x| bits > 0x3f851592
    const EXP_NEAR: f32 = f32::from_bits(0x3eb1_7219); // > 0x3eb17218
    const EXP_TINY: f32 = f32::from_bits(0x3900_0001); // ≤ 0x39000000: 1 + x
    #[inline(always)]
    fn power_of_two(k: f32) -> f32 {
        // k sits in the low mantissa bits of k + 1.5·2²³ (|k| < 2²²): no float-to-int
        // conversion, which would not vectorise everywhere.
        const SHIFTER: f32 = 12_582_912.0;
        let k = (k + SHIFTER).to_bits() as i32 - SHIFTER.to_bits() as i32;
        f32::from_bits(((k + 127) as u32) << 23)
    }
    const ROUNDER: f32 = 8_388_608.0; // 2²³
}

#[allow(clippy::excessive_precision, clippy::approx_constant)] // libm's literals, digit for digit
impl ErfConstants for f64 {
    const ERX: f64 = 8.45062911510467529297e-01;
    const EFX8: f64 = 1.02703333676410069053e+00;
    const PP: [f64; 5] = [
        1.28379167095512558561e-01,
        -3.25042107247001499370e-01,
        -2.84817495755985104766e-02,
        -5.77027029648944159157e-03,
        -2.37630166566501626084e-05,
    ];
    const QQ: [f64; 6] = [
        1.0,
        3.97917223959155352819e-01,
        6.50222499887672944485e-02,
        5.08130628187576562776e-03,
        1.32494738004321644526e-04,
        -3.96022827877536812320e-06,
    ];
    const PA: [f64; 7] = [
        -2.36211856075265944077e-03,
        4.14856118683748331666e-01,
        -3.72207876035701323847e-01,
        3.18346619901161753674e-01,
        -1.10894694282396677476e-01,
        3.54783043256182359371e-02,
        -2.16637559486879084300e-03,
    ];
    const QA: [f64; 7] = [
        1.0,
        1.06420880400844228286e-01,
        5.40397917702171048937e-01,
        7.18286544141962662868e-02,
        1.26171219808761642112e-01,
        1.36370839120290507362e-02,
        1.19844998467991074170e-02,
    ];
    const RA: [f64; 8] = [
        -9.86494403484714822705e-03,
        -6.93858572707181764372e-01,
        -1.05586262253232909814e+01,
        -6.23753324503260060396e+01,
        -1.62396669462573470355e+02,
        -1.84605092906711035994e+02,
        -8.12874355063065934246e+01,
        -9.81432934416914548592e+00,
    ];
    const SA: [f64; 9] = [
        1.0,
        1.96512716674392571292e+01,
        1.37657754143519042600e+02,
        4.34565877475229228821e+02,
        6.45387271733267880336e+02,
        4.29008140027567833386e+02,
        1.08635005541779435134e+02,
        6.57024977031928170135e+00,
        -6.04244152148580987438e-02,
    ];
    const RB: [f64; 8] = [
        -9.86494292470009928597e-03,
        -7.99283237680523006574e-01,
        -1.77579549177547519889e+01,
        -1.60636384855821916062e+02,
        -6.37566443368389627722e+02,
        -1.02509513161107724954e+03,
        -4.83519191608651397019e+02,
        0.0,
    ];
    const SB: [f64; 9] = [
        1.0,
        3.03380607434824582924e+01,
        3.25792512996573918826e+02,
        1.53672958608443695994e+03,
        3.19985821950859553908e+03,
        2.55305040643316442583e+03,
        4.74528541206955367215e+02,
        -2.24409524465858183362e+01,
        0.0,
    ];
    const TINY: f64 = f64::from_bits(0x3e30_0000_0000_0000); // 2⁻²⁸
    const TAIL_SPLIT: f64 = f64::from_bits(0x4006_db6d_0000_0000);
    const SATURATED: f64 = 1.0 - f64::from_bits(0x0010_0000_0000_0000);
    #[inline(always)]
    fn truncated(self) -> f64 {
        f64::from_bits(self.to_bits() & 0xffff_ffff_0000_0000)
    }

    const LN2_HIGH: f64 = 6.93147180369123816490e-01;
    const LN2_LOW: f64 = 1.90821492927058770002e-10;
    const INVERSE_LN2: f64 = 1.44269504088896338700e+00;
    const EXP_P: &'static [f64] = &[
        1.66666666666666019037e-01,
        -2.77777777770155933842e-03,
        6.61375632143793436117e-05,
        -1.65339022054652515390e-06,
        4.13813679705723846039e-08,
    ];
    // libm compares the high word: ≥ 0x3ff0a2b2, > 0x3fd62e42, > 0x3e300000.
    const EXP_FAR: f64 = f64::from_bits(0x3ff0_a2b2_0000_0000);
    const EXP_NEAR: f64 = f64::from_bits(0x3fd6_2e43_0000_0000);
    const EXP_TINY: f64 = f64::from_bits(0x3e30_0001_0000_0000);
    #[inline(always)]
    fn power_of_two(k: f64) -> f64 {
        const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5 · 2⁵²
        let k = (k + SHIFTER).to_bits() as i64 - SHIFTER.to_bits() as i64;
        f64::from_bits(((k + 1023) as u64) << 52)
    }
    const ROUNDER: f64 = 4_503_599_627_370_496.0; // 2⁵²
}

/// `eˣ` as libm's `expf` / `exp` compute it, for `−37 < x < 2` (where `2ᵏ·y` is a normal number
/// and libm's special cases do not arise).
#[inline(always)]
fn exp_in_range<F: ErfConstants>(x: F) -> F {
    let one = F::one();
    let half = F::of(0.5);
    let m = x.abs();
    let negative = x < F::zero();
    // k = trunc(x/ln 2 ± ½) far out, ±1 nearer, 0 near zero; trunc by rounding |t| to an
    // integer with ROUNDER and stepping back where that rounded up.
    let t = F::INVERSE_LN2 * x + if negative { -half } else { half };
    let magnitude = t.abs();
    let rounded = (magnitude + F::ROUNDER) - F::ROUNDER;
    let floor = if rounded > magnitude {
        rounded - one
    } else {
        rounded
    };
    let far = if negative { -floor } else { floor };
    let k = if m >= F::EXP_FAR {
        far
    } else if m >= F::EXP_NEAR {
        if negative {
            -one
        } else {
            one
        }
    } else {
        F::zero()
    };
    let tiny = m < F::EXP_TINY;
    let reduced_argument = if tiny { F::zero() } else { x };
    let high = reduced_argument - k * F::LN2_HIGH;
    let low = k * F::LN2_LOW;
    let r = high - low;
    let rr = r * r;
    let c = r - rr * horner(rr, F::EXP_P);
    let y = one + (r * c / (F::of(2.0) - c) - low + high);
    let result = y * F::power_of_two(k);
    if tiny {
        one + x
    } else {
        result
    }
}

/// The error function, bit-identical to libm's (see the module docs).
#[inline(always)]
pub(crate) fn erf<F: ErfConstants>(x: F) -> F {
    let one = F::one();
    let m = x.abs();
    let negative = x < F::zero();
    let tiny = m < F::TINY;
    let small = m < F::of(0.84375);
    let middle = m < F::of(1.25);
    let tail = m < F::of(6.0);
    // m < 0.84375 and m < 1.25 share one division: R(x²)/S(x²) or P(m − 1)/Q(m − 1).
    let x_small = if tiny || !small { F::zero() } else { x };
    let z = x_small * x_small;
    let s = m - one;
    let (numerator, denominator) = if small {
        (horner(z, &F::PP), horner(z, &F::QQ))
    } else {
        (horner(s, &F::PA), horner(s, &F::QA))
    };
    let ratio = numerator / denominator;
    let small_result = x + x * ratio;
    let middle_result = one - ((one - F::ERX) - ratio);
    // 1.25 ≤ m < 6 (m replaced by 2 elsewhere).
    let m_tail = if middle || !tail { F::of(2.0) } else { m };
    let inverse_square = one / (m_tail * m_tail);
    let near = m_tail < F::TAIL_SPLIT;
    let mut r_coefficients = F::RB;
    let mut s_coefficients = F::SB;
    for (r, &a) in r_coefficients.iter_mut().zip(&F::RA) {
        *r = if near { a } else { *r };
    }
    for (s, &a) in s_coefficients.iter_mut().zip(&F::SA) {
        *s = if near { a } else { *s };
    }
    let r = horner(inverse_square, &r_coefficients);
    let big_s = horner(inverse_square, &s_coefficients);
    let zt = m_tail.truncated();
    let complement = exp_in_range(-zt * zt - F::of(0.5625))
        * exp_in_range((zt - m_tail) * (zt + m_tail) + r / big_s)
        / m_tail;
    let tail_result = one - complement;
    let magnitude = if middle {
        middle_result
    } else if tail {
        tail_result
    } else {
        F::SATURATED
    };
    let signed = if negative { -magnitude } else { magnitude };
    let tiny_result = F::of(0.125) * (F::of(8.0) * x + F::EFX8 * x);
    let result = if tiny {
        tiny_result
    } else if small {
        small_result
    } else {
        signed
    };
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
    use crate::test_random::Xorshift;

    fn check_f32(x: f32) {
        assert_same_bits_f32("erf", erf, libm::erff, x);
    }

    fn check_f64(x: f64) {
        assert_same_bits_f64("erf", erf, libm::erf, x);
    }

    #[test]
    fn f32_bit_identical_to_libm_on_every_61st_bit_pattern() {
        every_61st_f32(check_f32);
        // Every argument from 0.5 to 6 (the ranges with the exponentials), and around each
        // boundary.
        for bits in 0x3f00_0000u32..=0x40c0_0000 {
            check_f32(f32::from_bits(bits));
        }
        let boundaries = [
            0x3180_0000,
            0x3f58_0000,
            0x3fa0_0000,
            0x4036_db6d,
            0x40c0_0000,
        ];
        around_f32_boundaries(&boundaries, check_f32);
    }

    #[test]
    fn f64_bit_identical_to_libm() {
        // Uniform in the exponent (2⁻³⁴ to 2⁴) and in the mantissa, either sign: mostly the
        // ranges with polynomials and exponentials.
        random_f64(11, 2_000_000, 989, 38, check_f64);
        let high_words = [
            0x3e30_0000,
            0x3feb_0000,
            0x3ff4_0000,
            0x4006_db6d,
            0x4018_0000,
        ];
        around_f64_high_words(&high_words, check_f64);
        special_f64(1e300, check_f64);
    }

    #[test]
    fn exponential_bit_identical_to_libm_where_erf_uses_it() {
        let mut random = Xorshift::seeded(5);
        for _ in 0..1_000_000 {
            let u = random.uniform();
            let x = -37.0 + 39.0 * u;
            let small = (u - 0.5) * 1e-3;
            for x in [x, small] {
                let (ours, libm) = (exp_in_range(x), libm::exp(x));
                assert_eq!(ours.to_bits(), libm.to_bits(), "exp({x:e})");
                let x = x as f32;
                let (ours, libm) = (exp_in_range(x), libm::expf(x));
                assert_eq!(ours.to_bits(), libm.to_bits(), "expf({x:e})");
            }
        }
    }
}
