//! OpenQASM 3 writer for the circuit IR: whatever a reader produced (a QPY circuit from Qiskit,
//! say) as OpenQASM 3 text for a device that takes OpenQASM (a QDMI device). The gates of
//! `stdgates.inc` are written by name; Qiskit's other native gates as gate definitions under
//! Qiskit's names (the reader of this crate recognises them as the native gates again, checking
//! each definition's unitary); controlled and inverted gates with the `ctrl @` / `negctrl @` /
//! `inv @` modifiers. Round-trip tested against the readers.

use crate::ir::{Circuit, Condition, Gate, Instruction, Operation, ParamExpr};
use std::collections::BTreeSet;
use std::fmt::Write;

/// A circuit that OpenQASM 3 (as written here) cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write the circuit as OpenQASM 3: {0}")]
pub struct WriteError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, WriteError> {
    Err(WriteError(m.into()))
}

/// Definitions of the native gates `stdgates.inc` lacks, as Qiskit defines them.
const DEFINITIONS: &[(&str, &str)] = &[
    ("r", "gate r(theta, phi) a { U(theta, phi - pi/2, -phi + pi/2) a; }"),
    ("sxdg", "gate sxdg a { s a; h a; s a; }"),
    ("cs", "gate cs a, b { p(pi/4) a; cx a, b; p(-pi/4) b; cx a, b; p(pi/4) b; }"),
    ("csdg", "gate csdg a, b { p(-pi/4) a; cx a, b; p(pi/4) b; cx a, b; p(-pi/4) b; }"),
    ("csx", "gate csx a, b { h b; cs a, b; h b; }"),
    ("ccz", "gate ccz a, b, c { h c; ccx a, b, c; h c; }"),
    ("dcx", "gate dcx a, b { cx a, b; cx b, a; }"),
    ("iswap", "gate iswap a, b { s a; s b; h a; cx a, b; cx b, a; h b; }"),
    ("rzz", "gate rzz(theta) a, b { cx a, b; rz(theta) b; cx a, b; }"),
    ("rxx", "gate rxx(theta) a, b { h a; h b; cx a, b; rz(theta) b; cx a, b; h a; h b; }"),
    (
        "ryy",
        "gate ryy(theta) a, b { rx(pi/2) a; rx(pi/2) b; cx a, b; rz(theta) b; cx a, b; rx(-pi/2) a; rx(-pi/2) b; }",
    ),
    ("rzx", "gate rzx(theta) a, b { h b; cx a, b; rz(theta) b; cx a, b; h b; }"),
    ("ecr", "gate ecr a, b { rzx(pi/4) a, b; x a; rzx(-pi/4) a, b; }"),
    (
        "xx_minus_yy",
        "gate xx_minus_yy(theta, beta) a, b { rz(-beta) b; rz(-pi/2) a; sx a; rz(pi/2) a; s b; cx a, b; \
         ry(theta/2) a; ry(-theta/2) b; cx a, b; sdg b; rz(-pi/2) a; sxdg a; rz(pi/2) a; rz(beta) b; }",
    ),
    (
        "xx_plus_yy",
        "gate xx_plus_yy(theta, beta) a, b { rz(beta) a; rz(-pi/2) b; sx b; rz(pi/2) b; s a; cx b, a; \
         ry(-theta/2) b; ry(-theta/2) a; cx b, a; sdg a; rz(-pi/2) b; sxdg b; rz(pi/2) b; rz(-beta) a; }",
    ),
    ("rccx", "gate rccx a, b, c { h c; t c; cx b, c; tdg c; cx a, c; t c; cx b, c; tdg c; h c; }"),
];

/// The definitions a gate needs, its own last (`sxdg` before `xx_minus_yy`, and so on).
fn needs(name: &str) -> &'static [&'static str] {
    match name {
        "csx" => &["cs", "csx"],
        "ecr" => &["rzx", "ecr"],
        "xx_minus_yy" => &["sxdg", "xx_minus_yy"],
        "xx_plus_yy" => &["sxdg", "xx_plus_yy"],
        "r" => &["r"],
        "sxdg" => &["sxdg"],
        "cs" => &["cs"],
        "csdg" => &["csdg"],
        "ccz" => &["ccz"],
        "dcx" => &["dcx"],
        "iswap" => &["iswap"],
        "rzz" => &["rzz"],
        "rxx" => &["rxx"],
        "ryy" => &["ryy"],
        "rzx" => &["rzx"],
        "rccx" => &["rccx"],
        _ => &[],
    }
}

