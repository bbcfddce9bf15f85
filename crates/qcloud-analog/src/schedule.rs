//! The sequence's timeline, built the way Pulser's `Sequence` / `_Schedule` build it: one slot
//! list per declared channel, protocols (`min-delay`, `wait-for-all`, `no-delay`), phase-jump
//! buffers with the previous pulse's fall time, phase references per qubit, retargeting, `align`,
//! and finally the per-ns samples (`_ChannelSchedule.get_samples`, `to_nested_dict`) that drive
//! the Hamiltonian: one global drive and one local drive per atom.

use crate::device::{Addressing, Channel};
use crate::error::{AnalogError, Result};
use crate::expr::py_mod;
use crate::modulation::end_buffer;
use crate::waveforms::Waveform;
use std::cell::OnceCell;
use std::f64::consts::TAU;

/// Atoms are sets of register indices (at most 128 atoms).
pub type Targets = u128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    MinDelay,
    NoDelay,
    WaitForAll,
}

/// A pulse placed on a channel (amplitude and detuning already resampled to the clock period).
#[derive(Debug)]
pub struct PlacedPulse {
    pub amp: Vec<f64>,
    pub det: Vec<f64>,
    /// Phase including the qubits' phase reference, in [0, 2π).
    pub phase: f64,
    /// Pulser's "detuned delay": constant zero amplitude and constant detuning; its phase is ignored.
    pub detuned_delay: bool,
    fall: OnceCell<i64>,
}

impl PlacedPulse {
    /// `Pulse.fall_time`: the channel's rise time plus the longest end buffer of the waveforms.
    pub fn fall_time(&self, ch: &Channel) -> i64 {
        *self.fall.get_or_init(|| {
            if ch.mod_bandwidth.is_none() {
                return 0;
            }
            (ch.rise_time() + end_buffer(&self.amp, ch).max(end_buffer(&self.det, ch))) as i64
        })
    }
}

#[derive(Debug)]
enum Kind {
    Target,
    Delay,
    Pulse(usize),
}

#[derive(Debug)]
struct Slot {
    kind: Kind,
    ti: i64,
    tf: i64,
    targets: Targets,
}

#[derive(Debug)]
struct ChannelSchedule {
    ch: Channel,
    slots: Vec<Slot>,
}

/// Per-qubit phase reference for the ground-rydberg basis (`_QubitRef`).
#[derive(Debug, Clone, Copy, Default)]
struct QubitRef {
    phase: f64,
    phase_time: i64,
    last_used: i64,
}

/// The per-ns drive of one addressing term: amplitude, detuning (rad/µs) and phase (rad).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriveSamples {
    pub amp: Vec<f64>,
    pub det: Vec<f64>,
    pub phase: Vec<f64>,
}

impl DriveSamples {
    fn zeros(t: usize) -> Self {
        DriveSamples { amp: vec![0.0; t], det: vec![0.0; t], phase: vec![0.0; t] }
    }
    fn is_zero(&self) -> bool {
        self.amp.iter().all(|&x| x == 0.0) && self.det.iter().all(|&x| x == 0.0)
    }
}

/// What the Hamiltonian needs: the duration and the drives.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    pub duration: usize,
    pub global: DriveSamples,
    /// One entry per atom; `None` where no local channel ever addresses the atom.
    pub local: Vec<Option<DriveSamples>>,
}

pub struct Schedule {
    chans: Vec<ChannelSchedule>,
    pulses: Vec<PlacedPulse>,
    refs: Vec<QubitRef>,
    all: Targets,
    /// The device's `max_sequence_duration`.
    max_duration: Option<usize>,
    /// Our own bound on the timeline (memory of the samples, run time).
    limit_duration: usize,
}

fn fmt_phase(p: f64) -> f64 {
    py_mod(p, TAU)
}

impl Schedule {
    pub fn new(n_atoms: usize, max_duration: Option<usize>, limit_duration: usize) -> Self {
        let all = if n_atoms >= 128 { u128::MAX } else { (1u128 << n_atoms) - 1 };
        Schedule {
            chans: Vec::new(),
            pulses: Vec::new(),
            refs: vec![QubitRef::default(); n_atoms],
            all,
            max_duration,
            limit_duration,
        }
    }

    /// `declare_channel`: a Global channel starts targeting every atom.
    pub fn declare(&mut self, ch: Channel) -> usize {
        let mut slots = Vec::new();
        if ch.addressing == Addressing::Global {
            slots.push(Slot { kind: Kind::Target, ti: -1, tf: 0, targets: self.all });
        }
        self.chans.push(ChannelSchedule { ch, slots });
        self.chans.len() - 1
    }

    pub fn channel(&self, c: usize) -> &Channel {
        &self.chans[c].ch
    }

