//! End-to-end behaviour of `prepare` + `run`: the Pulser fixtures, the schedule rules of §7.2,
//! physics against closed forms, and every bad input of issue 9.

use qcloud_analog::{prepare, run, AnalogError, Limits};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn device(name: &str) -> Value {
    let path = format!("{}/devices/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn seq_on(dev: Value, reg: Value, channels: Value, ops: Value) -> Value {
    json!({"version": "1", "name": "t", "register": reg, "channels": channels, "variables": {},
           "operations": ops, "measurement": "ground-rydberg", "device": dev})
}

fn one_atom() -> Value {
    json!([{"name": "q0", "x": 0.0, "y": 0.0}])
}

fn global(ops: Value) -> Value {
    seq_on(device("AnalogDevice"), one_atom(), json!({"g": "rydberg_global"}), ops)
}

fn pulse(amp: Value, det: Value, phase: f64) -> Value {
    json!({"op": "pulse", "channel": "g", "protocol": "min-delay", "amplitude": amp, "detuning": det,
           "phase": phase, "post_phase_shift": 0.0})
}

fn c(d: i64, v: f64) -> Value {
    json!({"kind": "constant", "duration": d, "value": v})
}

fn payload(seq: Value) -> Value {
    json!({"sequence": seq, "runs": 500, "seed": 11, "outputs": ["counts", "probabilities", "occupation"]})
}

fn probs(out: &Value) -> std::collections::HashMap<String, f64> {
    out["probabilities"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect()
}

fn err(p: Value) -> AnalogError {
    prepare(&p, &Limits::default()).unwrap_err()
}

#[test]
fn every_fixture_parses_and_runs() {
    for (name, vars, atoms, duration) in [
        ("afm_chain5_interpolated", json!(null), 5, 2000),
        ("param_blackman_ramp", json!({"omega_max": 1.2}), 4, 700),
        ("phases_pair", json!({}), 2, 1200),
    ] {
        let p = json!({"sequence": fixture(name), "runs": 1000, "variables": vars, "seed": 5,
                       "outputs": ["counts", "probabilities", "occupation"]});
        let prep = prepare(&p, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = run(&prep, &|| false).unwrap();
        assert_eq!(out["atoms"], atoms, "{name}");
        assert_eq!(out["duration_ns"], duration, "{name}");
        let total: u64 = out["counter"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(total, 1000, "{name}");
        let psum: f64 = probs(&out).values().sum();
        assert!((psum - 1.0).abs() < 1e-9, "{name}: {psum}");
        for k in out["counter"].as_object().unwrap().keys() {
            assert_eq!(k.len(), atoms, "{name}: {k}");
        }
        // The same seed gives the same counts; the sequence may also come as a JSON string.
        let again =
            json!({"sequence": fixture(name).to_string(), "runs": 1000, "variables": p["variables"], "seed": 5});
        let out2 = run(&prepare(&again, &Limits::default()).unwrap(), &|| false).unwrap();
        assert_eq!(out["counter"], out2["counter"], "{name}");
    }
    // The AFM chain ends mostly in 10101, symmetric under the chain's reflection.
    let p = json!({"sequence": fixture("afm_chain5_interpolated"), "runs": 10, "outputs": ["occupation"]});
    let out = run(&prepare(&p, &Limits::default()).unwrap(), &|| false).unwrap();
    let occ: Vec<f64> = out["occupation"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!((occ[0] - occ[4]).abs() < 1e-9 && (occ[1] - occ[3]).abs() < 1e-9, "{occ:?}");
    assert!(occ[0] > 0.5 && occ[1] < 0.5 && occ[2] > 0.5, "{occ:?}");
}

#[test]
fn phase_jump_buffer_includes_the_fall_time() {
    // §7.2: 170 ns phase-jump time + rise time 85 + the Blackman's end buffer, rounded to 4: 300 ns.
    let blackman = json!({"kind": "blackman", "duration": 400, "area": 2.0});
    let s = global(json!([pulse(blackman, c(400, 0.0), 0.0), pulse(c(400, 1.0), c(400, 0.0), 1.0)]));
    let p = prepare(&payload(s), &Limits::default()).unwrap();
    assert_eq!(p.duration_ns(), 400 + 300 + 400);
    let amp = &p.model.drive.global.amp;
    assert_eq!(amp[699], 0.0);
    assert_eq!(amp[700], 1.0);
    // 340 ns after a ramp ending at 3 rad/µs (the end buffer is the whole rise time).
    let ramp = json!({"kind": "ramp", "duration": 400, "start": 0.0, "stop": 3.0});
    let s = global(json!([pulse(ramp, c(400, 0.0), 0.0), pulse(c(400, 1.0), c(400, 0.0), 1.0)]));
    assert_eq!(prepare(&payload(s), &Limits::default()).unwrap().duration_ns(), 400 + 340 + 400);
    // Same phase: no buffer.
    let s = global(json!([pulse(c(400, 1.0), c(400, 0.0), 0.5), pulse(c(400, 1.0), c(400, 0.0), 0.5)]));
    assert_eq!(prepare(&payload(s), &Limits::default()).unwrap().duration_ns(), 800);
    // On a channel without mod_bandwidth (DigitalAnalogDevice) a phase change costs nothing.
    let fix = fixture("phases_pair");
    assert_eq!(prepare(&json!({"sequence": fix, "runs": 1}), &Limits::default()).unwrap().duration_ns(), 1200);
}

#[test]
fn clock_rounding_resamples_the_waveform() {
    // 401 ns on a 4 ns clock becomes 404 ns; the Blackman keeps its area (Σ samples · 1 ns).
    let bl = json!({"kind": "blackman", "duration": 401, "area": 1.0});
    let p = prepare(&payload(global(json!([pulse(bl, c(401, 0.0), 0.0)]))), &Limits::default()).unwrap();
    assert_eq!(p.duration_ns(), 404);
    let area: f64 = p.model.drive.global.amp.iter().sum::<f64>() * 1e-3;
    assert!((area - 1.0).abs() < 1e-12, "{area}");
    // A ramp keeps its end points.
    let r = json!({"kind": "ramp", "duration": 401, "start": 0.0, "stop": 2.0});
    let p = prepare(&payload(global(json!([pulse(r, c(401, 0.0), 0.0)]))), &Limits::default()).unwrap();
    let amp = &p.model.drive.global.amp;
    assert_eq!(amp.len(), 404);
    assert_eq!(amp[0], 0.0);
    assert!((amp[403] - 2.0).abs() < 1e-12);
    // A custom waveform cannot be resampled: Pulser's error.
    let cu = json!({"kind": "custom", "samples": vec![1.0; 401]});
    let e = err(payload(global(json!([pulse(cu, c(401, 0.0), 0.0)]))));
    assert!(e.to_string().contains("multiple of 4 ns"), "{e}");
}

#[test]
fn rabi_oscillation_of_one_atom() {
    // P(r) = Ω²/(Ω²+δ²) sin²(√(Ω²+δ²) t/2), t in µs. Resonant: the split is exact; detuned: the
    // splitting error (~1e-6 here) is what remains.
    for (omega, delta, t) in [(2.0 * std::f64::consts::PI, 0.0, 252), (5.0, 3.0, 600), (10.0, -4.0, 1000)] {
        let s = global(json!([pulse(c(t, omega), c(t, delta), 0.7)]));
        let out = run(&prepare(&payload(s), &Limits::default()).unwrap(), &|| false).unwrap();
        let w = (omega * omega + delta * delta).sqrt();
        let expect = omega * omega / (w * w) * (w * t as f64 * 1e-3 / 2.0).sin().powi(2);
        let got = probs(&out).get("1").copied().unwrap_or(0.0);
        let tol = if delta == 0.0 { 1e-12 } else { 1e-5 };
        assert!((got - expect).abs() < tol, "Ω={omega} δ={delta} t={t}: {got} vs {expect}");
    }
}

#[test]
fn two_atoms_in_blockade() {
    // 5 µm apart on AnalogDevice: V = 865723.02 / 5⁶ = 55.4 rad/µs ≫ Ω = 2 rad/µs. The pair
    // oscillates between gg and the symmetric single excitation at √2 Ω; rr stays below (Ω/V)².
    let omega: f64 = 2.0;
    let t = 1108; // about a √2Ω π-pulse: π / (√2 · 2) µs = 1.1107 µs.
    let reg = |d: f64| json!([{"name": "a", "x": 0.0, "y": 0.0}, {"name": "b", "x": d, "y": 0.0}]);
    let dev = device("AnalogDevice");
    let s = seq_on(dev.clone(), reg(5.0), json!({"g": "rydberg_global"}), json!([pulse(c(t, omega), c(t, 0.0), 0.0)]));
    let out = run(&prepare(&payload(s), &Limits::default()).unwrap(), &|| false).unwrap();
    let p = probs(&out);
    let single = p.get("10").copied().unwrap_or(0.0) + p.get("01").copied().unwrap_or(0.0);
    let both = p.get("11").copied().unwrap_or(0.0);
    let expect = (2f64.sqrt() * omega * t as f64 * 1e-3 / 2.0).sin().powi(2);
    assert!(both < (omega / 55.4).powi(2), "{p:?}");
    assert!((single - expect).abs() < 0.01, "{single} vs {expect}");
    // 30 µm apart (V = 0.0012 rad/µs): independent atoms, P(rr) = sin⁴(Ωt/2).
    let s = seq_on(dev, reg(30.0), json!({"g": "rydberg_global"}), json!([pulse(c(t, omega), c(t, 0.0), 0.0)]));
    let out = run(&prepare(&payload(s), &Limits::default()).unwrap(), &|| false).unwrap();
    let both = probs(&out).get("11").copied().unwrap_or(0.0);
    let expect = (omega * t as f64 * 1e-3 / 2.0).sin().powi(4);
    assert!((both - expect).abs() < 2e-3, "{both} vs {expect}");
}

#[test]
fn local_channel_targets_and_retargets() {
    // DigitalAnalogDevice rydberg_local: max 1 target, min_retarget_interval 220 ns. A π pulse on
    // atom 0, retarget (220 - 100 = 120 ns), a π pulse on atom 1: "11", 320 ns in all.
    let reg = json!([{"name": "a", "x": 0.0, "y": 0.0}, {"name": "b", "x": 20.0, "y": 0.0}]);
    let omega = std::f64::consts::PI / 0.1;
    let lp = |ch: &str| {
        json!({"op": "pulse", "channel": ch, "protocol": "min-delay", "amplitude": c(100, omega),
                               "detuning": c(100, 0.0), "phase": 0.0, "post_phase_shift": 0.0})
    };
    let ops = json!([{"op": "target", "channel": "l", "target": 0}, lp("l"),
                     {"op": "target", "channel": "l", "target": 1}, lp("l")]);
    let s = seq_on(device("DigitalAnalogDevice"), reg, json!({"l": "rydberg_local"}), ops);
    let p = prepare(&payload(s.clone()), &Limits::default()).unwrap();
    assert_eq!(p.duration_ns(), 320);
    assert!(p.model.drive.local[0].is_some() && p.model.drive.local[1].is_some());
    let out = run(&p, &|| false).unwrap();
    assert!(probs(&out)["11"] > 0.99, "{}", out["probabilities"]);
    // Targeting two atoms at once is beyond max_targets.
    let mut bad = s;
    bad["operations"][0]["target"] = json!([0, 1]);
    assert!(err(payload(bad)).to_string().contains("at most 1 qubits"));
}

#[test]
fn mappable_register_uses_the_layout_and_qubits() {
    let dev = device("AnalogDevice");
    let layout = dev["pre_calibrated_layouts"][0].clone();
    let mut s = global(json!([pulse(c(100, 1.0), c(100, 0.0), 0.0)]));
    s["register"] = json!([{"qid": "q0"}, {"qid": "q1"}, {"qid": "q2"}]);
    s["layout"] = layout;
    // Only the first two qids are mapped: two atoms, at traps 0 and 30 (x = -20 and 0).
    let p = json!({"sequence": s, "runs": 10, "variables": {"qubits": {"q0": 0, "q1": 30}}});
    let prep = prepare(&p, &Limits::default()).unwrap();
    assert_eq!(prep.names, vec!["q0", "q1"]);
    assert_eq!(prep.atoms(), 2);
    // Without 'qubits', or skipping q0, it is refused.
    let mut p2 = p.clone();
    p2["variables"] = json!({});
    assert!(err(p2).to_string().contains("qubits"));
    let mut p3 = p;
    p3["variables"] = json!({"qubits": {"q1": 3}});
    assert!(err(p3).to_string().contains("first 1 qubit ids"));
}

#[test]
fn variables_expressions_and_arbitrary_phase() {
    let mut s = global(json!([{"op": "pulse", "channel": "g", "protocol": "min-delay",
        "amplitude": {"kind": "constant", "duration": {"expression": "mul", "lhs": {"expression": "index", "lhs": {"variable": "t"}, "rhs": 0}, "rhs": 2}, "value": 1.0},
        "detuning": {"kind": "constant", "duration": 0, "value": {"expression": "neg", "lhs": {"expression": "index", "lhs": {"variable": "d"}, "rhs": 1}}},
        "phase": 0.0, "post_phase_shift": 0.0}]));
    s["variables"] = json!({"t": {"type": "int", "value": [0]}, "d": {"type": "float", "value": [0.0, 0.0]}});
    let p = json!({"sequence": s.clone(), "runs": 1, "variables": {"t": 50, "d": [1.0, 2.5]}});
    let prep = prepare(&p, &Limits::default()).unwrap();
    assert_eq!(prep.duration_ns(), 100);
    assert!(prep.model.drive.global.det.iter().all(|&d| d == -2.5));
    assert_eq!(
        err(json!({"sequence": s.clone(), "runs": 1, "variables": {"t": 50}})).to_string(),
        "Did not receive values for variables: d"
    );
    assert_eq!(
        err(json!({"sequence": s, "runs": 1, "variables": {"t": [50, 2], "d": [1.0, 2.0]}})).to_string(),
        "Can't assign array of size 2 to variable of size 1"
    );
    // pulse_arbitrary_phase with a ramp phase: detuning -slope, phase start - slope·1 ns.
    let s = global(json!([{"op": "pulse_arbitrary_phase", "channel": "g", "protocol": "min-delay",
        "amplitude": c(101, 1.0), "phase": {"kind": "ramp", "duration": 101, "start": 0.0, "stop": 1.0},
        "post_phase_shift": 0.0}]));
    let prep = prepare(&payload(s), &Limits::default()).unwrap();
    assert_eq!(prep.duration_ns(), 104);
    assert!((prep.model.drive.global.det[0] + 10.0).abs() < 1e-9);
}

#[test]
fn cancel_stops_a_run() {
    let s = global(json!([pulse(c(6000, 1.0), c(6000, 0.0), 0.0)]));
    let p = prepare(&payload(s), &Limits::default()).unwrap();
    let calls = std::cell::Cell::new(0);
    let r = run(&p, &|| {
        calls.set(calls.get() + 1);
        calls.get() > 10
    });
    assert_eq!(r.unwrap_err(), AnalogError::Canceled);
    assert_eq!(calls.get(), 11);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let ok = global(json!([pulse(c(100, 1.0), c(100, 0.0), 0.0)]));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut s = ok.clone();
        f(&mut s);
        payload(s)
    };
    let cases: Vec<(&str, Value, &str, bool)> = vec![
        ("not JSON", json!({"sequence": "{\"version\": ", "runs": 1}), "not valid JSON", false),
        ("schema version", with(&|s| s["version"] = json!("2")), "schema version \"2\"", false),
        (
            "unknown waveform",
            with(&|s| s["operations"][0]["amplitude"]["kind"] = json!("sinc")),
            "unknown waveform kind 'sinc'",
            false,
        ),
        (
            "atoms too close",
            with(&|s| s["register"] = json!([{"name": "a", "x": 0.0, "y": 0.0}, {"name": "b", "x": 4.0, "y": 0.0}])),
            "min_atom_distance = 5",
            false,
        ),
        (
            "beyond radial distance",
            with(&|s| s["register"] = json!([{"name": "a", "x": 40.0, "y": 0.0}])),
            "max_radial_distance = 38",
            false,
        ),
        (
            "amplitude above max",
            with(&|s| s["operations"][0]["amplitude"]["value"] = json!(13.0)),
            "max_amp = 12.566",
            false,
        ),
        (
            "detuning above max",
            with(&|s| s["operations"][0]["detuning"]["value"] = json!(-200.0)),
            "max_abs_detuning = 125.66",
            false,
        ),
        (
            "too many atoms for the device",
            with(&|s| {
                s["register"] = json!((0..81).map(|i| json!({"name": format!("q{i}"), "x": (i % 9) as f64 * 5.0 - 20.0, "y": (i / 9) as f64 * 5.0 - 20.0})).collect::<Vec<_>>())
            }),
            "max_atom_num = 80",
            true,
        ),
        (
            "negative waveform duration",
            with(&|s| s["operations"][0]["amplitude"]["duration"] = json!(-100)),
            "positive duration, not -100",
            false,
        ),
        (
            "negative delay",
            with(&|s| s["operations"] = json!([{"op": "delay", "channel": "g", "time": -8}])),
            "at least 16 ns",
            false,
        ),
        (
            "NaN from an expression",
            with(&|s| s["operations"][0]["phase"] = json!({"expression": "sqrt", "lhs": -1.0})),
            "NaN",
            false,
        ),
        (
            "too long for the device",
            with(&|s| s["operations"] = json!([{"op": "delay", "channel": "g", "time": 6004}])),
            "max_sequence_duration = 6000",
            false,
        ),
        (
            "digital channel",
            with(&|s| {
                s["device"] = device("DigitalAnalogDevice");
                s["channels"] = json!({"r": "raman_local"});
                s["operations"] = json!([]);
            }),
            "digital basis",
            false,
        ),
        ("EOM", with(&|s| s["operations"] = json!([{"op": "enable_eom_mode", "channel": "g"}])), "EOM", false),
        ("truncate", with(&|s| s["operations"] = json!([{"op": "truncate", "duration": 10}])), "truncate", false),
        ("DMM", with(&|s| s["operations"] = json!([{"op": "add_dmm_detuning", "dmm_name": "dmm_0"}])), "DMM", false),
        ("unknown channel", with(&|s| s["channels"] = json!({"g": "rydberg_nope"})), "No channel rydberg_nope", false),
        (
            "negative amplitude",
            with(&|s| s["operations"][0]["amplitude"]["value"] = json!(-1.0)),
            "greater than or equal to zero",
            false,
        ),
        ("legacy device", with(&|s| s["device"] = json!("Chadoq2")), "Chadoq2", false),
    ];
    for (what, p, needle, too_large) in cases {
        let e = err(p);
        assert!(e.to_string().contains(needle), "{what}: {e}");
        assert_eq!(matches!(e, AnalogError::TooLarge(_)), too_large, "{what}: {e:?}");
    }
    // Unknown payload fields, runs.
    assert!(err(json!({"sequence": ok.clone(), "runs": 1, "shots": 3})).to_string().contains("'shots'"));
    assert!(err(json!({"sequence": ok.clone(), "runs": 0})).to_string().contains("runs"));
    // Too many atoms for memory: 20 atoms on MockDevice with a 1 MiB limit.
    let reg: Vec<Value> = (0..20).map(|i| json!({"name": format!("q{i}"), "x": i as f64 * 6.0, "y": 0.0})).collect();
    let s = seq_on(device("MockDevice"), json!(reg), json!({"g": "rydberg_global"}), json!([]));
    let e = prepare(&payload(s), &Limits { max_memory_bytes: 1 << 20, ..Limits::default() }).unwrap_err();
    assert!(matches!(e, AnalogError::TooLarge(ref m) if m.contains("memory limit")), "{e:?}");
}

#[test]
fn the_target_device_limits_apply_too() {
    // A sequence on MockDevice (no limits) sent to an AnalogDevice-shaped device.
    let reg = json!([{"name": "a", "x": 0.0, "y": 0.0}, {"name": "b", "x": 3.0, "y": 0.0}]);
    let s = seq_on(
        device("MockDevice"),
        reg,
        json!({"g": "rydberg_global"}),
        json!([pulse(c(100, 1.0), c(100, 0.0), 0.0)]),
    );
    assert!(prepare(&payload(s.clone()), &Limits::default()).is_ok());
    let target = qcloud_analog::Device::from_object(&device("AnalogDevice")).unwrap();
    let limits = Limits { target_device: Some(target), ..Limits::default() };
    let e = prepare(&payload(s), &limits).unwrap_err();
    assert!(e.to_string().contains("min_atom_distance"), "{e}");
}

#[test]
fn rounding_to_a_long_clock_period_is_bounded() {
    // Found by the fuzzer: a huge clock period rounded a 400 ns pulse to an enormous one before
    // resampling. Now the period is bounded and the rounded duration checked before allocating.
    let mut dev = device("AnalogDevice");
    dev["channels"][0]["clock_period"] = json!(66370614359172i64);
    let s =
        seq_on(dev.clone(), one_atom(), json!({"g": "rydberg_global"}), json!([pulse(c(400, 1.0), c(400, 0.0), 0.0)]));
    assert!(err(payload(s)).to_string().contains("clock_period"));
    dev["channels"][0]["clock_period"] = json!(1_000_000);
    dev["max_sequence_duration"] = json!(null);
    let s = seq_on(dev, one_atom(), json!({"g": "rydberg_global"}), json!([pulse(c(400, 1.0), c(400, 0.0), 0.0)]));
    let e = err(payload(s));
    assert!(matches!(e, AnalogError::TooLarge(ref m) if m.contains("after rounding")), "{e:?}");
}
