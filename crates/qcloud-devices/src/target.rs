//! Device targets: what a gate-model device offers a transpiler (basis gates, coupling map, gate
//! durations and errors, qubit figures), kept in a device's `config.target` and served by the IBM
//! facade as the backend's `configuration` and `properties`. A statevector device with a target
//! runs only circuits that are ISA for it (see [`Target::isa`]).
//!
//! [`heavy_hex`] derives IBM's heavy-hex lattice (Eagle: 127 qubits, 144 couplers) and
//! [`eagle_like`] gives it synthetic, realistic figures: plain constants of the order of IBM's
//! published Eagle r3 calibrations, not the data of any real device.

use qcloud_qsim::isa::Isa;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// A device's target, as stored in `config.target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Gate names as Qiskit writes them, e.g. `["ecr", "id", "rz", "sx", "x"]`.
    pub basis_gates: Vec<String>,
    /// Directed qubit pairs a 2-qubit basis gate acts on (both directions listed when symmetric).
    pub coupling_map: Vec<[u32; 2]>,
    /// The device's sample time, in seconds.
    pub dt: f64,
    pub processor_type: ProcessorType,
    /// Per basis gate: duration and error (the same on every qubit / pair).
    pub gates: BTreeMap<String, GateFigures>,
    /// Per qubit figures (the same on every qubit).
    pub qubits: QubitFigures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorType {
    pub family: String,
    pub revision: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateFigures {
    /// Seconds.
    pub duration: f64,
    /// Error probability, 0..=1.
    pub error: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QubitFigures {
    /// Seconds.
    pub t1: f64,
    /// Seconds.
    pub t2: f64,
    /// Hz.
    pub frequency: f64,
    /// Probability, 0..=1.
    pub readout_error: f64,
    /// Seconds.
    pub readout_length: f64,
}

impl Target {
    /// Read a device's `config.target`, if it has one.
    pub fn from_config(config: &serde_json::Value) -> Option<Result<Target, String>> {
        let t = config.get("target")?;
        Some(serde_json::from_value(t.clone()).map_err(|e| format!("config.target: {e}")))
    }

    /// Check the target against a device of `num_qubits` qubits.
    pub fn validate(&self, num_qubits: u32) -> Result<(), String> {
        if self.basis_gates.is_empty() {
            return Err("target.basis_gates must name at least one gate".into());
        }
        if let Some([a, b]) = self.coupling_map.iter().find(|[a, b]| a >= &num_qubits || b >= &num_qubits || a == b) {
            return Err(format!(
                "target.coupling_map has the pair [{a}, {b}]: qubits are distinct and below the device's {num_qubits}"
            ));
        }
        let positive = |what: String, v: f64| -> Result<(), String> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{what} must be a non-negative number, got {v}"))
            }
        };
        let probability = |what: String, v: f64| -> Result<(), String> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} must be between 0 and 1, got {v}"))
            }
        };
        positive("target.dt".into(), self.dt)?;
        for (g, f) in &self.gates {
            positive(format!("target.gates.{g}.duration"), f.duration)?;
            probability(format!("target.gates.{g}.error"), f.error)?;
        }
        let q = &self.qubits;
        for (what, v) in [("t1", q.t1), ("t2", q.t2), ("frequency", q.frequency), ("readout_length", q.readout_length)]
        {
            positive(format!("target.qubits.{what}"), v)?;
        }
        probability("target.qubits.readout_error".into(), q.readout_error)
    }

    /// The instruction set a circuit must keep to.
    pub fn isa(&self) -> Isa {
        Isa {
            basis_gates: self.basis_gates.iter().cloned().collect::<BTreeSet<_>>(),
            coupling: self.coupling_map.iter().map(|[a, b]| (*a as usize, *b as usize)).collect::<HashSet<_>>(),
        }
    }
}

