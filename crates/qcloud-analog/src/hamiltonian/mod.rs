//! The Rydberg Hamiltonian of §7.3, per 1 ns sample:
//! `H = Σ_i [A_i/2 |r⟩⟨g|_i + h.c. − δ_i n_i] + Σ_{i<j} C6/r_ij⁶ n_i n_j`, where the global and
//! the local drive of an atom are separate terms (`A_i = Ω_g e^{iφ_g} + Ω_i e^{iφ_i}`,
//! `δ_i = δ_g + δ_i^local`). Basis index bit i is atom i; a set bit is |r⟩.

pub mod engine;

use crate::device::dist;
use crate::schedule::Drive;
use num_complex::Complex64;

/// Everything the integrator needs.
#[derive(Debug, Clone)]
pub struct Model {
    pub n: usize,
    /// C6 / r_ij⁶ in rad/µs, row-major n×n (zero diagonal).
    pub v: Vec<f64>,
    pub drive: Drive,
}

impl Model {
    pub fn new(coords: &[[f64; 3]], c6: f64, drive: Drive) -> Model {
        let n = coords.len();
        let mut v = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    v[i * n + j] = c6 / dist(&coords[i], &coords[j]).powi(6);
                }
            }
        }
        Model { n, v, drive }
    }

    /// The per-atom drive of step `k`: complex amplitude `A_i` and total detuning `δ_i`.
    pub fn step(&self, k: usize, amps: &mut [Complex64], dets: &mut [f64]) {
        let g = &self.drive.global;
        let ga = Complex64::from_polar(g.amp[k], g.phase[k]);
        for (i, (a, d)) in amps.iter_mut().zip(dets.iter_mut()).enumerate().take(self.n) {
            *a = ga;
            *d = g.det[k];
            if let Some(l) = &self.drive.local[i] {
                *a += Complex64::from_polar(l.amp[k], l.phase[k]);
                *d += l.det[k];
            }
        }
    }

    /// Interaction energy of every basis state: `E[s] = Σ_{i<j ∈ s} V_ij`.
    pub fn interaction_energies(&self) -> Vec<f64> {
        let n = self.n;
        let mut e = vec![0.0; 1usize << n];
        for s in 1usize..(1 << n) {
            let h = usize::BITS as usize - 1 - s.leading_zeros() as usize;
            let rest = s ^ (1 << h);
            let mut add = 0.0;
            let mut r = rest;
            while r != 0 {
                let j = r.trailing_zeros() as usize;
                add += self.v[h * n + j];
                r &= r - 1;
            }
            e[s] = e[rest] + add;
        }
        e
    }

    /// The largest change of the diagonal when one atom flips (`|δ_i| + Σ_j V_ij`), over atoms
    /// and steps: the scale of the splitting error.
    pub fn flip_energy(&self, dets: &[f64], i: usize) -> f64 {
        dets[i].abs() + (0..self.n).map(|j| self.v[i * self.n + j]).sum::<f64>()
    }
}
