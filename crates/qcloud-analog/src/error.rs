//! The crate's error type. `Invalid` is the user's input being wrong; `TooLarge` is a valid input
//! that asks for more than the limits allow (atoms, memory, duration); `Canceled` is a stopped run.

/// Why a sequence was refused or a run failed. Messages are meant for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalogError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("the emulation was canceled")]
    Canceled,
}

impl AnalogError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        AnalogError::Invalid(msg.into())
    }
    pub fn too_large(msg: impl Into<String>) -> Self {
        AnalogError::TooLarge(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, AnalogError>;