/// How a gate is written: optional modifiers and a gate name, applied to the instruction's qubits.
fn spell(g: &Gate, qubits: usize) -> Result<(String, String), WriteError> {
    use Gate::*;
    let name = match g {
        I => "id",
        X => "x",
        Y => "y",
        Z => "z",
        H => "h",
        S => "s",
        Sdg => "sdg",
        T => "t",
        Tdg => "tdg",
        SX => "sx",
        RX => "rx",
        RY => "ry",
        RZ => "rz",
        P => "p",
        U => "U",
        U2 => "u2",
        CX => "cx",
        CY => "cy",
        CZ => "cz",
        CH => "ch",
        CP => "cp",
        CRX => "crx",
        CRY => "cry",
        CRZ => "crz",
        CU => "cu",
        Swap => "swap",
        CCX => "ccx",
        CSwap => "cswap",
        SXdg => "sxdg",
        R => "r",
        CS => "cs",
        CSdg => "csdg",
        CSX => "csx",
        CCZ => "ccz",
        DCX => "dcx",
        ISwap => "iswap",
        RZZ => "rzz",
        RXX => "rxx",
        RYY => "ryy",
        RZX => "rzx",
        ECR => "ecr",
        XXMinusYY => "xx_minus_yy",
        XXPlusYY => "xx_plus_yy",
        RCCX => "rccx",
        // CU3(θ, φ, λ) is CU(θ, φ, λ, 0).
        CU3 => "cu3",
        C3X => return Ok(("ctrl(3) @ ".into(), "x".into())),
        C3SX => return Ok(("ctrl(3) @ ".into(), "sx".into())),
        MCX => {
            if qubits < 2 {
                return err("mcx needs at least one control");
            }
            return Ok((format!("ctrl({}) @ ", qubits - 1), "x".into()));
        }
        RC3X => return err("rcccx (the relative-phase 3-controlled X) has no definition here"),
        Unitary(_) => return err("a unitary given as a matrix has no OpenQASM 3 form"),
        Controlled { num_ctrl, ctrl_state, base } => {
            let mut mods = String::new();
            for j in 0..*num_ctrl {
                mods.push_str(if ctrl_state >> j & 1 == 1 { "ctrl @ " } else { "negctrl @ " });
            }
            let (inner, name) = spell(base, qubits.saturating_sub(*num_ctrl))?;
            return Ok((mods + &inner, name));
        }
        Inverse(base) => {
            let (inner, name) = spell(base, qubits)?;
            return Ok((format!("inv @ {inner}"), name));
        }
    };
    Ok((String::new(), name.to_string()))
}

