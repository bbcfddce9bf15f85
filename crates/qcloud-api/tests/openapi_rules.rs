//! The document states the server's rules with the server's own values: each enum lists exactly
//! the core enum's names, each bound and pattern is the constant `qcloud_service::validate` (or
//! the default configuration) enforces, every operation declares the responses it can give, and
//! the links that stateful testing follows are there. (Whether the server really answers as the
//! document says is schemathesis' part: tests/compat/schemathesis.)

use qcloud_core::rules::{TtlPolicy, MIN_TTL_S};
use qcloud_service::list::CURSOR_PATTERN;
use qcloud_service::validate;
use qcloud_service::{
    ClosedReason, DeviceKind, DeviceStatus, DriverKind, IdlePolicy, JobStatus, Priority, ServiceConfig, SessionMode,
    SessionState, Timing,
};
use serde_json::{json, Value};

fn doc() -> Value {
    serde_yaml::from_str(&qcloud_api::openapi::yaml()).expect("the document is YAML")
}

/// Follows `$ref`s within the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local reference");
            resolve(doc, doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {r}")))
        }
        None => v,
    }
}

/// A property's schema, through `$ref`, `allOf` and a nullable `oneOf` (`[{type: null}, X]`).
fn prop<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
    let s = resolve(doc, &doc["components"]["schemas"][schema]);
    let object = s.get("allOf").and_then(|a| a.get(0)).map(|o| resolve(doc, o)).unwrap_or(s);
    let p = resolve(doc, &object["properties"][name]);
    assert!(!p.is_null(), "{schema}.{name} is not in the document");
    non_null(doc, p)
}

fn non_null<'a>(doc: &'a Value, p: &'a Value) -> &'a Value {
    match p.get("oneOf").and_then(Value::as_array) {
        Some(alts) => alts.iter().map(|a| resolve(doc, a)).find(|a| a["type"] != "null").expect("a non-null branch"),
        None => p,
    }
}

fn enum_names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Value {
    Value::from(all.iter().map(|&v| name(v)).collect::<Vec<_>>())
}

fn op<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .find(|o| o["operationId"] == id)
        .unwrap_or_else(|| panic!("no operation {id}"))
}

fn param<'a>(doc: &'a Value, op_id: &str, name: &str) -> &'a Value {
    let p = op(doc, op_id)["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{op_id} has no parameter {name}"));
    non_null(doc, resolve(doc, &p["schema"]))
}

#[test]
fn enums_are_the_core_enums() {
    let d = doc();
    let cases: Vec<(&str, &str, Value)> = vec![
        ("JobView", "status", enum_names(JobStatus::ALL, JobStatus::as_str)),
        ("JobView", "priority", enum_names(Priority::ALL, Priority::as_str)),
        ("NewJobRequest", "priority", enum_names(Priority::ALL, Priority::as_str)),
        ("SessionView", "state", enum_names(SessionState::ALL, SessionState::as_str)),
        ("SessionView", "mode", enum_names(SessionMode::ALL, SessionMode::as_str)),
        ("SessionView", "closed_reason", enum_names(ClosedReason::ALL, ClosedReason::as_str)),
        ("SessionView", "idle_policy", enum_names(IdlePolicy::ALL, IdlePolicy::as_str)),
        ("NewSessionRequest", "mode", enum_names(SessionMode::ALL, SessionMode::as_str)),
        ("NewSessionRequest", "idle_policy", enum_names(IdlePolicy::ALL, IdlePolicy::as_str)),
        ("NewSessionRequest", "priority", enum_names(Priority::ALL, Priority::as_str)),
        ("DeviceView", "kind", enum_names(DeviceKind::ALL, DeviceKind::as_str)),
        ("DeviceView", "driver", enum_names(DriverKind::ALL, DriverKind::as_str)),
        ("DeviceView", "status", enum_names(DeviceStatus::ALL, DeviceStatus::as_str)),
        ("NewDeviceRequest", "kind", enum_names(DeviceKind::ALL, DeviceKind::as_str)),
        ("NewDeviceRequest", "driver", enum_names(DriverKind::ALL, DriverKind::as_str)),
        ("NewDeviceRequest", "status", enum_names(DeviceStatus::ALL, DeviceStatus::as_str)),
        ("DevicePatch", "status", enum_names(DeviceStatus::ALL, DeviceStatus::as_str)),
    ];
    for (schema, field, want) in cases {
        assert_eq!(prop(&d, schema, field)["enum"], want, "{schema}.{field}");
    }
    assert_eq!(param(&d, "list_jobs", "status")["enum"], enum_names(JobStatus::ALL, JobStatus::as_str));
    assert_eq!(param(&d, "list_sessions", "state")["enum"], enum_names(SessionState::ALL, SessionState::as_str));
    assert_eq!(param(&d, "list_sessions", "mode")["enum"], enum_names(SessionMode::ALL, SessionMode::as_str));
    let counts = prop(&d, "SessionView", "jobs");
    assert_eq!(counts["propertyNames"]["enum"], enum_names(JobStatus::ALL, JobStatus::as_str));
}

