//! Seeded shuffles (SplitMix64 + Fisher–Yates): the same seed gives the same order everywhere.

/// SplitMix64 (Steele, Lea & Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator for `(seed, stream)`; different streams are independent orders.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut generator = SplitMix(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        generator.next_u64();
        generator
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; bias below 2⁻³² for the sizes used here).
    pub fn below(&mut self, bound: usize) -> usize {
        (((self.next_u64() >> 32) * bound as u64) >> 32) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = if i < (1 << 32) - 1 {
                self.below(i + 1)
            } else {
                (self.next_u64() % (i as u64 + 1)) as usize
            };
            items.swap(i, j);
        }
    }
}
