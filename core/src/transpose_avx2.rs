//! Moves eight `f32` rows into and out of the lane layout of [`crate::lanes`] (wire-major,
//! `[f32; 8]` per wire) with AVX2 intrinsics (x86-64, where [`crate::cpu`] finds AVX2): 8 × 8
//! blocks transposed in registers (24 shuffles per block) instead of 64 scalar moves. Values
//! are moved, or multiplied by one factor on the way out, so the bits are those of the scalar
//! loops.

use core::arch::x86_64::{
    __m256, _mm256_loadu_ps, _mm256_mul_ps, _mm256_permute2f128_ps, _mm256_set1_ps,
    _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps,
};

/// Transposes the 8 × 8 block `rows` (row r, column c → row c, column r).
#[inline(always)]
unsafe fn transpose(rows: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(rows[0], rows[1]);
    let t1 = _mm256_unpackhi_ps(rows[0], rows[1]);
    let t2 = _mm256_unpacklo_ps(rows[2], rows[3]);
    let t3 = _mm256_unpackhi_ps(rows[2], rows[3]);
    let t4 = _mm256_unpacklo_ps(rows[4], rows[5]);
    let t5 = _mm256_unpackhi_ps(rows[4], rows[5]);
    let t6 = _mm256_unpacklo_ps(rows[6], rows[7]);
    let t7 = _mm256_unpackhi_ps(rows[6], rows[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `lanes[w][r] = source[r·stride + w]` for the 8 rows r and the wires w of `lanes`
/// (`source` holds 8 rows of at least `lanes.len()` values, `stride` apart).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn into_lanes(source: &[f32], stride: usize, lanes: &mut [[f32; 8]]) {
    let n = lanes.len();
    assert!(n <= stride && source.len() >= 7 * stride + n);
    let blocks = n / 8;
    for block in 0..blocks {
        let mut rows = [_mm256_set1_ps(0.0); 8];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = _mm256_loadu_ps(source.as_ptr().add(r * stride + block * 8));
        }
        let columns = transpose(rows);
        for (w, column) in columns.iter().enumerate() {
            _mm256_storeu_ps(lanes[block * 8 + w].as_mut_ptr(), *column);
        }
    }
    for (w, wire) in lanes.iter_mut().enumerate().skip(blocks * 8) {
        for (r, value) in wire.iter_mut().enumerate() {
            *value = source[r * stride + w];
        }
    }
}

/// `destination[r·stride + w] = lanes[w][r] · scale` for the 8 rows r and the wires w of
/// `lanes`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn out_of_lanes(
    lanes: &[[f32; 8]],
    scale: f32,
    destination: &mut [f32],
    stride: usize,
) {
    let n = lanes.len();
    assert!(n <= stride && destination.len() >= 7 * stride + n);
    let factor = _mm256_set1_ps(scale);
    let blocks = n / 8;
    for block in 0..blocks {
        let mut columns = [_mm256_set1_ps(0.0); 8];
        for (w, column) in columns.iter_mut().enumerate() {
            *column = _mm256_loadu_ps(lanes[block * 8 + w].as_ptr());
        }
        let rows = transpose(columns);
        for (r, row) in rows.iter().enumerate() {
            _mm256_storeu_ps(
                destination.as_mut_ptr().add(r * stride + block * 8),
                _mm256_mul_ps(*row, factor),
            );
        }
    }
    for (w, wire) in lanes.iter().enumerate().skip(blocks * 8) {
        for (r, &value) in wire.iter().enumerate() {
            destination[r * stride + w] = value * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    /// Both directions equal the scalar moves, for lengths around the block of 8.
    #[test]
    fn transposes_equal_the_scalar_moves() {
        if !crate::cpu::has_avx2() {
            return;
        }
        for n in [1usize, 7, 8, 9, 16, 23, 100] {
            let stride = n + 3;
            let source: Vec<f32> = (0..8 * stride).map(|i| i as f32 * 0.37 - 5.0).collect();
            let mut lanes = alloc::vec![[f32::NAN; 8]; n];
            // SAFETY: AVX2 checked above.
            unsafe { super::into_lanes(&source, stride, &mut lanes) };
            for (w, wire) in lanes.iter().enumerate() {
                for (r, &value) in wire.iter().enumerate() {
                    assert_eq!(value.to_bits(), source[r * stride + w].to_bits(), "n {n}");
                }
            }
            let mut destination = alloc::vec![f32::NAN; 8 * stride];
            // SAFETY: AVX2 checked above.
            unsafe { super::out_of_lanes(&lanes, 0.3, &mut destination, stride) };
            for r in 0..8 {
                for w in 0..n {
                    let expected = lanes[w][r] * 0.3;
                    assert_eq!(destination[r * stride + w].to_bits(), expected.to_bits());
                }
                assert!(destination[r * stride + n..(r + 1) * stride]
                    .iter()
                    .all(|v| v.is_nan()));
            }
        }
    }
}
