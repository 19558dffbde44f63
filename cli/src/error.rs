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

/// `Err(CliError(format!(...)))`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::error::CliError(format!($($arg)*)))
    };
}

/// Result of a CLI step.
pub type CliResult<T> = Result<T, CliError>;