    fn fall(&self, c: usize, slot: &Slot) -> i64 {
        match slot.kind {
            Kind::Pulse(p) => self.pulses[p].fall_time(&self.chans[c].ch),
            _ => 0,
        }
    }

    fn check_duration(&self, t: i64) -> Result<()> {
        if let Some(max) = self.max_duration {
            if t > max as i64 {
                return Err(AnalogError::invalid(format!(
                    "The sequence's duration exceeded the maximum duration allowed by the device \
                     (max_sequence_duration = {max} ns): it reaches {t} ns."
                )));
            }
        }
        if t > self.limit_duration as i64 {
            return Err(AnalogError::too_large(format!(
                "the sequence reaches {t} ns, longer than the emulator's limit of {} ns",
                self.limit_duration
            )));
        }
        Ok(())
    }

    /// `_ChannelSchedule.get_duration`.
    pub fn channel_duration(&self, c: usize, include_fall_time: bool) -> i64 {
        let cs = &self.chans[c];
        let mut temp_tf = 0;
        for (i, op) in cs.slots.iter().rev().enumerate() {
            if i == 0 {
                temp_tf = op.tf;
                if !include_fall_time {
                    break;
                }
            }
            if let Kind::Pulse(_) = op.kind {
                temp_tf = temp_tf.max(op.tf + self.fall(c, op));
                break;
            } else if temp_tf - op.tf >= 2 * cs.ch.rise_time() as i64 {
                break;
            }
        }
        temp_tf
    }

    pub fn duration(&self) -> i64 {
        (0..self.chans.len()).map(|c| self.channel_duration(c, false)).max().unwrap_or(0)
    }

    fn last(&self, c: usize) -> Result<&Slot> {
        self.chans[c].slots.last().ok_or_else(|| {
            AnalogError::invalid(format!(
                "channel '{}' has no target: a Local channel needs a 'target' operation before its first pulse or delay",
                self.chans[c].ch.id
            ))
        })
    }

    /// `_Schedule.add_delay`.
    fn add_delay(&mut self, duration: i64, c: usize) -> Result<()> {
        let last = self.last(c)?;
        let (ti, targets) = (last.tf, last.targets);
        let tf = ti + self.chans[c].ch.validate_duration(duration)? as i64;
        self.check_duration(tf)?;
        self.chans[c].slots.push(Slot { kind: Kind::Delay, ti, tf, targets });
        Ok(())
    }

    /// `_Schedule.wait_for_fall`.
    fn wait_for_fall(&mut self, c: usize) -> Result<()> {
        let fall = self.channel_duration(c, true) - self.channel_duration(c, false);
        if fall > 0 {
            let d = self.chans[c].ch.adjust_duration(fall)? as i64;
            self.add_delay(d, c)?;
        }
        Ok(())
    }

    /// `_Schedule._find_add_delay`.
    fn find_add_delay(&self, t0: i64, c: usize, protocol: Protocol) -> Result<i64> {
        let mut current = t0;
        let my_targets = self.last(c)?.targets;
        for (other, cs) in self.chans.iter().enumerate() {
            if other == c {
                continue;
            }
            let rise = cs.ch.rise_time() as i64;
            for op in cs.slots.iter().rev() {
                match op.kind {
                    Kind::Pulse(_) => {
                        let end = op.tf + self.fall(other, op);
                        if end <= current {
                            break;
                        } else if op.targets & my_targets != 0 || protocol == Protocol::WaitForAll {
                            current = end;
                            break;
                        }
                    }
                    _ => {
                        if op.tf + 2 * rise <= current {
                            break;
                        }
                    }
                }
            }
        }
        Ok(current)
    }

    /// The phase references of a set of atoms, which Pulser requires to agree.
    fn common_phase_ref(&self, targets: Targets, what: &str) -> Result<f64> {
        let mut refs = self.atoms(targets).map(|q| self.refs[q].phase);
        let first = refs.next().unwrap_or(0.0);
        if refs.any(|p| p != first) {
            return Err(AnalogError::invalid(format!(
                "Cannot {what} on qubits with different phase references for the same basis."
            )));
        }
        Ok(first)
    }

