//! The CUDA C sources, embedded, and their compilation by NVRTC (once per process).

use std::sync::Mutex;

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::Error;

/// Every kernel source of the crate: (file name, source).
pub const SOURCES: &[(&str, &str)] = &[
    ("topk_loss.cu", include_str!("../kernels/topk_loss.cu")),
    ("head.cu", include_str!("../kernels/head.cu")),
];

/// Index in [`SOURCES`] of the losses and the top-k matrix operator.
pub const LOSS_SOURCE: usize = 0;
/// Index in [`SOURCES`] of the linear head's step kernels.
pub const HEAD_SOURCE: usize = 1;

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

/// The PTX of `SOURCES[source]` for a device of compute capability `major.minor`, compiled on
/// first use and cached for the process (one entry per source and architecture).
pub fn ptx(source: usize, major: i32, minor: i32) -> Result<Ptx, Error> {
    /// (source, major, minor) and its PTX.
    type Entry = ((usize, i32, i32), Ptx);
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (source, major, minor);
    if let Some((_, ptx)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(ptx.clone());
    }
    // NVRTC wants a `&'static str`; one short string per architecture, leaked once.
    let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
    let (name, text) = SOURCES[source];
    let ptx = compile(name, text, Some(arch))?;
    cache.push((key, ptx.clone()));
    Ok(ptx)
}
