//! `exp` as straight-line arithmetic (no table, no branch but selects), so that loops over
//! independent rows vectorise; the same function runs in every path (one row or lanes, `std` or
//! bare metal), so results stay bit-identical between them.
//!
//! Method (Cody & Waite 1980 range reduction): `n = round(x·log₂e)`, `r = x − n·ln2` with ln2
//! split into a short high part (exact products) and a low part, `eʳ` by its Taylor polynomial on
//! `|r| ≤ ln2/2` (degree 7 in f32: truncation ≤ 1.2·10⁻⁸ relative; degree 12 in f64: ≤ 2·10⁻¹⁶),
//! then `2ⁿ` built from the exponent bits in two factors (so results up to the overflow threshold
//! come out right). Measured error: at most 2 ulp in f32 and f64 against a correctly rounded
//! reference wherever eˣ is a normal number (see the tests). Overflow gives +∞, NaN propagates.
//!
//! **Below the normal range the result is 0** (x < ln 2⁻¹²⁶ ≈ −87.34 in f32, x < ln 2⁻¹⁰²² ≈
//! −708.4 in f64): a subnormal result costs a microcode assist of a hundred cycles or more on
//! x86 (every lane of a vector instruction that makes one), and softmax rows over many classes
//! are mostly such entries (NeuralSort's rows, scaled by n, made 15–50× slower by them). The
//! flush changes a value by less than 2⁻¹²⁶ ≈ 1.2·10⁻³⁸ (2⁻¹⁰²² in f64), far below anything the
//! loss or its gradient resolves. The argument is replaced by 0 before the arithmetic where the
//! result is flushed, so no intermediate is subnormal either.

/// 1/7!, …, 1/1!, 1/0!: the Taylor coefficients of eʳ, highest degree first.
pub(crate) const INVERSE_FACTORIALS_F32: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// 1/12!, …, 1/1!, 1/0!.
const INVERSE_FACTORIALS_F64: [f64; 13] = [
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// ln 2⁻¹²⁶ = −87.336544…: below it [`exp_f32`] returns +0 (eˣ is subnormal there).
pub(crate) const LOWEST_NORMAL_ARGUMENT_F32: f32 = -87.336_54;
/// ln 2⁻¹⁰²² = −708.396418…: below it [`exp_f64`] returns +0.
pub(crate) const LOWEST_NORMAL_ARGUMENT_F64: f64 = -708.396_418_532_264_1;

/// log₂e in single precision (the reduction's `n = round(x·log₂e)`).
pub(crate) const LOG2E_F32: f32 = core::f32::consts::LOG2_E;
/// 1.5 · 2²³: adding it to `x·log₂e` rounds to an integer, which then sits in the sum's low
/// mantissa bits.
pub(crate) const SHIFTER_F32: f32 = 12_582_912.0;
/// ln 2 to 16 significant bits (0.693145751953125): `n·LN2_HI_F32` is exact for |n| < 2⁸.
pub(crate) const LN2_HI_F32: f32 = f32::from_bits(0x3f31_7200);
/// ln 2 − [`LN2_HI_F32`], rounded to single precision.
pub(crate) const LN2_LO_F32: f32 = (core::f64::consts::LN_2 - 0.693_145_751_953_125) as f32;

/// The range reduction and polynomial of `eˣ` in single precision, for an `x` already flushed
/// and clamped: `n = round(x·log₂e)` and `p ≈ e^(x − n·ln 2)`, so that `eˣ = p·2ⁿ`.
#[inline(always)]
fn reduced_f32(x: f32) -> (i32, f32) {
    let shifted = x * LOG2E_F32 + SHIFTER_F32;
    let n = shifted - SHIFTER_F32;
    let r = (x - n * LN2_HI_F32) - n * LN2_LO_F32;
    let mut p = INVERSE_FACTORIALS_F32[0];
    for &c in &INVERSE_FACTORIALS_F32[1..] {
        p = c + r * p;
    }
    // The integer n sits in the low mantissa bits of `shifted` (|n| < 2²²): no float-to-int
    // conversion, which would not vectorise.
    (shifted.to_bits() as i32 - SHIFTER_F32.to_bits() as i32, p)
}

/// [`reduced_f32`] in double precision.
#[inline(always)]
fn reduced_f64(x: f64) -> (i64, f64) {
    const LOG2E: f64 = core::f64::consts::LOG2_E;
    const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5 · 2⁵²
                                                  // fdlibm's split of ln 2: the high part has 32 significant bits, so n·LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let shifted = x * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner on 1/12!, 1/11!, …, 1/1!, 1 (a fixed-length loop: unrolled, branch-free).
    let mut p = INVERSE_FACTORIALS_F64[0];
    for &c in &INVERSE_FACTORIALS_F64[1..] {
        p = c + r * p;
    }
    (shifted.to_bits() as i64 - SHIFTER.to_bits() as i64, p)
}

/// `eˣ` in single precision.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Below ln 2⁻¹²⁶ eˣ is subnormal, flushed to 0 (see the module docs).
    let flush = x < LOWEST_NORMAL_ARGUMENT_F32;
    let x = if flush { 0.0 } else { x };
    let x = if x > 89.0 { 89.0 } else { x };
    let (n, p) = reduced_f32(x);
    let half = n >> 1;
    let first = f32::from_bits(((half + 127) as u32) << 23);
    let second = f32::from_bits(((n - half + 127) as u32) << 23);
    let result = p * first * second;
    if flush {
        0.0
    } else {
        result
    }
}