    fn atoms(&self, t: Targets) -> impl Iterator<Item = usize> + '_ {
        (0..self.refs.len()).filter(move |q| t >> q & 1 == 1)
    }

    /// `Sequence._add` + `_Schedule.add_pulse`. `amp`/`det` are the pulse's waveforms before clock
    /// rounding; `phase` and `post_phase_shift` as given (reduced mod 2π here, as `Pulse` does).
    pub fn add_pulse(
        &mut self,
        c: usize,
        amp: &Waveform,
        det: &Waveform,
        phase: f64,
        post_phase_shift: f64,
        protocol: Protocol,
    ) -> Result<()> {
        let ch = self.chans[c].ch.clone();
        let last_targets = self.last(c)?.targets;
        let phase_ref = self.common_phase_ref(last_targets, "do a multiple-target pulse")?;
        let duration = ch.validate_duration(amp.duration() as i64)?;
        // Rounding may lengthen the pulse: bound it before resampling allocates.
        if duration > self.limit_duration {
            return Err(AnalogError::too_large(format!(
                "channel '{}': a pulse of {duration} ns (after rounding to the clock period) is longer than the \
                 emulator's limit of {} ns",
                ch.id, self.limit_duration
            )));
        }
        let (amp, det) = if duration != amp.duration() {
            (amp.with_new_duration(duration, ch.clock_period)?, det.with_new_duration(duration, ch.clock_period)?)
        } else {
            (amp.clone(), det.clone())
        };
        let detuned_delay = amp.is_constant() == Some(0.0) && det.is_constant().is_some();
        let amp_s = amp.samples();
        let det_s = det.samples();
        let phase = fmt_phase(fmt_phase(phase) + phase_ref);
        let pps = fmt_phase(post_phase_shift);
        let barriers = self.atoms(last_targets).map(|q| self.refs[q].phase_time).max().unwrap_or(0);
        let pulse = PlacedPulse { amp: amp_s, det: det_s, phase, detuned_delay, fall: OnceCell::new() };

        // make_next_pulse_slot
        let t0 = self.last(c)?.tf;
        let mut current = t0.max(barriers);
        let mut jump_buffer = 0;
        if protocol != Protocol::NoDelay {
            current = self.find_add_delay(current, c, protocol)?;
            let last_pulse = self.chans[c].slots.iter().rev().find_map(|s| match s.kind {
                Kind::Pulse(p) if !self.pulses[p].detuned_delay => Some((p, s.tf)),
                _ => None,
            });
            if let Some((p, ptf)) = last_pulse {
                if self.pulses[p].phase != pulse.phase {
                    jump_buffer = ch.phase_jump_time() as i64 + self.pulses[p].fall_time(&ch) - (t0 - ptf);
                }
            }
        }
        let mut delay = (current - t0).max(jump_buffer);
        if delay > 0 {
            delay = ch.adjust_duration(delay)? as i64;
        }
        let ti = t0 + delay;
        let tf = ti + duration as i64;
        self.check_duration(tf)?;
        if delay > 0 {
            self.add_delay(delay, c)?;
        }
        self.pulses.push(pulse);
        let idx = self.pulses.len() - 1;
        self.chans[c].slots.push(Slot { kind: Kind::Pulse(idx), ti, tf, targets: last_targets });
        for q in self.atoms(last_targets).collect::<Vec<_>>() {
            self.refs[q].last_used = self.refs[q].last_used.max(tf);
        }
        if pps != 0.0 {
            self.phase_shift(pps, last_targets);
        }
        Ok(())
    }

    /// `Sequence._phase_shift` on the ground-rydberg basis.
    pub fn phase_shift(&mut self, phi: f64, targets: Targets) {
        for q in self.atoms(targets).collect::<Vec<_>>() {
            let r = &mut self.refs[q];
            r.phase = fmt_phase(r.phase + phi);
            r.phase_time = r.last_used;
        }
    }

    /// `Sequence._delay`.
    pub fn delay(&mut self, c: usize, duration: i64, at_rest: bool) -> Result<()> {
        self.last(c)?;
        if at_rest {
            self.wait_for_fall(c)?;
        }
        if duration == 0 {
            return Ok(());
        }
        self.add_delay(duration, c)
    }

    /// `Sequence.align`.
    pub fn align(&mut self, chans: &[usize], at_rest: bool) -> Result<()> {
        let tf = chans.iter().map(|&c| self.channel_duration(c, at_rest)).max().unwrap_or(0);
        for &c in chans {
            let delta = tf - self.channel_duration(c, false);
            if delta > 0 {
                self.last(c)?;
                let d = self.chans[c].ch.adjust_duration(delta)? as i64;
                self.add_delay(d, c)?;
            }
        }
        Ok(())
    }

    /// `Sequence._target` + `_Schedule.add_target`.
    pub fn target(&mut self, c: usize, targets: Targets) -> Result<()> {
        let ch = self.chans[c].ch.clone();
        if ch.addressing != Addressing::Local {
            return Err(AnalogError::invalid(format!(
                "channel '{}': Can only choose target of 'Local' channels.",
                ch.id
            )));
        }
        if targets == 0 {
            return Err(AnalogError::invalid("Need at least one qubit to target but none were given."));
        }
        if let Some(max) = ch.max_targets {
            if targets.count_ones() as usize > max {
                return Err(AnalogError::invalid(format!(
                    "channel '{}': This channel can target at most {max} qubits at a time.",
                    ch.id
                )));
            }
        }
        self.common_phase_ref(targets, "target multiple qubits")?;
        let (ti, tf) = if self.chans[c].slots.is_empty() {
            (-1, 0)
        } else {
            self.wait_for_fall(c)?;
            let last = self.last(c)?;
            if last.targets == targets {
                return Ok(());
            }
            let ti = last.tf;
            let last_target =
                self.chans[c].slots.iter().rev().find(|s| matches!(s.kind, Kind::Target)).map(|s| s.tf).unwrap_or(0);
            let retarget = ch.min_retarget_interval as i64;
            let mut delta = (retarget - (ti - last_target)).clamp(0, retarget);
            if ch.fixed_retarget_t > 0 {
                delta = delta.max(ch.fixed_retarget_t as i64);
            }
            if delta != 0 {
                delta = ch.adjust_duration(delta)? as i64;
            }
            (ti, ti + delta)
        };
        self.check_duration(tf)?;
        self.chans[c].slots.push(Slot { kind: Kind::Target, ti, tf, targets });
        Ok(())
    }

    /// The samples per ns, as `Sequence` sampling and `to_nested_dict` lay them out.
    pub fn drive(&self) -> Drive {
        let t = self.duration().max(0) as usize;
        let n = self.refs.len();
        let mut global = DriveSamples::zeros(t);
        let mut local: Vec<Option<DriveSamples>> = vec![None; n];
        for (c, cs) in self.chans.iter().enumerate() {
            let (samples, slots) = self.channel_samples(c, t);
            match cs.ch.addressing {
                Addressing::Global => {
                    for k in 0..t {
                        global.amp[k] += samples.amp[k];
                        global.det[k] += samples.det[k];
                        global.phase[k] += samples.phase[k];
                    }
                }
                Addressing::Local => {
                    for (ti, tf, targets) in slots {
                        let (ti, tf) = (ti.clamp(0, t as i64) as usize, tf.clamp(0, t as i64) as usize);
                        for q in self.atoms(targets) {
                            let d = local[q].get_or_insert_with(|| DriveSamples::zeros(t));
                            for k in ti..tf {
                                d.amp[k] += samples.amp[k];
                                d.det[k] += samples.det[k];
                                d.phase[k] += samples.phase[k];
                            }
                        }
                    }
                }
            }
        }
        for l in local.iter_mut() {
            if l.as_ref().is_some_and(DriveSamples::is_zero) {
                *l = None;
            }
        }
        Drive { duration: t, global, local }
    }

    /// `_ChannelSchedule.get_samples` extended to `t` (amplitude and detuning padded with zeros, the
    /// phase with its last value), and the pulse slots with their fall-time extension.
    fn channel_samples(&self, c: usize, t: usize) -> (DriveSamples, Vec<(i64, i64, Targets)>) {
        let cs = &self.chans[c];
        let own = self.channel_duration(c, false).max(0) as usize;
        let mut s = DriveSamples::zeros(t.max(own));
        let pulse_slots: Vec<&Slot> = cs.slots.iter().filter(|x| matches!(x.kind, Kind::Pulse(_))).collect();
        let mut out_slots = Vec::new();
        let jump = cs.ch.phase_jump_time() as i64;
        for (ind, slot) in pulse_slots.iter().enumerate() {
            let Kind::Pulse(p) = slot.kind else { continue };
            let pulse = &self.pulses[p];
            let ti = slot.ti as usize;
            for (k, (a, d)) in pulse.amp.iter().zip(&pulse.det).enumerate() {
                s.amp[ti + k] += a;
                s.det[ti + k] += d;
            }
            // The fall-time extension only matters where samples go to targets (Local channels).
            let fall = if cs.ch.addressing == Addressing::Local { pulse.fall_time(&cs.ch) } else { 0 };
            let ext = match pulse_slots.get(ind + 1) {
                Some(next) => fall.min(next.ti - slot.tf),
                None => fall,
            };
            out_slots.push((slot.ti, slot.tf + ext, slot.targets));
            if pulse.detuned_delay {
                continue;
            }
            let prev = pulse_slots[..ind].iter().rev().find(|x| match x.kind {
                Kind::Pulse(q) => !self.pulses[q].detuned_delay,
                _ => false,
            });
            let t_start = match prev {
                Some(prev) => (slot.ti - jump).max(prev.tf),
                None => 0,
            };
            for v in s.phase[t_start.max(0) as usize..own].iter_mut() {
                *v = pulse.phase;
            }
        }
        // Beyond the channel's own end the phase keeps its last value (`extend_duration`).
        if own > 0 && own < s.phase.len() {
            let last = s.phase[own - 1];
            for v in s.phase[own..].iter_mut() {
                *v = last;
            }
        }
        (s, out_slots)
    }
}
