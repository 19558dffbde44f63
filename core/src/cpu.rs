//! Whether the x86-64 AVX2 code paths may run: known at compile time where the build targets a
//! CPU with the features (`-C target-feature=+avx2,+popcnt`, `-C target-cpu=x86-64-v3` or
//! `native`), detected once at run time with the `std` feature otherwise, and `false` in a
//! bare-metal build for a baseline x86-64 CPU (which then runs the portable code, same results).
//!
//! Every AVX2 path computes the same bits as the portable code (no FMA contraction, same
//! operation order), so which one runs changes speed only.

/// The CPU supports AVX2.
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_feature = "avx2")]
    {
        true
    }
    #[cfg(all(not(target_feature = "avx2"), feature = "std"))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(all(not(target_feature = "avx2"), not(feature = "std")))]
    {
        false
    }
}

/// The CPU supports POPCNT (with AVX2, what the f32 preselection needs).
#[inline]
pub(crate) fn has_popcnt() -> bool {
    #[cfg(target_feature = "popcnt")]
    {
        true
    }
    #[cfg(all(not(target_feature = "popcnt"), feature = "std"))]
    {
        std::is_x86_feature_detected!("popcnt")
    }
    #[cfg(all(not(target_feature = "popcnt"), not(feature = "std")))]
    {
        false
    }
}