#[test]
fn bounds_and_patterns_are_the_servers() {
    let d = doc();
    let cfg = ServiceConfig::default();
    let ttl = TtlPolicy::default();

    let shots = prop(&d, "NewJobRequest", "shots");
    assert_eq!((shots["minimum"].as_i64(), shots["maximum"].as_i64()), (Some(1), Some(cfg.max_shots)));
    let exec = prop(&d, "NewJobRequest", "max_execution_time");
    assert_eq!(exec["exclusiveMinimum"].as_f64(), Some(0.0));
    assert_eq!(exec["maximum"].as_f64(), Some(cfg.max_max_execution.num_seconds() as f64));
    for (field, max) in [("max_ttl", ttl.max_max_ttl), ("interactive_ttl", ttl.max_interactive_ttl)] {
        let p = prop(&d, "NewSessionRequest", field);
        assert_eq!(p["minimum"].as_f64(), Some(MIN_TTL_S), "{field}");
        assert_eq!(p["maximum"].as_f64(), Some(max.num_seconds() as f64), "{field}");
    }
    for schema in ["NewDeviceRequest", "DeviceView"] {
        let n = prop(&d, schema, "num_qubits");
        assert_eq!((n["minimum"].as_i64(), n["maximum"].as_i64()), (Some(0), Some(validate::MAX_NUM_QUBITS as i64)));
        assert_eq!(prop(&d, schema, "name")["pattern"], validate::DEVICE_NAME_PATTERN, "{schema}.name");
    }
    for schema in ["NewJobRequest", "NewSessionRequest"] {
        assert_eq!(prop(&d, schema, "device")["pattern"], validate::DEVICE_NAME_PATTERN, "{schema}.device");
        let tags = prop(&d, schema, "tags");
        assert_eq!(tags["maxItems"].as_u64(), Some(validate::MAX_TAGS as u64), "{schema}.tags");
        assert_eq!(tags["items"]["pattern"], validate::TAG_PATTERN, "{schema}.tags");
        assert_eq!(tags["items"]["maxLength"].as_u64(), Some(validate::MAX_TAG_LEN as u64), "{schema}.tags");
        assert_eq!(tags["items"]["minLength"].as_u64(), Some(1), "{schema}.tags");
    }
    assert_eq!(prop(&d, "NewJobRequest", "program")["pattern"], validate::TEXT_PATTERN);
    assert_eq!(param(&d, "get_device", "name")["pattern"], validate::DEVICE_NAME_PATTERN);
    assert_eq!(param(&d, "update_device", "name")["pattern"], validate::DEVICE_NAME_PATTERN);
    assert_eq!(param(&d, "submit_job", "Idempotency-Key")["pattern"], validate::IDEMPOTENCY_KEY_PATTERN);
    for list in ["list_jobs", "list_sessions"] {
        assert_eq!(param(&d, list, "cursor")["pattern"], CURSOR_PATTERN, "{list}");
        let limit = param(&d, list, "limit");
        assert_eq!(limit["minimum"].as_i64(), Some(1), "{list}");
        assert_eq!(limit["maximum"].as_i64(), Some(validate::MAX_PAGE), "{list}");
        for filter in ["device", "tag"] {
            assert_eq!(param(&d, list, filter)["pattern"], validate::TEXT_PATTERN, "{list} {filter}");
        }
    }
}