/// An undirected heavy-hex lattice: `rows` rows of `width` qubits, each pair of neighbouring rows
/// joined by bridge qubits every fourth column (columns 0, 4, 8, ... below even rows, columns
/// 2, 6, 10, ... below odd rows), so every qubit has at most 3 neighbours. A row-end qubit that
/// no bridge reaches (a corner) is left out. Qubits are numbered row by row, each row's bridges
/// after it, as IBM numbers its Eagle devices. Returns the number of qubits and the edges
/// `(a, b)` with `a < b`.
pub fn heavy_hex(rows: u32, width: u32) -> (u32, Vec<(u32, u32)>) {
    // Bridge columns between row r and row r + 1.
    let bridges = |r: u32| (0..width).filter(move |c| c % 4 == if r.is_multiple_of(2) { 0 } else { 2 });
    let bridged =
        |r: u32, c: u32| (r + 1 < rows && bridges(r).any(|b| b == c)) || (r > 0 && bridges(r - 1).any(|b| b == c));
    // A row qubit is kept unless it is a corner (first or last column) of the first or last row
    // with no bridge (a dangling end).
    let kept = |r: u32, c: u32| {
        let corner = (r == 0 || r + 1 == rows) && (c == 0 || c + 1 == width) && rows > 1;
        !corner || bridged(r, c)
    };
    let mut next = 0u32;
    let mut row_ids: Vec<Vec<Option<u32>>> = Vec::with_capacity(rows as usize);
    let mut bridge_ids: Vec<Vec<(u32, u32)>> = Vec::new(); // (column, id) per gap
    for r in 0..rows {
        let ids: Vec<Option<u32>> = (0..width)
            .map(|c| {
                kept(r, c).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        row_ids.push(ids);
        if r + 1 < rows {
            let gap: Vec<(u32, u32)> = bridges(r)
                .map(|c| {
                    next += 1;
                    (c, next - 1)
                })
                .collect();
            bridge_ids.push(gap);
        }
    }
    let mut edges = Vec::new();
    for (r, ids) in row_ids.iter().enumerate() {
        for pair in ids.windows(2) {
            if let [Some(a), Some(b)] = pair {
                edges.push((*a, *b));
            }
        }
        if let Some(gap) = bridge_ids.get(r) {
            for &(c, id) in gap {
                for row in [&row_ids[r], &row_ids[r + 1]] {
                    if let Some(Some(q)) = row.get(c as usize) {
                        edges.push(((*q).min(id), (*q).max(id)));
                    }
                }
            }
        }
    }
    edges.sort_unstable();
    (next, edges)
}

/// Number of qubits of the Eagle-shaped heavy-hex lattices (rows of 15): 32, 51, 70, 89, 108,
/// 127 (Eagle), 146, ...; `rows` for a given size.
pub fn eagle_rows(num_qubits: u32) -> Option<u32> {
    (2..=64).find(|&r| heavy_hex(r, 15).0 == num_qubits)
}

/// Synthetic figures of the order of an IBM Eagle r3 device.
pub mod figures {
    /// Sample time: 1 / 4.5 GHz.
    pub const DT: f64 = 2.2222e-10;
    /// Single-qubit pulses (`sx`, `x`, `id`): 160 dt.
    pub const SQ_DURATION: f64 = 3.5556e-8;
    pub const SQ_ERROR: f64 = 2.5e-4;
    /// `rz` is virtual: no time, no error.
    pub const RZ_DURATION: f64 = 0.0;
    /// Echoed cross-resonance gate.
    pub const ECR_DURATION: f64 = 6.6e-7;
    pub const ECR_ERROR: f64 = 7.5e-3;
    pub const T1: f64 = 2.6e-4;
    pub const T2: f64 = 1.6e-4;
    pub const FREQUENCY: f64 = 4.8e9;
    pub const READOUT_ERROR: f64 = 1.5e-2;
    pub const READOUT_LENGTH: f64 = 1.56e-6;
}

/// A heavy-hex target with rows of 15 (Eagle's layout) of `num_qubits` qubits (see
/// [`eagle_rows`]), basis `ecr, id, rz, sx, x` and the synthetic [`figures`].
pub fn eagle_like(num_qubits: u32) -> Option<Target> {
    use figures::*;
    let rows = eagle_rows(num_qubits)?;
    let (_, edges) = heavy_hex(rows, 15);
    let coupling_map = edges.iter().flat_map(|&(a, b)| [[a, b], [b, a]]).collect();
    let sq = GateFigures { duration: SQ_DURATION, error: SQ_ERROR };
    let gates = BTreeMap::from([
        ("ecr".to_string(), GateFigures { duration: ECR_DURATION, error: ECR_ERROR }),
        ("id".to_string(), sq),
        ("rz".to_string(), GateFigures { duration: RZ_DURATION, error: 0.0 }),
        ("sx".to_string(), sq),
        ("x".to_string(), sq),
    ]);
    Some(Target {
        basis_gates: gates.keys().cloned().collect(),
        coupling_map,
        dt: DT,
        processor_type: ProcessorType { family: "Eagle".into(), revision: 3 },
        gates,
        qubits: QubitFigures {
            t1: T1,
            t2: T2,
            frequency: FREQUENCY,
            readout_error: READOUT_ERROR,
            readout_length: READOUT_LENGTH,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, VecDeque};

    #[test]
    fn eagle_is_127_qubits_and_144_couplers_of_degree_at_most_3_connected() {
        let (n, edges) = heavy_hex(7, 15);
        assert_eq!((n, edges.len()), (127, 144));
        let mut adj: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(a, b) in &edges {
            assert!(a < b && b < n);
            adj.entry(a).or_default().push(b);
            adj.entry(b).or_default().push(a);
        }
        assert!(adj.values().all(|v| v.len() <= 3), "heavy-hex degree is at most 3");
        assert_eq!(adj.len(), 127, "every qubit has a coupler");
        let mut seen = vec![false; n as usize];
        let mut todo = VecDeque::from([0u32]);
        seen[0] = true;
        while let Some(q) = todo.pop_front() {
            for &p in &adj[&q] {
                if !seen[p as usize] {
                    seen[p as usize] = true;
                    todo.push_back(p);
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "connected");
        // The numbering is IBM's: the first row is 0..=13, its bridges 14..=17, and the first
        // bridge joins qubits 0 and 18; the last row ends the numbering.
        assert!(edges.contains(&(0, 14)) && edges.contains(&(14, 18)) && edges.contains(&(12, 17)));
        assert!(edges.contains(&(125, 126)) && !edges.contains(&(13, 14)));
        // Degree 3: the 48 row qubits a bridge reaches, less the 12 of them at a row's end.
        assert_eq!(adj.values().filter(|v| v.len() == 3).count(), 48 - 12);
    }

    #[test]
    fn the_eagle_target_is_symmetric_valid_and_round_trips() {
        assert_eq!(eagle_rows(127), Some(7));
        assert_eq!(eagle_rows(128), None);
        let t = eagle_like(127).expect("127 is an Eagle size");
        assert_eq!(t.basis_gates, ["ecr", "id", "rz", "sx", "x"]);
        assert_eq!(t.coupling_map.len(), 288);
        let pairs: HashSet<[u32; 2]> = t.coupling_map.iter().copied().collect();
        assert!(pairs.iter().all(|[a, b]| pairs.contains(&[*b, *a])), "symmetric");
        t.validate(127).unwrap();
        assert!(t.validate(100).unwrap_err().contains("coupling_map"));
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["processor_type"], serde_json::json!({"family": "Eagle", "revision": 3}));
        assert!(json["gates"]["ecr"]["duration"].as_f64().unwrap() > 0.0);
        let back = Target::from_config(&serde_json::json!({ "target": json })).unwrap().unwrap();
        assert_eq!(back, t);
        let isa = t.isa();
        assert!(isa.coupling.contains(&(14, 0)) && isa.coupling.contains(&(0, 14)) && !isa.coupling.contains(&(0, 18)));
        let bad = Target::from_config(&serde_json::json!({"target": {"basis_gates": ["x"]}})).unwrap();
        assert!(bad.unwrap_err().contains("config.target"));
    }
}
