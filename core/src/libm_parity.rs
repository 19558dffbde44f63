//! The unit tests' comparison of a straight-line port against `libm` (`atan.rs`, `erf.rs`): the
//! same bits for every argument given (NaN for NaN), over the argument sets both ports use.

use crate::test_random::Xorshift;

/// Asserts `ours(x)` has the bits of `reference(x)` (any NaN for a NaN).
pub(crate) fn assert_same_bits_f32(
    name: &str,
    ours: fn(f32) -> f32,
    reference: fn(f32) -> f32,
    x: f32,
) {
    let (a, b) = (ours(x), reference(x));
    assert!(
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
        "{name}({x:e}) = {a:e}, libm {b:e}"
    );
}

/// As [`assert_same_bits_f32`] in double precision.
pub(crate) fn assert_same_bits_f64(
    name: &str,
    ours: fn(f64) -> f64,
    reference: fn(f64) -> f64,
    x: f64,
) {
    let (a, b) = (ours(x), reference(x));
    assert!(
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
        "{name}({x:e}) = {a:e}, libm {b:e}"
    );
}

/// Every 61st `f32` bit pattern from 0 (both signs, zeros, subnormals, infinities' and NaN's
/// neighbourhoods: 70 million arguments).
pub(crate) fn every_61st_f32(mut check: impl FnMut(f32)) {
    let mut bits = 0u32;
    loop {
        check(f32::from_bits(bits));
        match bits.checked_add(61) {
            Some(next) => bits = next,
            None => break,
        }
    }
}

/// The 128 `f32` bit patterns around each boundary, with either sign, then ±∞.
pub(crate) fn around_f32_boundaries(boundaries: &[u32], mut check: impl FnMut(f32)) {
    for &boundary in boundaries {
        for bits in boundary - 64..boundary + 64 {
            check(f32::from_bits(bits));
            check(-f32::from_bits(bits));
        }
    }
    check(f32::INFINITY);
    check(f32::NEG_INFINITY);
}

/// `count` `f64` arguments uniform in the mantissa, the biased exponent uniform in
/// `first_exponent .. first_exponent + exponents`, either sign.
pub(crate) fn random_f64(
    seed: u64,
    count: usize,
    first_exponent: u64,
    exponents: u64,
    mut check: impl FnMut(f64),
) {
    let mut random = Xorshift::seeded(seed);
    for _ in 0..count {
        let bits = random.next_u64();
        let exponent = first_exponent + (bits >> 52) % exponents;
        let x = f64::from_bits((exponent << 52) | (bits & 0x000f_ffff_ffff_ffff));
        check(if bits & (1 << 63) != 0 { -x } else { x });
    }
}

/// The 200 `f64` bit patterns around each high word (libm's f64 boundaries), with either sign.
pub(crate) fn around_f64_high_words(high_words: &[u64], mut check: impl FnMut(f64)) {
    for &high in high_words {
        for offset in 0..200u64 {
            let x = f64::from_bits((high << 32).wrapping_add(offset.wrapping_sub(100)));
            check(x);
            check(-x);
        }
    }
}

/// ±0, the smallest subnormal, the smallest normal, `large`, ±∞ and NaN, with either sign.
pub(crate) fn special_f64(large: f64, mut check: impl FnMut(f64)) {
    for x in [
        0.0,
        -0.0,
        5e-324,
        f64::MIN_POSITIVE,
        large,
        f64::INFINITY,
        f64::NAN,
    ] {
        check(x);
        check(-x);
    }
}
