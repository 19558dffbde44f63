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
        CliError(format!(
            "invalid loss configuration: {}",
            core_message(&error)
        ))
    }
}

/// A number for a message: its shortest round-trip decimal form, or scientific notation
/// (`1e-200`) for magnitudes where the decimal form is long (`{}` writes 1e-200 with 200
/// digits).
pub fn number(value: f64) -> String {
    if value != 0.0 && value.is_finite() && !(1e-5..1e16).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// The core's message for `error`, with any long decimal number in it (the core writes the
/// values it refuses with `{}`: 200 digits for 1e-200) shortened by [`number`]. The core's
/// messages hold no file names, only values and words.
pub fn core_message(error: &difftopk_core::Error) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let end = from
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(from.len());
        let (run, after) = from.split_at(end);
        match run.parse::<f64>() {
            Ok(value) if run.len() > 20 => out.push_str(&number(value)),
            _ => out.push_str(run),
        }
        rest = after;
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::{core_message, number};

    #[test]
    fn long_numbers_are_shortened() {
        assert_eq!(number(1e-200), "1e-200");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(0.05), "0.05");
        assert_eq!(number(-400.0), "-400");
        assert_eq!(number(0.0), "0");
        let message =
            core_message(&difftopk_core::Error::InvalidInverseTemperature { value: 1e-200 });
        assert!(
            message.starts_with("inverse temperature (beta) is 1e-200, it must be finite"),
            "{message}"
        );
        assert!(message.len() < 120, "{message}");
        let message = core_message(&difftopk_core::Error::TopkDistributionSum { sum: 0.9 });
        assert!(message.starts_with("P_K sums to 0.9, it must"), "{message}");
    }
}
