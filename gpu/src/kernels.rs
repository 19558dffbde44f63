//! The CUDA C sources, embedded, and their compilation by NVRTC (once per process).

use std::sync::OnceLock;

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::Error;

/// Every kernel source of the crate: (file name, source).
pub const SOURCES: &[(&str, &str)] = &[("topk_loss.cu", include_str!("../kernels/topk_loss.cu"))];

/// Whether the NVRTC library can be loaded (no call into it is made otherwise).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the shared library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one source to PTX for `arch` (for example `compute_90`; `None`: NVRTC's default).
pub fn compile(name: &'static str, source: &str, arch: Option<&'static str>) -> Result<Ptx, Error> {
    if !nvrtc_available() {
        return Err(Error::NoNvrtc);
    }
    let options = CompileOptions {
        arch,
        name: Some(name.to_string()),
        // Exact IEEE division and square root, no fused multiply-add contraction: the kernels
        // then do the core's arithmetic.
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(false),
        ..Default::default()
    };
    compile_ptx_with_opts(source, options).map_err(|e| Error::Compile {
        kernel: name,
        log: format!("{e:?}"),
    })
}

/// The loss module's PTX for `arch`, compiled on first use and cached for the process.
pub fn topk_loss_ptx(arch: &'static str) -> Result<Ptx, Error> {
    static CACHE: OnceLock<Result<Ptx, Error>> = OnceLock::new();
    CACHE
        .get_or_init(|| compile(SOURCES[0].0, SOURCES[0].1, Some(arch)))
        .clone()
}
