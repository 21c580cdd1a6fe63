//! Synthetic attention weights shaped like the seed study's models, and their per-head
//! matrices and circuits, for `gpu_check` and `bench_spectral`.

#![allow(dead_code)]

use std::time::Instant;

use attn_spectra::Matrix;
use attn_spectra::spectral::{Job, Precision, SvdBackend};

/// A model shape: `layers` layers of four `d x d` projections (W_Q, W_K, W_V, W_O), split into
/// `heads` heads of size `d_head`.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    pub name: &'static str,
    pub layers: usize,
    pub d: usize,
    pub heads: usize,
    pub d_head: usize,
}

/// 12 layers x 4 matrices of 768x768 (GPT-2 small, BERT base).
pub const SEED_768: Model = Model {
    name: "12x4x768",
    layers: 12,
    d: 768,
    heads: 12,
    d_head: 64,
};

/// 24 layers x 4 matrices of 1024x1024 (GPT-2 medium, BERT large).
pub const SEED_1024: Model = Model {
    name: "24x4x1024",
    layers: 24,
    d: 1024,
    heads: 16,
    d_head: 64,
};

/// One Llama-7B layer: 4 matrices of 4096x4096, 32 heads of 128.
pub const LLAMA7B_LAYER: Model = Model {
    name: "1x4x4096",
    layers: 1,
    d: 4096,
    heads: 32,
    d_head: 128,
};

/// splitmix64 + Box–Muller.
pub struct Rng(u64, Option<f64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed, None)
    }

    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        if let Some(x) = self.1.take() {
            return x;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * v;
        self.1 = Some(r * t.sin());
        r * t.cos()
    }

    /// A Gaussian matrix scaled by 1/sqrt(cols), with a few stronger directions so the
    /// spectrum is not a pure Marchenko–Pastur bulk.
    pub fn weight(&mut self, rows: usize, cols: usize) -> Matrix {
        let s = 1.0 / (cols as f64).sqrt();
        let mut m = Matrix::from_fn(rows, cols, |_, _| self.normal() * s);
        let boost: Vec<f64> = (0..cols)
            .map(|c| if c % 97 == 0 { 4.0 } else { 1.0 })
            .collect();
        m.scale_columns(&boost);
        m
    }
}

/// The four `d x d` projections of each of the first `layers` layers.
pub fn layers(model: &Model, layers: usize, seed: u64) -> Vec<[Matrix; 4]> {
    let mut rng = Rng::new(seed);
    (0..layers)
        .map(|_| std::array::from_fn(|_| rng.weight(model.d, model.d)))
        .collect()
}

/// Per-head matrices of one layer: W_Q^h, W_K^h, W_V^h as `[d_head, d]` row blocks and W_O^h as
/// a `[d, d_head]` column block; and the circuits OV^h = W_O^h W_V^h and
/// QK^h = (W_Q^h)^T W_K^h as factor pairs.
pub fn per_head(model: &Model, layer: &[Matrix; 4]) -> (Vec<Matrix>, Vec<(Matrix, Matrix)>) {
    let [q, k, v, o] = layer;
    let mut heads = Vec::new();
    let mut circuits = Vec::new();
    for h in 0..model.heads {
        let start = h * model.d_head;
        let qh = q.row_block(start, model.d_head);
        let kh = k.row_block(start, model.d_head);
        let vh = v.row_block(start, model.d_head);
        let oh = o.col_block(start, model.d_head);
        circuits.push((oh.clone(), vh.clone()));
        circuits.push((qh.transpose(), kh.clone()));
        heads.extend([qh, kh, vh, oh]);
    }
    (heads, circuits)
}

/// The jobs of a workload.
pub enum Workload<'a> {
    Whole(&'a [[Matrix; 4]]),
    Heads(&'a [Matrix]),
    Circuits(&'a [(Matrix, Matrix)]),
}

impl<'a> Workload<'a> {
    pub fn jobs(&self) -> Vec<Job<'a>> {
        match self {
            Workload::Whole(layers) => layers.iter().flatten().map(Job::Dense).collect(),
            Workload::Heads(m) => m.iter().map(Job::Dense).collect(),
            Workload::Circuits(p) => p
                .iter()
                .map(|(l, r)| Job::Product { left: l, right: r })
                .collect(),
        }
    }
}

/// Runs `backend` on `jobs` and returns (seconds, spectra).
pub fn timed(backend: &dyn SvdBackend, jobs: &[Job], precision: Precision) -> (f64, Vec<Vec<f64>>) {
    let t = Instant::now();
    let out = backend
        .spectra(jobs, precision)
        .unwrap_or_else(|e| panic!("{} {precision}: {e}", backend.name()));
    (t.elapsed().as_secs_f64(), out)
}

/// The largest |a_i - b_i| / b_1 over all jobs (b is the reference).
pub fn max_rel_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() {
            return f64::INFINITY;
        }
        let scale = y.first().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs() / scale);
        }
    }
    worst
}
