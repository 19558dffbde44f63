//! The CLI's error: one line naming the file and the problem; the process exits with status 2.

use std::fmt;

/// A user-facing error message.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<difftopk_io::DataError> for CliError {
    fn from(error: difftopk_io::DataError) -> Self {
        CliError(error.to_string())
    }
}

impl From<difftopk_core::Error> for CliError {
    fn from(error: difftopk_core::Error) -> Self {
        CliError(format!("invalid loss configuration: {error}"))
    }
}

impl From<difftopk_autodiff::Error> for CliError {
    fn from(error: difftopk_autodiff::Error) -> Self {
        CliError(error.to_string())
    }
}

impl From<difftopk_gpu::Error> for CliError {
    fn from(error: difftopk_gpu::Error) -> Self {
        match error {
            difftopk_gpu::Error::NoCudaDevice => {
                CliError("--device cuda: no CUDA device (no driver library or no GPU)".into())
            }
            difftopk_gpu::Error::NoNvrtc => CliError(
                "--device cuda: the NVRTC library (libnvrtc) is not installed; the kernels are compiled at run time"
                    .into(),
            ),
            difftopk_gpu::Error::Core(error) => error.into(),
            other => CliError(format!("--device cuda: {other}")),
        }
    }
}

/// `Err(CliError(format!(...)))`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError(format!($($arg)*)))
    };
}

/// `eprintln!` that ignores a failure to write: a closed or full standard error (`2>&1 | head`,
/// `2>/dev/full`) must neither stop a run nor turn into a panic (`eprintln!` panics then).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Result of a CLI step.
pub type CliResult<T> = Result<T, CliError>;
