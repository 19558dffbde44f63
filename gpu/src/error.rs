//! The GPU crate's error: no device, a CUDA or NVRTC failure, or the core's validation.

use std::fmt;

/// What can go wrong on the GPU path.
#[derive(Clone, Debug)]
pub enum Error {
    /// No CUDA driver library, or no device (checked before the first driver call).
    NoCudaDevice,
    /// The NVRTC library is not installed (kernels cannot be compiled at run time).
    NoNvrtc,
    /// A kernel did not compile (its name and NVRTC's log).
    Compile {
        /// Source file.
        kernel: &'static str,
        /// NVRTC's message.
        log: String,
    },
    /// A CUDA driver call failed.
    Driver(String),
    /// This method is not implemented on the GPU yet.
    Unsupported(&'static str),
    /// The configuration or the input was rejected (as on the CPU).
    Core(difftopk_core::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoCudaDevice => write!(f, "no CUDA device (no driver library or no GPU)"),
            Error::NoNvrtc => write!(f, "the NVRTC library (libnvrtc) is not installed"),
            Error::Compile { kernel, log } => write!(f, "{kernel} does not compile: {log}"),
            Error::Driver(message) => write!(f, "CUDA driver error: {message}"),
            Error::Unsupported(what) => write!(f, "not supported on the GPU yet: {what}"),
            Error::Core(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<difftopk_core::Error> for Error {
    fn from(error: difftopk_core::Error) -> Self {
        Error::Core(error)
    }
}

impl From<cudarc::driver::DriverError> for Error {
    fn from(error: cudarc::driver::DriverError) -> Self {
        Error::Driver(format!("{error:?}"))
    }
}