/// `timing` is closed: its four keys, each 0 to one day in ms, exactly the range `Timing::validate`
/// takes.
#[test]
fn timing_is_a_closed_object_with_the_validated_range() {
    let d = doc();
    let t = resolve(&d, &d["components"]["schemas"]["Timing"]);
    assert_eq!(t["additionalProperties"], json!(false));
    let keys: Vec<&String> = t["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["per_shot_ms", "prep_ms", "prep_per_circuit_ms", "setup_ms"]);
    for key in ["setup_ms", "per_shot_ms", "prep_ms", "prep_per_circuit_ms"] {
        let (min, max) =
            (t["properties"][key]["minimum"].as_f64().unwrap(), t["properties"][key]["maximum"].as_f64().unwrap());
        let at = |v: f64| {
            let mut timing = Timing::default();
            match key {
                "setup_ms" => timing.setup_ms = v,
                "per_shot_ms" => timing.per_shot_ms = v,
                "prep_ms" => timing.prep_ms = v,
                _ => timing.prep_per_circuit_ms = v,
            }
            timing.validate().is_ok()
        };
        assert!(at(min) && at(max), "{key}: the bounds themselves are taken");
        assert!(!at(min - 1e-9) && !at(max + 1.0), "{key}: past the bounds is refused");
    }
    for schema in ["NewDeviceRequest", "DevicePatch", "DeviceView"] {
        assert!(d["components"]["schemas"][schema]["properties"]["timing"].to_string().contains("Timing"), "{schema}");
    }
}

/// Strings and keys of JSON values (payloads, configs) may hold no NUL, at any depth.
#[test]
fn json_values_refuse_nul_at_any_depth() {
    let d = doc();
    let value = &d["components"]["schemas"]["JsonValue"];
    let branches = value["anyOf"].as_array().expect("JsonValue is a union");
    let string = branches.iter().find(|b| b["type"] == "string").expect("a string branch");
    assert_eq!(string["pattern"], validate::TEXT_PATTERN);
    let number = branches.iter().find(|b| b["type"] == "number").expect("a number branch");
    assert_eq!(number["maximum"].as_f64(), Some(validate::MAX_JSON_NUMBER));
    assert_eq!(number["minimum"].as_f64(), Some(-validate::MAX_JSON_NUMBER));
    let object = branches.iter().find(|b| b["type"] == "object").expect("an object branch");
    assert_eq!(object["propertyNames"]["pattern"], validate::TEXT_PATTERN);
    assert_eq!(object["additionalProperties"]["$ref"], "#/components/schemas/JsonValue");
    let array = branches.iter().find(|b| b["type"] == "array").expect("an array branch");
    assert_eq!(array["items"]["$ref"], "#/components/schemas/JsonValue");
    let payload = prop(&d, "NewJobRequest", "payload");
    assert_eq!(payload["type"], "object");
    assert_eq!(payload["propertyNames"]["pattern"], validate::TEXT_PATTERN);
}

/// Every operation declares 401, 429 and 503 (those two with `Retry-After`); one with a body also
/// 400, 413 and 415; the job submission 422 as well.
#[test]
fn every_operation_declares_the_responses_it_can_give() {
    let d = doc();
    for (path, item) in d["paths"].as_object().unwrap() {
        for (method, o) in item.as_object().unwrap() {
            let responses = o["responses"].as_object().unwrap();
            let mut want = vec!["401", "429", "503"];
            if o.get("requestBody").is_some() {
                want.extend(["400", "413", "415"]);
            }
            for status in want {
                let r = responses.get(status).unwrap_or_else(|| panic!("{method} {path} does not declare {status}"));
                let r = resolve(&d, r);
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
                if status == "429" || status == "503" {
                    assert_eq!(r["headers"]["Retry-After"]["schema"]["type"], "integer", "{method} {path} {status}");
                }
            }
        }
    }
    let submit = op(&d, "submit_job")["responses"].as_object().unwrap();
    for status in ["200", "201", "403", "404", "409", "422"] {
        assert!(submit.contains_key(status), "submit_job does not declare {status}");
    }
    assert!(op(&d, "get_device")["responses"].get("400").is_some(), "a NUL in a device name is 400");
}

/// POST /v1/jobs needs `device` or `session_id`: the schema says so.
#[test]
fn a_job_needs_a_device_or_a_session() {
    let d = doc();
    let s = &d["components"]["schemas"]["NewJobRequest"];
    let either = s["allOf"][1]["anyOf"].as_array().expect("allOf [object, anyOf]");
    let required: Vec<&Value> = either.iter().map(|b| &b["required"]).collect();
    assert_eq!(required, [&json!(["device"]), &json!(["session_id"])]);
}

#[test]
fn links_lead_from_created_objects_to_their_routes() {
    let d = doc();
    let links = |id: &str, status: &str| -> Vec<(String, String)> {
        op(&d, id)["responses"][status]["links"]
            .as_object()
            .map(|m| m.values().map(|l| (l["operationId"].as_str().unwrap().to_string(), l.to_string())).collect())
            .unwrap_or_default()
    };
    let targets = |id: &str, status: &str| -> Vec<String> {
        let mut t: Vec<String> = links(id, status).into_iter().map(|(t, _)| t).collect();
        t.sort();
        t
    };
    assert_eq!(targets("create_device", "201"), ["create_session", "get_device", "submit_job", "update_device"]);
    assert_eq!(targets("create_session", "201"), ["cancel_session", "close_session", "get_session", "submit_job"]);
    for status in ["200", "201"] {
        assert_eq!(targets("submit_job", status), ["cancel_job", "get_job", "get_job_result"]);
    }
    // Each target operation exists and each link's parameters are the target's.
    for (path, item) in d["paths"].as_object().unwrap() {
        for o in item.as_object().unwrap().values() {
            for r in o["responses"].as_object().unwrap().values() {
                for l in r.get("links").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
                    let target = op(&d, l["operationId"].as_str().unwrap());
                    for p in l.get("parameters").and_then(Value::as_object).into_iter().flat_map(|m| m.keys()) {
                        assert!(
                            target["parameters"].as_array().unwrap().iter().any(|tp| tp["name"] == p.as_str()),
                            "a link from {path} names parameter {p}, which its target lacks"
                        );
                    }
                }
            }
        }
    }
}
