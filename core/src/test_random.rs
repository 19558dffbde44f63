//! The unit tests' seeded pseudo-random stream: xorshift64 (Marsaglia 2003, shifts 13, 7, 17),
//! so that every test draws its inputs the same way and the same seed gives the same inputs.
//! (The integration tests in `core/tests` have their own copy in `tests/common`: they build as
//! separate crates.)

/// A xorshift64 state (never 0).
pub(crate) struct Xorshift(u64);

impl Xorshift {
    /// The stream that starts after `state` (non-zero) as given.
    pub(crate) fn new(state: u64) -> Self {
        Xorshift(state)
    }

    /// A stream from any seed, 0 included: `seed · ⌊2⁶⁴/φ⌋`, made odd.
    pub(crate) fn seeded(seed: u64) -> Self {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut state = self.0;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        self.0 = state;
        state
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
