//! libm's single-precision logarithm (`libm::logf` 0.2.16, FreeBSD's `e_logf.c`) compiled
//! into this crate as straight-line arithmetic, for one value ([`logf`]) or eight at once
//! ([`logf_lanes`], whose loop vectorises): the same bits as `libm::logf` for every positive
//! normal finite argument (a test compares every 97th f32 bit pattern of that range), and
//! `libm::logf` itself for any other argument (0, negative, subnormal, ∞, NaN). The loss's
//! one-row and lane paths both take their logarithms from here, so they agree bit for bit
//! whatever libm version a build resolves.
//!
//! Method (Sun Microsystems 1993): `x = 2ᵏ·(1 + f)` with `1 + f` in [√2/2, √2],
//! `s = f/(2 + f)`, `ln(1 + f) = f − f²/2 + s·(f²/2 + R(s²))` with the degree-4 polynomial
//! `R` of the constants below (error below 2⁻³⁴·²⁴ for the polynomial), and `k·ln 2` added in
//! two parts. The loss takes one logarithm per row, of its clamped mixture (a positive normal
//! number): this form lets eight rows share the instructions.

// e_logf.c's constants, by their bits (its decimal literals round to these).
const LN2_HI: f32 = f32::from_bits(0x3f31_7180); // 6.9313812256e-01
const LN2_LO: f32 = f32::from_bits(0x3717_f7d1); // 9.0580006145e-06
const LG1: f32 = f32::from_bits(0x3f2a_aaaa); // 0.66666662693
const LG2: f32 = f32::from_bits(0x3ecc_ce13); // 0.40000972152
const LG3: f32 = f32::from_bits(0x3e91_e9ee); // 0.28498786688
const LG4: f32 = f32::from_bits(0x3e78_9e26); // 0.24279078841

/// `libm::logf` of a positive normal finite `x` (unspecified otherwise).
#[inline(always)]
fn logf_positive_normal(x: f32) -> f32 {
    // Reduce x into [√2/2, √2]: k from the exponent of x·(2 − √2) scaled, as e_logf.c does.
    let mut ix = x.to_bits();
    ix = ix.wrapping_add(0x3f80_0000 - 0x3f35_04f3);
    let k = ((ix >> 23) as i32) - 0x7f;
    ix = (ix & 0x007f_ffff) + 0x3f35_04f3;
    let f = f32::from_bits(ix) - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * LG4);
    let t2 = z * (LG1 + w * LG3);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = k as f32;
    s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI
}

/// The natural logarithm: [`logf_positive_normal`] for positive normal finite `x`, else
/// `libm::logf` (0, negative, subnormal, ∞, NaN).
#[inline(always)]
pub(crate) fn logf(x: f32) -> f32 {
    // (e_logf.c returns +0 for 1 before its arithmetic, which gives +0 there too: the test
    // checks 1.)
    if x.is_normal() && x > 0.0 {
        logf_positive_normal(x)
    } else {
        libm::logf(x)
    }
}

/// [`logf`] of each of eight values, in place: the eight at once where all are positive
/// normal finite numbers, else one by one.
#[inline(always)]
pub(crate) fn logf_lanes(values: &mut [f32; 8]) {
    let mut ordinary = true;
    for &x in values.iter() {
        ordinary &= x.is_normal() && x > 0.0;
    }
    if ordinary {
        for x in values.iter_mut() {
            *x = logf_positive_normal(*x);
        }
    } else {
        for x in values.iter_mut() {
            *x = logf(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{logf, logf_lanes, logf_positive_normal};

    /// Every 97th bit pattern of the positive normal floats (and 1, the extremes): the bits
    /// of `libm::logf`.
    #[test]
    fn the_same_bits_as_libm_for_positive_normal_arguments() {
        let mut bits = f32::MIN_POSITIVE.to_bits();
        let mut checked = 0;
        while bits < f32::INFINITY.to_bits() {
            let x = f32::from_bits(bits);
            assert_eq!(
                logf_positive_normal(x).to_bits(),
                libm::logf(x).to_bits(),
                "logf({x:e})"
            );
            checked += 1;
            bits += 97;
        }
        assert!(checked > 20_000_000);
        for x in [
            1.0f32,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-7,
            1.0 - 2e-7,
            0.5,
            2.0,
        ] {
            assert_eq!(logf_positive_normal(x).to_bits(), libm::logf(x).to_bits());
        }
    }

    /// Eight values with a special one among them: all eight still get libm's bits, one by
    /// one too.
    #[test]
    fn special_arguments_take_libm() {
        for special in [0.0f32, -0.0, -1.0, 1e-40, f32::INFINITY, f32::NAN] {
            for position in 0..8 {
                let mut values = [0.25f32, 1.0, 3.0, 1e-7, 0.999_999_8, 7.5, 1e30, 2.0];
                values[position] = special;
                let expected = values.map(libm::logf);
                assert!(values
                    .iter()
                    .zip(&expected)
                    .all(|(&x, e)| logf(x).to_bits() == e.to_bits() || e.is_nan()));
                logf_lanes(&mut values);
                for (got, want) in values.iter().zip(&expected) {
                    assert!(
                        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "{got} against {want}"
                    );
                }
            }
        }
    }
}
