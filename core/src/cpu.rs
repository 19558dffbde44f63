//! Whether the x86-64 AVX2 code paths may run: known at compile time where the build targets a
//! CPU with the features (`-C target-feature=+avx2,+popcnt`, `-C target-cpu=x86-64-v3` or
//! `native`), else detected once at run time with the `cpuid` and `xgetbv` instructions (from
//! `core::arch`, so with or without `std`: the default, `no_std` build takes the fast paths too).
//!
//! Every AVX2 path computes the same bits as the portable code (no FMA contraction, same
//! operation order), so which one runs changes speed only.
//!
//! Detection (Intel SDM vol. 2A, CPUID; what `std::is_x86_feature_detected!` does): AVX2 needs
//! CPUID.(EAX=7,ECX=0):EBX bit 5, the AVX bit CPUID.1:ECX bit 28, and the operating system's
//! consent to the 256-bit registers: CPUID.1:ECX bit 27 (OSXSAVE) and XCR0 bits 1 and 2 (SSE
//! and AVX state saved on context switches). POPCNT is CPUID.1:ECX bit 23. AVX-512F (the row
//! exponentials' wide kernels) is CPUID.(EAX=7,ECX=0):EBX bit 16 with XCR0 bits 5–7.

use core::sync::atomic::{AtomicU8, Ordering};

/// Detection not yet run.
const UNKNOWN: u8 = 0;
/// Detection ran (so a cached 0 is distinguishable from "not yet").
const DETECTED: u8 = 1;
const AVX2: u8 = 2;
const POPCNT: u8 = 4;
const AVX512F: u8 = 8;
/// AVX-512F on an AMD processor: see [`prefers_avx512`].
const AVX512_AT_FULL_CLOCK: u8 = 16;

/// The detected features (bit set of the constants above), filled on first use.
static FEATURES: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The CPU supports AVX2 (and the operating system its registers).
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_feature = "avx2")]
    {
        true
    }
    #[cfg(not(target_feature = "avx2"))]
    {
        features() & AVX2 != 0
    }
}

/// The CPU supports POPCNT (with AVX2, what the f32 preselection needs).
#[inline]
pub(crate) fn has_popcnt() -> bool {
    #[cfg(target_feature = "popcnt")]
    {
        true
    }
    #[cfg(not(target_feature = "popcnt"))]
    {
        features() & POPCNT != 0
    }
}

/// The CPU supports AVX-512F and AVX2 (and the operating system their registers: the opmask
/// and the 512-bit state).
#[inline]
#[cfg_attr(not(test), allow(dead_code))] // the lanes ask `prefers_avx512`, the tests this
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_feature = "avx512f")]
    {
        true
    }
    #[cfg(not(target_feature = "avx512f"))]
    {
        features() & AVX512F != 0
    }
}

/// Whether the lanes' wide kernels should run: AVX-512F (with AVX2) on an AMD processor
/// (vendor `AuthenticAMD`). AMD's cores run 512-bit instructions at the clock of the rest (Zen 5
/// at full width: NeuralSort at n = 100, m = 16 24.5 → 23.0 µs with the wide exponentials; Zen 4
/// splits them in two); many Intel Xeons lower their clock for a while after 512-bit
/// instructions, and on one an earlier AVX-512 try made the AVX2 code that followed slower
/// (SoftSort at n = 1000, m = 16 89 → 108 µs), so there the AVX2 kernels run. Detected at run
/// time even where the build targets AVX-512 (the vendor is not a target feature).
#[inline]
#[cfg_attr(not(feature = "alloc"), allow(dead_code))] // the lanes need `alloc`
pub(crate) fn prefers_avx512() -> bool {
    features() & AVX512_AT_FULL_CLOCK != 0
}

/// The cached feature bits, detected on the first call (a race only detects twice, with the
/// same answer).
#[inline]
fn features() -> u8 {
    let cached = FEATURES.load(Ordering::Relaxed);
    if cached != UNKNOWN {
        return cached;
    }
    let detected = detect();
    FEATURES.store(detected, Ordering::Relaxed);
    detected
}

/// Runs `cpuid` and, where the OS supports XSAVE, `xgetbv`.
#[allow(dead_code)]
#[allow(unused_unsafe)] // `__cpuid` is a safe function in newer Rust releases
fn detect() -> u8 {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: every x86-64 CPU has `cpuid`.
    let leaf0 = unsafe { __cpuid(0) };
    let max_leaf = leaf0.eax;
    // "AuthenticAMD" in EBX, EDX, ECX.
    let amd = (leaf0.ebx, leaf0.edx, leaf0.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    let leaf1 = unsafe { __cpuid(1) };
    let mut features = DETECTED;
    if leaf1.ecx & (1 << 23) != 0 {
        features |= POPCNT;
    }
    let avx = leaf1.ecx & (1 << 28) != 0;
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if avx && osxsave && max_leaf >= 7 {
        // SAFETY: OSXSAVE set means the OS enabled XSAVE, so `xgetbv` is available.
        let xcr0 = unsafe { extended_control_register() };
        let leaf7 = unsafe { __cpuid_count(7, 0) }.ebx;
        if leaf7 & (1 << 5) != 0 && xcr0 & 0b110 == 0b110 {
            features |= AVX2;
        }
        // AVX-512F: CPUID.(EAX=7,ECX=0):EBX bit 16, and XCR0 bits 5–7 (opmask, the upper
        // halves of ZMM0–15, ZMM16–31) besides SSE and AVX; only with AVX2 (the wide kernels
        // hand an odd last wire to the AVX2 ones).
        if features & AVX2 != 0 && leaf7 & (1 << 16) != 0 && xcr0 & 0b1110_0110 == 0b1110_0110 {
            features |= AVX512F;
            if amd {
                features |= AVX512_AT_FULL_CLOCK;
            }
        }
    }
    features
}

/// XCR0, the operating system's choice of register state it saves.
///
/// # Safety
/// The CPU must support XSAVE and the OS must have enabled it (CPUID.1:ECX.OSXSAVE).
#[allow(dead_code)]
#[target_feature(enable = "xsave")]
unsafe fn extended_control_register() -> u64 {
    core::arch::x86_64::_xgetbv(0)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    /// The detection agrees with the standard library's.
    #[test]
    fn detection_matches_std() {
        let detected = super::detect();
        assert_eq!(
            detected & super::AVX2 != 0,
            std::is_x86_feature_detected!("avx2")
        );
        assert_eq!(
            detected & super::POPCNT != 0,
            std::is_x86_feature_detected!("popcnt")
        );
        assert_eq!(
            detected & super::AVX512F != 0,
            std::is_x86_feature_detected!("avx512f")
        );
        assert_eq!(super::has_avx2(), std::is_x86_feature_detected!("avx2"));
        assert_eq!(
            super::has_avx512f(),
            std::is_x86_feature_detected!("avx512f")
        );
        // The wide kernels run on AMD processors with AVX-512F only.
        #[allow(unused_unsafe)] // `__cpuid` is a safe function in newer Rust releases
        let vendor = unsafe { core::arch::x86_64::__cpuid(0) };
        let amd = [vendor.ebx, vendor.edx, vendor.ecx]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .eq(*b"AuthenticAMD");
        assert_eq!(
            super::prefers_avx512(),
            amd && std::is_x86_feature_detected!("avx512f")
        );
        assert_eq!(super::has_popcnt(), std::is_x86_feature_detected!("popcnt"));
    }
}
