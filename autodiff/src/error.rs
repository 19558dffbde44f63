//! One error type for the adapter: the core's errors and dfdx's device errors.

use core::fmt;

/// What can go wrong in a dfdx op of this crate.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    /// The core rejected the configuration or the input (it names the row, column or value).
    Core(difftopk_core::Error),
    /// dfdx's CPU device failed (out of memory, wrong element count).
    Device(dfdx::tensor::CpuError),
    /// An optimiser hyper-parameter is out of its range (named, with the value).
    InvalidHyperParameter {
        /// Which one (`"learning rate"`, `"beta1"`, …) and its range.
        name: &'static str,
        /// The offending value.
        value: f64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Core(error) => write!(f, "{error}"),
            Error::Device(error) => write!(f, "dfdx device error: {error:?}"),
            Error::InvalidHyperParameter { name, value } => write!(f, "{name} is {value}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<difftopk_core::Error> for Error {
    fn from(error: difftopk_core::Error) -> Self {
        Error::Core(error)
    }
}

impl From<dfdx::tensor::CpuError> for Error {
    fn from(error: dfdx::tensor::CpuError) -> Self {
        Error::Device(error)
    }
}
