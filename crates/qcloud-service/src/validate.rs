//! The rules every front door applies to a command's values before anything is stored: names,
//! tags, shots, execution times, page sizes, keys. One module, so the native API and the facades
//! refuse the same inputs with the same messages (each front door wraps them in its own shape).

use crate::config::ServiceConfig;
use crate::error::{Result, ServiceError};
use chrono::Duration;
use qcloud_core::Timing;

/// Parse one of a core enumeration's names, naming the field when it is none of them.
pub fn enum_field<T: std::str::FromStr<Err = qcloud_core::UnknownValue>>(field: &'static str, v: &str) -> Result<T> {
    v.parse().map_err(|e: qcloud_core::UnknownValue| ServiceError::invalid("invalid_field", format!("{field}: {e}")))
}

/// [`enum_field`] for an optional value.
pub fn opt_enum_field<T: std::str::FromStr<Err = qcloud_core::UnknownValue>>(
    field: &'static str,
    v: Option<&str>,
) -> Result<Option<T>> {
    v.map(|v| enum_field(field, v)).transpose()
}

// The rules below are also stated in the API's schema (`openapi.yaml`), as these patterns and
// bounds: the two must say the same, or a generated request the schema calls valid is refused
// (or one it calls invalid is taken). Lengths count characters (Unicode scalar values), as JSON
// Schema's `minLength` / `maxLength` do, not bytes.

/// Any text the server stores or compares in a query: no NUL (Postgres refuses it).
pub const TEXT_PATTERN: &str = r"^[^\u0000]*$";

/// Most tags on a job or session, and the longest tag (in characters).
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_LEN: usize = 128;
/// One tag: 1 to [`MAX_TAG_LEN`] characters, no NUL.
pub const TAG_PATTERN: &str = r"^[^\u0000]{1,128}$";

pub fn tags(tags: &[String]) -> Result<()> {
    tags.iter().try_for_each(|t| text("tags", t))?;
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.chars().count() > MAX_TAG_LEN) {
        return Err(ServiceError::invalid(
            "invalid_field",
            format!("tags: at most {MAX_TAGS} tags of 1 to {MAX_TAG_LEN} characters"),
        ));
    }
    Ok(())
}

fn nul_error(field: &str) -> ServiceError {
    ServiceError::invalid("invalid_field", format!("{field}: text may not contain NUL (\\u0000)"))
}

/// Postgres refuses NUL in `text` and `jsonb`: every string that is stored or compared in a query
/// goes through this (or [`json_text`]) first, so that it is a 400 and not a database error.
pub fn text(field: &str, v: &str) -> Result<()> {
    if v.contains('\0') {
        return Err(nul_error(field));
    }
    Ok(())
}

/// [`text`] for an optional value.
pub fn opt_text(field: &str, v: Option<&str>) -> Result<()> {
    v.map_or(Ok(()), |v| text(field, v))
}

/// The largest magnitude of a number in a stored JSON value (payloads, configs). Postgres keeps a
/// `jsonb` number as an exact decimal and gives it back written out in full (`1e308` comes back
/// as 309 digits); serde_json reads such a long number back imprecisely and, near `f64::MAX`, as
/// out of range, so a device config holding `-1.7976931348623157e308` made every later read of
/// the device a 500. Well inside the range, every number reads back.
pub const MAX_JSON_NUMBER: f64 = 1e300;

/// [`text`] for every key and string of a JSON value, at any depth (an explicit stack: a value
/// built in process may be deeper than the parser's recursion limit); and every number within
/// [`MAX_JSON_NUMBER`].
pub fn json_text(field: &str, v: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => text(field, s)?,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (k, item) in map {
                    text(field, k)?;
                    stack.push(item);
                }
            }
            Value::Number(n) => {
                if n.as_f64().is_none_or(|f| !(-MAX_JSON_NUMBER..=MAX_JSON_NUMBER).contains(&f)) {
                    return Err(ServiceError::invalid(
                        "invalid_field",
                        format!("{field}: numbers must be between -1e300 and 1e300, got {n}"),
                    ));
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    Ok(())
}

pub fn shots(shots: Option<i64>, cfg: &ServiceConfig) -> Result<()> {
    match shots {
        Some(s) if !(1..=cfg.max_shots).contains(&s) => Err(ServiceError::invalid(
            "invalid_field",
            format!("shots must be between 1 and {}, got {s}", cfg.max_shots),
        )),
        _ => Ok(()),
    }
}

/// Rule 10: a job's maximum execution time in seconds (IBM `cost`), or the server's default.
pub fn max_execution(seconds: Option<f64>, cfg: &ServiceConfig) -> Result<Duration> {
    let Some(s) = seconds else { return Ok(cfg.default_max_execution) };
    let max_s = cfg.max_max_execution.num_seconds() as f64;
    if !s.is_finite() || s <= 0.0 || s > max_s {
        return Err(ServiceError::invalid(
            "invalid_field",
            format!("max_execution_time must be between 0 and {max_s} seconds, got {s}"),
        ));
    }
    Ok(Duration::milliseconds((s * 1000.0).ceil() as i64))
}

/// The size of a job's payload as JSON, against the server's limit.
/// The payload's size in bytes of JSON, refused above the limit.
pub fn payload(payload: &serde_json::Value, cfg: &ServiceConfig) -> Result<usize> {
    let len = serde_json::to_vec(payload).map(|v| v.len()).unwrap_or(usize::MAX);
    if len > cfg.max_payload_bytes {
        return Err(ServiceError::invalid(
            "payload_too_large",
            format!("payload is {len} bytes; the limit is {}", cfg.max_payload_bytes),
        ));
    }
    Ok(len)
}

/// Idempotency keys: 1 to 255 visible ASCII characters (`!` to `~`; no space, which HTTP may
/// trim from a header's ends).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

pub fn idempotency_key(key: Option<&str>) -> Result<()> {
    match key {
        Some(k) if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(ServiceError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ))
        }
        _ => Ok(()),
    }
}

