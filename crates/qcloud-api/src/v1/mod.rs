//! The native API, `/v1`.

pub mod devices;
pub mod jobs;
pub mod sessions;