/// `eˣ` in double precision.
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    // Below ln 2⁻¹⁰²² eˣ is subnormal, flushed to 0 (see the module docs).
    let flush = x < LOWEST_NORMAL_ARGUMENT_F64;
    let x = if flush { 0.0 } else { x };
    let x = if x > 710.0 { 710.0 } else { x };
    let (n, p) = reduced_f64(x);
    let half = n >> 1;
    let first = f64::from_bits(((half + 1023) as u64) << 52);
    let second = f64::from_bits(((n - half + 1023) as u64) << 52);
    let result = p * first * second;
    if flush {
        0.0
    } else {
        result
    }
}

/// `eˣ` for `x ≤ 0` in single precision: the same bits as [`exp_f32`] there (the test checks
/// every 61st f32 in [−104, 0] and every one in [−88, −87]), with less work. There
/// `n = round(x·log₂e)` lies in [−126, 0] once the flush has replaced arguments below
/// ln 2⁻¹²⁶, so `2ⁿ` is one normal number: a single scaling, exact like `exp_f32`'s two
/// (`p·2^⌊n/2⌋` is exact, so both round `p·2ⁿ` once), and no clamp at the overflow end.
/// Every exponential of the loss takes a value less the row's maximum, or `−β|·|`: all `≤ 0`
/// (the plain softmax cross-entropy uses this form). For `x > 0` the result is unspecified
/// (not `eˣ`).
#[inline(always)]
pub fn exp_nonpositive_f32(x: f32) -> f32 {
    let flush = x < LOWEST_NORMAL_ARGUMENT_F32;
    let x = if flush { 0.0 } else { x };
    let (n, p) = reduced_f32(x);
    let result = p * f32::from_bits(((n + 127) as u32) << 23);
    if flush {
        0.0
    } else {
        result
    }
}

