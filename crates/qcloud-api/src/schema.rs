//! OpenAPI schemas that the derive cannot write from a field's Rust type: the enumerations of the
//! core model (their values read from the enums themselves, so the document cannot drift from
//! them), the timing model, JSON values with no NUL, and the string rules of
//! `qcloud_service::validate` as patterns. Each is a named component, referenced from the DTOs
//! with `#[schema(value_type = ...)]` or `schema_with`.

use qcloud_service::validate;
use qcloud_service::{
    ClosedReason, DeviceKind, DeviceStatus, DriverKind, IdlePolicy, JobStatus, Priority, SessionMode, SessionState,
};
use std::borrow::Cow;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, Array, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

/// A marker type whose schema is one of the core model's string enumerations.
macro_rules! enum_schema {
    ($(#[$m:meta])* $marker:ident = $name:literal, $core:ty, $doc:literal) => {
        $(#[$m])*
        pub struct $marker;

        impl utoipa::PartialSchema for $marker {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(<$core>::ALL.iter().map(|v| v.as_str())))
                    .description(Some($doc))
                    .into()
            }
        }

        impl utoipa::ToSchema for $marker {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

enum_schema!(
    JobStatusSchema = "JobStatus",
    JobStatus,
    "A job's status: queued -> running -> completed | failed | canceled."
);
enum_schema!(
    SessionStateSchema = "SessionState",
    SessionState,
    "A session's state: pending -> active (-> inactive -> active ...) -> closed."
);
enum_schema!(
    SessionModeSchema = "SessionMode",
    SessionMode,
    "`dedicated` (an IBM Session) or `batch` (an IBM Batch, a Pasqal batch)."
);
enum_schema!(ClosedReasonSchema = "ClosedReason", ClosedReason, "Why a session closed.");
enum_schema!(
    IdlePolicySchema = "IdlePolicy",
    IdlePolicy,
    "What an active session does when its interactive TTL runs out with no job: `deactivate` (give the device back, queue again on the next job) or `time_out` (close)."
);
enum_schema!(PrioritySchema = "Priority", Priority, "Scheduling priority: high before medium before low.");
enum_schema!(DeviceKindSchema = "DeviceKind", DeviceKind, "Gate-model or analog (neutral atoms) device.");
enum_schema!(DriverKindSchema = "DriverKind", DriverKind, "Which driver runs the device's jobs.");
enum_schema!(
    DeviceStatusSchema = "DeviceStatus",
    DeviceStatus,
    "Whether the device takes new work: paused and offline devices get none (their running job finishes)."
);

/// Largest `setup_ms` / `per_shot_ms` / `prep_ms` / `prep_per_circuit_ms` of a timing model (`Timing::validate`): one day.
pub const MAX_TIMING_MS: f64 = 86_400_000.0;

/// The timing model, a closed object: each key optional (0 when absent), 0 to one day in ms.
pub struct TimingSchema;

impl utoipa::PartialSchema for TimingSchema {
    fn schema() -> RefOr<Schema> {
        let ms = |d: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Double)))
                .minimum(Some(0.0))
                .maximum(Some(MAX_TIMING_MS))
                .description(Some(d))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The device's occupancy model: a job keeps the device busy for `setup_ms + shots * per_shot_ms` milliseconds on top of the driver's own time.",
            ))
            .property("setup_ms", ms("Fixed time per job, in milliseconds (default 0)."))
            .property("per_shot_ms", ms("Time per shot, in milliseconds (default 0)."))
            .property("prep_ms", ms("Classical preparation per job before it takes the device, in milliseconds (default 0)."))
            .property(
                "prep_per_circuit_ms",
                ms("Classical preparation per circuit (pub), in milliseconds (default 0)."),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl utoipa::ToSchema for TimingSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timing")
    }
}

/// A string with no NUL character.
pub fn text() -> Object {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(validate::TEXT_PATTERN)).build()
}

/// A property name with no NUL character.
fn key() -> Object {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(validate::TEXT_PATTERN)).build()
}

/// Any JSON value whose strings and keys, at any depth, hold no NUL (the database cannot store
/// it, so the server refuses it with 400).
pub struct JsonValueSchema;

impl utoipa::PartialSchema for JsonValueSchema {
    fn schema() -> RefOr<Schema> {
        let me = || Ref::from_schema_name("JsonValue");
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Null, Type::Boolean])))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(-validate::MAX_JSON_NUMBER))
                    .maximum(Some(validate::MAX_JSON_NUMBER)),
            )
            .item(text())
            .item(ArrayBuilder::new().items(me()))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property_names(Some(key()))
                    .additional_properties(Some(me())),
            )
            .description(Some(
                "Any JSON value; no string or object key may contain NUL (\\u0000), no number exceeds 1e300 in magnitude.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for JsonValueSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonValue")
    }
}

/// A JSON object whose strings and keys, at any depth, hold no NUL.
pub struct JsonObjectSchema;

impl utoipa::PartialSchema for JsonObjectSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property_names(Some(key()))
            .additional_properties(Some(Ref::from_schema_name("JsonValue")))
            .description(Some("A JSON object; no string or key in it, at any depth, may contain NUL (\\u0000)."))
            .into()
    }
}

impl utoipa::ToSchema for JsonObjectSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonObject")
    }
}

/// A device name: [`validate::DEVICE_NAME_PATTERN`].
pub struct DeviceNameSchema;

impl utoipa::PartialSchema for DeviceNameSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(64))
            .pattern(Some(validate::DEVICE_NAME_PATTERN))
            .description(Some("1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-', starting with a letter or digit."))
            .examples([serde_json::json!("noop_1")])
            .into()
    }
}

impl utoipa::ToSchema for DeviceNameSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("DeviceName")
    }
}

/// Tags of a job or session: at most [`validate::MAX_TAGS`], each 1 to
/// [`validate::MAX_TAG_LEN`] characters with no NUL.
pub fn tags() -> Array {
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(validate::MAX_TAG_LEN))
        .pattern(Some(validate::TAG_PATTERN));
    ArrayBuilder::new()
        .items(tag)
        .max_items(Some(validate::MAX_TAGS))
        .description(Some(format!(
            "At most {} tags, each 1 to {} characters with no NUL (\\u0000).",
            validate::MAX_TAGS,
            validate::MAX_TAG_LEN
        )))
        .build()
}

/// A session's job counts: an object keyed by job status, each count at least 1.
pub fn job_counts() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(JobStatus::ALL.iter().map(|v| v.as_str())))
                .build(),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
                .minimum(Some(1)),
        ))
        .description(Some("Number of jobs per status (a status with none is absent)."))
        .build()
}