/// Device names: 1 to 64 characters of `A-Z a-z 0-9 _ . -`, the first a letter or digit (so that
/// no name is `.` or `..`, which a URL path would resolve away).
pub const DEVICE_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$";

pub fn device_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(ServiceError::invalid(
            "invalid_field",
            "name: 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Most qubits (or atoms) a device may declare.
pub const MAX_NUM_QUBITS: i32 = 100_000;

pub fn num_qubits(n: i32) -> Result<()> {
    if !(0..=MAX_NUM_QUBITS).contains(&n) {
        return Err(ServiceError::invalid("invalid_field", "num_qubits must be between 0 and 100000"));
    }
    Ok(())
}

/// A device's timing model, from its JSON form.
pub fn timing(v: &serde_json::Value) -> Result<Timing> {
    let t: Timing = serde_json::from_value(v.clone())
        .map_err(|e| ServiceError::invalid("invalid_field", format!("timing: {e}")))?;
    timing_values(&t)?;
    Ok(t)
}

/// A timing model's values are in range.
pub fn timing_values(t: &Timing) -> Result<()> {
    t.validate().map_err(|m| ServiceError::invalid("invalid_field", m))
}

/// A device's config is a JSON object.
pub fn device_config(v: &serde_json::Value) -> Result<()> {
    if !v.is_object() {
        return Err(ServiceError::invalid("invalid_field", "config must be a JSON object"));
    }
    json_text("config", v)
}

/// Project and user names: 1 to 128 printable characters.
pub fn name(what: &'static str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control()) {
        return Err(ServiceError::invalid("invalid_name", format!("{what} must be 1 to 128 printable characters")));
    }
    Ok(())
}

/// Default and largest page of a listing.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

pub fn page_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) if (1..=MAX_PAGE).contains(&l) => Ok(l),
        Some(l) => {
            Err(ServiceError::invalid("invalid_field", format!("limit must be between 1 and {MAX_PAGE}, got {l}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qcloud_core::Priority;
    use serde_json::json;

    fn code(r: Result<impl std::fmt::Debug>) -> &'static str {
        match r {
            Err(ServiceError::Invalid { code, .. }) => code,
            other => panic!("expected an invalid-input error, got {other:?}"),
        }
    }

    #[test]
    fn enums_name_the_field_and_the_choices() {
        assert_eq!(enum_field::<Priority>("priority", "high").unwrap(), Priority::High);
        let e = enum_field::<Priority>("priority", "urgent").unwrap_err().to_string();
        assert!(e.starts_with("priority: ") && e.contains("low, medium, high"), "{e}");
        assert_eq!(opt_enum_field::<Priority>("priority", None).unwrap(), None);
    }

    #[test]
    fn tags_are_bounded() {
        assert!(tags(&["a".into(), "b".into()]).is_ok());
        assert_eq!(code(tags(&["".into()])), "invalid_field");
        assert_eq!(code(tags(&["x".repeat(129)])), "invalid_field");
        assert_eq!(code(tags(&vec!["t".to_string(); 33])), "invalid_field");
        assert!(tags(&vec!["t".to_string(); 32]).is_ok());
    }

    /// The schema's `maxLength: 128` counts characters: 128 two-byte characters (256 bytes) are
    /// a valid tag, 129 are not (the byte count refused the first).
    #[test]
    fn tag_length_counts_characters_not_bytes() {
        assert!(tags(&["é".repeat(128)]).is_ok());
        assert!(tags(&["😀".repeat(128)]).is_ok());
        assert_eq!(code(tags(&["é".repeat(129)])), "invalid_field");
    }

    #[test]
    fn shots_and_execution_times_are_in_range() {
        let cfg = ServiceConfig::default();
        assert!(shots(None, &cfg).is_ok() && shots(Some(1), &cfg).is_ok());
        assert_eq!(code(shots(Some(0), &cfg)), "invalid_field");
        assert_eq!(code(shots(Some(cfg.max_shots + 1), &cfg)), "invalid_field");
        assert_eq!(max_execution(None, &cfg).unwrap(), cfg.default_max_execution);
        assert_eq!(max_execution(Some(1.5), &cfg).unwrap(), Duration::milliseconds(1500));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            assert_eq!(code(max_execution(Some(bad), &cfg)), "invalid_field", "{bad}");
        }
    }

    #[test]
    fn payloads_over_the_limit_are_too_large() {
        let cfg = ServiceConfig { max_payload_bytes: 16, ..ServiceConfig::default() };
        assert!(payload(&json!({"a": 1}), &cfg).is_ok());
        assert_eq!(code(payload(&json!({"a": "0123456789abcdef"}), &cfg)), "payload_too_large");
    }

    #[test]
    fn keys_names_and_devices() {
        assert!(idempotency_key(None).is_ok() && idempotency_key(Some("k")).is_ok());
        assert_eq!(code(idempotency_key(Some(""))), "invalid_idempotency_key");
        assert_eq!(code(idempotency_key(Some(&"k".repeat(256)))), "invalid_idempotency_key");
        assert!(idempotency_key(Some(&"!~".repeat(127))).is_ok());
        // The schema's pattern `^[!-~]{1,255}$`: no space, tab or other control character.
        for bad in ["a b", " k", "k\t", "k\u{7f}"] {
            assert_eq!(code(idempotency_key(Some(bad))), "invalid_idempotency_key", "{bad:?}");
        }
        assert!(device_name("sim_statevector-2.a").is_ok() && device_name("EMU_FREE").is_ok());
        assert!(device_name("0").is_ok() && device_name(&"d".repeat(64)).is_ok());
        for bad in ["", "a b", "a/b", &"d".repeat(65), ".", "..", "_x", "-x", ".hidden", "é"] {
            assert_eq!(code(device_name(bad)), "invalid_field", "{bad:?}");
        }
        assert!(name("project", "proj-a").is_ok());
        assert_eq!(code(name("project", "a\u{0}b")), "invalid_name");
        assert_eq!(code(num_qubits(-1)), "invalid_field");
        assert!(num_qubits(127).is_ok());
    }

    #[test]
    fn timing_and_config() {
        assert_eq!(timing(&json!({"setup_ms": 5})).unwrap().setup_ms, 5.0);
        assert_eq!(code(timing(&json!({"setup_ms": -1}))), "invalid_field");
        assert_eq!(code(timing(&json!({"nope": 1}))), "invalid_field");
        assert!(device_config(&json!({})).is_ok());
        assert_eq!(code(device_config(&json!([1]))), "invalid_field");
        assert_eq!(code(device_config(&json!({"basis_gates": ["x\u{0}"]}))), "invalid_field");
    }

    #[test]
    fn nul_is_refused_in_text_and_json_naming_the_field() {
        assert!(text("device", "noop_1").is_ok() && opt_text("tag", None).is_ok());
        let e = text("device", "a\u{0}b").unwrap_err();
        assert_eq!(e.to_string(), "device: text may not contain NUL (\\u0000)");
        assert_eq!(code(opt_text("tag", Some("\u{0}"))), "invalid_field");
        assert!(json_text("payload", &json!({"a": ["b", {"c": 1, "d": null}], "e": true})).is_ok());
        for bad in [
            json!("\u{0}"),
            json!({"a": "\u{0}"}),
            json!({"a\u{0}": 1}),
            json!([1, [2, {"deep": ["x\u{0}y"]}]]),
            json!({"k": {"a\u{0}": null}}),
        ] {
            let e = json_text("payload", &bad).unwrap_err();
            assert!(e.to_string().starts_with("payload: "), "{bad}: {e}");
        }
        // Deeper than the parser allows (128): the walk does not recurse.
        let mut deep = json!("\u{0}");
        for _ in 0..300 {
            deep = json!([deep]);
        }
        assert_eq!(code(json_text("payload", &deep)), "invalid_field");
        assert_eq!(code(tags(&["ok".into(), "b\u{0}".into()])), "invalid_field");
        assert_eq!(code(device_name("a\u{0}b")), "invalid_field");
    }

    #[test]
    fn json_numbers_the_database_cannot_give_back_are_refused() {
        assert!(json_text("config", &json!({"a": [1e300, -1e300, 5e-324, u64::MAX, i64::MIN]})).is_ok());
        for bad in [json!(-1.7976931348623157e308), json!({"a": [1e301]}), json!({"k": {"x": f64::MAX}})] {
            let e = json_text("config", &bad).unwrap_err();
            assert!(e.to_string().starts_with("config: numbers must be between"), "{bad}: {e}");
        }
    }

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_limit(Some(500)).unwrap(), 500);
        assert_eq!(code(page_limit(Some(0))), "invalid_field");
        assert_eq!(code(page_limit(Some(501))), "invalid_field");
    }
}