fn gate_names(ins: &[Instruction], out: &mut BTreeSet<String>) -> Result<(), WriteError> {
    for i in ins {
        match &i.op {
            Operation::Gate { gate, .. } => {
                out.insert(spell(gate, i.qubits.len())?.1);
            }
            Operation::IfElse { true_body, false_body, .. } => {
                gate_names(true_body, out)?;
                gate_names(false_body, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn param(p: &ParamExpr, out: &mut BTreeSet<String>) -> Result<String, WriteError> {
    fn walk(p: &ParamExpr, out: &mut BTreeSet<String>) -> Result<(), WriteError> {
        use ParamExpr::*;
        match p {
            Const(c) if !c.is_finite() => err(format!("the parameter value {c} is not finite")),
            Const(_) => Ok(()),
            Symbol(s) => {
                let ident = !s.is_empty()
                    && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ident {
                    return err(format!("the parameter name '{s}' is not an OpenQASM identifier; bind it first"));
                }
                out.insert(s.clone());
                Ok(())
            }
            Neg(a) | Func(_, a) => walk(a, out),
            Add(a, b) | Sub(a, b) | Mul(a, b) | Div(a, b) | Pow(a, b) => {
                walk(a, out)?;
                walk(b, out)
            }
        }
    }
    walk(p, out)?;
    Ok(p.to_string())
}

/// Where each clbit is written: (register name, index in it).
struct Bits {
    at: Vec<(String, usize)>,
}

impl Bits {
    fn of(c: &Circuit) -> Result<Bits, WriteError> {
        let mut at: Vec<Option<(String, usize)>> = vec![None; c.num_clbits];
        let mut next = 0usize;
        for r in &c.cregs {
            for (k, &b) in r.bits.iter().enumerate() {
                // OpenQASM 3 registers are disjoint and declared in bit order.
                if b != next || b >= c.num_clbits {
                    return err(format!("classical register '{}' aliases or reorders bits", r.name));
                }
                at[b] = Some((r.name.clone(), k));
                next += 1;
            }
        }
        // Bits in no register (QPY allows them) go into one more register.
        let spare: Vec<usize> = (0..c.num_clbits).filter(|&b| at[b].is_none()).collect();
        for (k, &b) in spare.iter().enumerate() {
            at[b] = Some(("_bits".into(), k));
        }
        Ok(Bits { at: at.into_iter().map(|x| x.unwrap_or_default()).collect() })
    }

    fn get(&self, b: usize) -> Result<String, WriteError> {
        match self.at.get(b) {
            Some((r, k)) => Ok(format!("{r}[{k}]")),
            None => err(format!("clbit {b} is out of range")),
        }
    }
}

fn condition(c: &Condition, circ: &Circuit, bits: &Bits) -> Result<String, WriteError> {
    if let [b] = c.bits.as_slice() {
        return Ok(format!("{} == {}", bits.get(*b)?, if c.value & 1 == 1 { "true" } else { "false" }));
    }
    match circ.cregs.iter().find(|r| r.bits == c.bits) {
        Some(r) => Ok(format!("{} == {}", r.name, c.value)),
        None => err("a condition on bits that are not one register"),
    }
}

struct Writer<'a> {
    circ: &'a Circuit,
    bits: Bits,
    inputs: BTreeSet<String>,
    body: String,
}

impl Writer<'_> {
    fn qubits(&self, qs: &[usize]) -> Result<String, WriteError> {
        let mut v = Vec::with_capacity(qs.len());
        for &q in qs {
            if q >= self.circ.num_qubits {
                return err(format!("qubit {q} is out of range"));
            }
            v.push(format!("q[{q}]"));
        }
        Ok(v.join(", "))
    }

    fn block(&mut self, ins: &[Instruction], indent: usize) -> Result<(), WriteError> {
        for i in ins {
            let pad = "  ".repeat(indent);
            let mut line = String::new();
            match &i.op {
                Operation::Gate { gate, params } => {
                    let (mods, name) = spell(gate, i.qubits.len())?;
                    let mut ps = Vec::with_capacity(params.len());
                    for p in params {
                        ps.push(param(p, &mut self.inputs)?);
                    }
                    let args = if ps.is_empty() { String::new() } else { format!("({})", ps.join(", ")) };
                    let (name, args) = if name == "cu3" {
                        ("cu".to_string(), format!("({}, 0)", ps.join(", ")))
                    } else {
                        (name, args)
                    };
                    line = format!("{mods}{name}{args} {};", self.qubits(&i.qubits)?);
                }
                Operation::Measure { clbit } => {
                    line = format!("{} = measure {};", self.bits.get(*clbit)?, self.qubits(&i.qubits)?);
                }
                Operation::Reset => line = format!("reset {};", self.qubits(&i.qubits)?),
                Operation::Barrier => {
                    if !i.qubits.is_empty() {
                        line = format!("barrier {};", self.qubits(&i.qubits)?);
                    }
                }
                // No effect on the state: a device schedules without it.
                Operation::Delay => {}
                Operation::IfElse { condition: c, true_body, false_body } => {
                    let cond = condition(c, self.circ, &self.bits)?;
                    writeln!(self.body, "{pad}if ({cond}) {{").ok();
                    self.block(true_body, indent + 1)?;
                    if false_body.is_empty() {
                        writeln!(self.body, "{pad}}}").ok();
                    } else {
                        writeln!(self.body, "{pad}}} else {{").ok();
                        self.block(false_body, indent + 1)?;
                        writeln!(self.body, "{pad}}}").ok();
                    }
                    continue;
                }
            }
            if line.is_empty() {
                continue;
            }
            match &i.condition {
                Some(c) => {
                    let cond = condition(c, self.circ, &self.bits)?;
                    writeln!(self.body, "{pad}if ({cond}) {{ {line} }}").ok();
                }
                None => {
                    writeln!(self.body, "{pad}{line}").ok();
                }
            }
        }
        Ok(())
    }
}

/// The circuit as OpenQASM 3. Free parameters become `input float[64]` declarations.
pub fn write(c: &Circuit) -> Result<String, WriteError> {
    let mut names = BTreeSet::new();
    gate_names(&c.instructions, &mut names)?;
    let mut w = Writer { circ: c, bits: Bits::of(c)?, inputs: BTreeSet::new(), body: String::new() };
    w.block(&c.instructions, 0)?;
    let phase = match &c.global_phase {
        ParamExpr::Const(p) if *p == 0.0 => None,
        p => Some(param(p, &mut w.inputs)?),
    };
    let mut out = String::from("OPENQASM 3.0;\ninclude \"stdgates.inc\";\n");
    let mut defined = BTreeSet::new();
    for n in &names {
        for dep in needs(n) {
            if defined.insert(*dep) {
                if let Some((_, def)) = DEFINITIONS.iter().find(|(k, _)| k == dep) {
                    out.push_str(def);
                    out.push('\n');
                }
            }
        }
    }
    for p in &w.inputs {
        writeln!(out, "input float[64] {p};").ok();
    }
    if c.num_qubits > 0 {
        writeln!(out, "qubit[{}] q;", c.num_qubits).ok();
    }
    let mut spare = 0;
    for r in &c.cregs {
        writeln!(out, "bit[{}] {};", r.bits.len(), r.name).ok();
    }
    for (name, _) in &w.bits.at {
        if name == "_bits" {
            spare += 1;
        }
    }
    if spare > 0 {
        writeln!(out, "bit[{spare}] _bits;").ok();
    }
    if let Some(p) = phase {
        writeln!(out, "gphase({p});").ok();
    }
    out.push_str(&w.body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReadLimits;

    fn read3(src: &str) -> Circuit {
        crate::qasm3::parse(src, &ReadLimits::default()).unwrap_or_else(|e| panic!("{e}\n{src}"))
    }

    fn roundtrip(c: &Circuit) -> Circuit {
        let text = write(c).unwrap();
        read3(&text)
    }

    #[test]
    fn a_bell_circuit_reads_back_the_same() {
        let src = "OPENQASM 3.0;\ninclude \"stdgates.inc\";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc[0] = measure q[0];\nc[1] = measure q[1];\n";
        let c = read3(src);
        assert_eq!(roundtrip(&c), c);
    }

    #[test]
    fn every_native_gate_reads_back_as_itself() {
        // Each definition written here must be the native gate's unitary: the reader checks it
        // and gives the native gate back only then.
        use Gate::*;
        let gates: Vec<(Gate, usize)> = vec![
            (I, 1),
            (X, 1),
            (Y, 1),
            (Z, 1),
            (H, 1),
            (S, 1),
            (Sdg, 1),
            (T, 1),
            (Tdg, 1),
            (SX, 1),
            (SXdg, 1),
            (RX, 1),
            (RY, 1),
            (RZ, 1),
            (P, 1),
            (U, 1),
            (U2, 1),
            (R, 1),
            (CX, 2),
            (CY, 2),
            (CZ, 2),
            (CH, 2),
            (CS, 2),
            (CSdg, 2),
            (CSX, 2),
            (CP, 2),
            (CRX, 2),
            (CRY, 2),
            (CRZ, 2),
            (CU, 2),
            (Swap, 2),
            (ISwap, 2),
            (ECR, 2),
            (DCX, 2),
            (RXX, 2),
            (RYY, 2),
            (RZZ, 2),
            (RZX, 2),
            (XXMinusYY, 2),
            (XXPlusYY, 2),
            (CCX, 3),
            (CCZ, 3),
            (CSwap, 3),
        ];
        for (g, n) in gates {
            let mut c = Circuit::new(3, 0);
            let params = (0..g.num_params()).map(|k| ParamExpr::Const(0.3 + 0.7 * k as f64)).collect();
            c.instructions.push(Instruction {
                op: Operation::Gate { gate: g.clone(), params },
                qubits: (0..n).rev().collect(),
                condition: None,
            });
            let back = roundtrip(&c);
            let text = write(&c).unwrap();
            assert!(
                crate::engine::same_unitary(3, &back.instructions, &c.instructions),
                "{g:?} does not read back as itself:\n{text}"
            );
        }
    }

    #[test]
    fn modifiers_conditions_and_parameters_survive() {
        let src =
            "OPENQASM 3.0;\ninclude \"stdgates.inc\";\ninput float[64] theta;\nqubit[3] q;\nbit[2] c;\nbit[1] d;\n\
                   rx(theta) q[0];\nctrl(2) @ x q[0], q[1], q[2];\nnegctrl @ h q[1], q[2];\ninv @ s q[0];\n\
                   c[0] = measure q[0];\nif (c[0] == true) { x q[1]; }\nif (c == 1) { z q[2]; } else { y q[2]; }\n\
                   reset q[0];\nbarrier q[0], q[1];\nd[0] = measure q[2];\n";
        let c = read3(src);
        let back = roundtrip(&c);
        assert_eq!(back.cregs, c.cregs);
        assert_eq!(back.parameters(), vec!["theta"]);
        assert_eq!(back.instructions.len(), c.instructions.len());
        assert_eq!(back, c, "{}", write(&c).unwrap());
    }

    #[test]
    fn what_cannot_be_written_is_an_error() {
        let mut c = Circuit::new(1, 0);
        c.instructions.push(Instruction {
            op: Operation::Gate { gate: Gate::RX, params: vec![ParamExpr::Symbol("v[0]".into())] },
            qubits: vec![0],
            condition: None,
        });
        assert!(write(&c).is_err());
        let mut c = Circuit::new(1, 0);
        c.instructions.push(Instruction {
            op: Operation::Gate { gate: Gate::RX, params: vec![ParamExpr::Const(f64::NAN)] },
            qubits: vec![0],
            condition: None,
        });
        assert!(write(&c).is_err());
    }
}
