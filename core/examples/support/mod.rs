//! What the loss examples share: their batch of logits.

/// `count` roughly normal logits (a sum of four uniforms, centred, times 2√3: variance 4),
/// from a xorshift generator seeded by `seed`: the same values on every run and machine.
pub fn random_logits(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut s = 0.0f32;
            for shift in [0, 16, 32, 48] {
                s += ((state >> shift) & 0xFFFF) as f32 / 65535.0;
            }
            (s - 2.0) * 2.0 * 1.732
        })
        .collect()
}
