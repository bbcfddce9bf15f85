//! Request bodies: JSON, gzip-compressed or not (the SDK gzips create-batch and add-jobs).

use super::PasqalError;
use axum::http::{header, HeaderMap, StatusCode};
use qcloud_service::batches::BatchJobSpec;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::io::Read;

/// Largest decompressed body.
pub const MAX_DECODED_BYTES: u64 = 16 << 20;

pub fn decode_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, PasqalError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let bytes: Vec<u8> = match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" | "" => body.to_vec(),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_DECODED_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| PasqalError::bad(format!("the body is not valid gzip: {e}")))?;
            if out.len() as u64 > MAX_DECODED_BYTES {
                return Err(PasqalError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the decompressed body is too large",
                ));
            }
            out
        }
        other => {
            return Err(PasqalError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding '{other}' is not supported (send gzip or nothing)"),
            ))
        }
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| PasqalError::bad(format!("request body: {} at '{}'", e.inner(), e.path())))
}

#[derive(Debug, Deserialize)]
pub struct CreateBatchDto {
    #[serde(default)]
    pub sequence_builder: Option<String>,
    #[serde(default)]
    pub webhook: Option<String>,
    #[serde(default)]
    pub jobs: Vec<BatchJobDto>,
    #[serde(default)]
    pub open: Option<bool>,
    #[serde(default)]
    pub complete: Option<bool>,
    #[serde(default, alias = "emulator")]
    pub device_type: Option<String>,
    #[serde(default)]
    pub configuration: Option<Value>,
    #[serde(default)]
    pub backend_configuration: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub queue_priority: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchJobDto {
    #[serde(default)]
    pub runs: Option<i64>,
    #[serde(default)]
    pub variables: Option<Value>,
    #[serde(default, alias = "serialized_sequence")]
    pub sequence: Option<String>,
}

impl BatchJobDto {
    pub fn into_spec(self) -> BatchJobSpec {
        BatchJobSpec { runs: self.runs, variables: self.variables, sequence: self.sequence }
    }
}