/// `eˣ` for `x ≤ 0` in double precision: the same bits as [`exp_f64`] there, as
/// [`exp_nonpositive_f32`] (`n` in [−1022, 0]).
#[inline(always)]
pub fn exp_nonpositive_f64(x: f64) -> f64 {
    let flush = x < LOWEST_NORMAL_ARGUMENT_F64;
    let x = if flush { 0.0 } else { x };
    let (n, p) = reduced_f64(x);
    let result = p * f64::from_bits(((n + 1023) as u64) << 52);
    if flush {
        0.0
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_distance_f32(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn f32_within_two_ulp_of_a_correctly_rounded_exp() {
        let mut worst = 0;
        let mut x = -103.0f32;
        while x < 88.7 {
            let exact = libm::exp(x as f64) as f32; // f64 exp rounded: correctly rounded in practice
            let ours = exp_f32(x);
            if exact.is_normal() {
                worst = worst.max(ulp_distance_f32(ours, exact));
            }
            assert!(!ours.is_subnormal(), "exp({x}) = {ours:e} is subnormal");
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(-200.0), 0.0);
        // The flush: 0 just below ln 2⁻¹²⁶, the smallest normal just above it.
        assert_eq!(exp_f32(-87.34), 0.0);
        assert_eq!(exp_f32(-103.9), 0.0);
        assert!(exp_f32(-87.336).is_normal());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    /// The non-positive forms give `exp`'s bits: every 61st f32 bit pattern in [−104, 0] (both
    /// zeros included) and every one in [−88, −87] around the flush threshold, and f64
    /// arguments across [−745, 0], densely near the flush threshold and 0.
    #[test]
    fn nonpositive_forms_are_bit_identical() {
        let same = |x: f32| {
            assert_eq!(
                exp_nonpositive_f32(x).to_bits(),
                exp_f32(x).to_bits(),
                "f32 {x:e}"
            );
        };
        let mut bits = 0x8000_0000u32; // −0.0, then ever more negative
        while f32::from_bits(bits) >= -104.0 {
            same(f32::from_bits(bits));
            bits += 61;
        }
        let mut bits = (-87.0f32).to_bits();
        while f32::from_bits(bits) >= -88.0 {
            same(f32::from_bits(bits));
            bits += 1;
        }
        assert_eq!(exp_nonpositive_f32(0.0).to_bits(), 1.0f32.to_bits());
        assert_eq!(exp_nonpositive_f32(f32::NEG_INFINITY), 0.0);
        let mut random = crate::test_random::Xorshift::seeded(7);
        for _ in 0..2_000_000 {
            let x = -random.uniform() * 745.0;
            assert_eq!(
                exp_nonpositive_f64(x).to_bits(),
                exp_f64(x).to_bits(),
                "f64 {x:e}"
            );
        }
        for centre in [LOWEST_NORMAL_ARGUMENT_F64, 0.0, -1.0] {
            for step in 0..200_000 {
                let x = (centre + (step as f64 - 100_000.0) * 1e-9).min(0.0);
                assert_eq!(
                    exp_nonpositive_f64(x).to_bits(),
                    exp_f64(x).to_bits(),
                    "f64 {x:e}"
                );
            }
        }
        assert_eq!(exp_nonpositive_f64(-0.0).to_bits(), 1.0f64.to_bits());
        assert_eq!(exp_nonpositive_f64(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn f64_within_two_ulp() {
        let mut worst = 0u64;
        let mut x = -700.0f64;
        while x < 700.0 {
            let reference = libm::exp(x);
            let ours = exp_f64(x);
            worst = worst
                .max((ours.to_bits() as i128 - reference.to_bits() as i128).unsigned_abs() as u64);
            x += 0.001_37;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(800.0), f64::INFINITY);
        assert_eq!(exp_f64(-800.0), 0.0);
        assert_eq!(exp_f64(-708.4), 0.0);
        assert_eq!(exp_f64(-745.0), 0.0);
        assert!(exp_f64(-708.39).is_normal());
        let mut x = -720.0f64;
        while x < -700.0 {
            let ours = exp_f64(x);
            assert!(!ours.is_subnormal(), "exp({x}) = {ours:e} is subnormal");
            if libm::exp(x).is_normal() {
                let reference = libm::exp(x);
                assert!(
                    (ours.to_bits() as i128 - reference.to_bits() as i128).unsigned_abs() <= 2,
                    "exp({x})"
                );
            }
            x += 0.000_91;
        }
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert!(exp_f64(f64::NAN).is_nan());
    }
}
