//! Helpers shared by the core's integration tests.

/// A seeded xorshift stream of values uniform in [−4, 4) (seeds that differ only in their lowest
/// bit give the same stream).
pub fn uniform_stream(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64) * 8.0 - 4.0
    }
}

/// `count` logits from [`uniform_stream`], the seed spread first (so that small consecutive
/// seeds give unrelated rows).
#[allow(dead_code)] // not every test file uses it
pub fn uniform_logits(count: usize, seed: u64) -> Vec<f64> {
    let mut next = uniform_stream(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..count).map(|_| next()).collect()
}
