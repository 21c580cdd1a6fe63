//! Benchmark of the spectral backends (not a test): whole-layer matrices of the seed study's
//! shapes and one Llama-7B layer, plus their per-head matrices and circuits, per backend and
//! precision, against a LAPACK floor measured in the same run. Prints a Markdown table.
//!
//! ```text
//! bench_spectral [--models 768,1024,4096] [--precisions f32,f64]
//!                [--backends faer,faer-svd,faer-gram,faer-within,torch-cpu] [--threads 2]
//!                [--floor numpy.json]
//! ```
//!
//! Backends: `faer` (the default configuration), `faer-svd` (SVD for every dense job),
//! `faer-gram` (checked Gram path for every dense job), `faer-within` (one job at a time using
//! all threads), `torch-cpu`. The in-process floor is libtorch's `svd(compute_uv=false)` (MKL
//! gesdd, values only) on the same matrices, split into `--threads` sub-batches run at once,
//! each single-threaded; `--floor` adds numpy's `np.linalg.svd(compute_uv=False)` timings
//! measured the same way by scripts/bench_spectral.sh just before (a JSON object
//! `{"768": {"f32": s, "f64": s}, ...}` for the whole-layer set). "vs floor" divides by the
//! faster floor of the same precision.
//! Accuracy is the largest |Δσ| / σ_1 against LAPACK f64 (torch-cpu in f64).

#[path = "common/workloads.rs"]
mod workloads;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use attn_spectra::Matrix;
use attn_spectra::spectral::{
    DenseAlgorithm, FaerBackend, Job, JobParallelism, Precision, SvdBackend,
};
use attn_spectra_torch::TorchBackend;
use tch::{Kind, Tensor};
use workloads::{LLAMA7B_LAYER, Model, SEED_768, SEED_1024, Workload, max_rel_diff, timed};

struct Options {
    models: Vec<Model>,
    precisions: Vec<Precision>,
    backends: Vec<String>,
    threads: usize,
    floor: BTreeMap<String, BTreeMap<String, f64>>,
}

fn fail(msg: &str) -> ! {
    eprintln!("bench_spectral: {msg}");
    std::process::exit(64);
}

fn parse_args() -> Options {
    let mut o = Options {
        models: vec![SEED_768, SEED_1024, LLAMA7B_LAYER],
        precisions: vec![Precision::F32, Precision::F64],
        backends: vec![
            "faer".into(),
            "faer-svd".into(),
            "faer-gram".into(),
            "faer-within".into(),
            "torch-cpu".into(),
        ],
        threads: 2,
        floor: BTreeMap::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args
            .next()
            .unwrap_or_else(|| fail(&format!("{a} needs a value")));
        let list = || v.split(',').map(str::trim).filter(|s| !s.is_empty());
        match a.as_str() {
            "--models" => {
                o.models = list()
                    .map(|m| match m {
                        "768" => SEED_768,
                        "1024" => SEED_1024,
                        "4096" => LLAMA7B_LAYER,
                        other => fail(&format!("unknown model {other}: 768, 1024 or 4096")),
                    })
                    .collect()
            }
            "--precisions" => {
                o.precisions = list()
                    .map(|p| p.parse().unwrap_or_else(|e| fail(&format!("{e}"))))
                    .collect()
            }
            "--backends" => o.backends = list().map(String::from).collect(),
            "--threads" => o.threads = v.parse().unwrap_or_else(|_| fail("--threads")),
            "--floor" => {
                let text = std::fs::read_to_string(&v)
                    .unwrap_or_else(|e| fail(&format!("cannot read {v}: {e}")));
                o.floor = serde_json::from_str(&text)
                    .unwrap_or_else(|e| fail(&format!("{v} is not the floor JSON: {e}")));
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    o
}

/// libtorch's values-only SVD (LAPACK gesdd from MKL) as a floor: the batch split into
/// `threads` parts run at once, each single-threaded (seconds).
fn torch_floor(mats: &[&Matrix], precision: Precision, threads: usize) -> f64 {
    let (r, c) = mats[0].shape();
    let kind = match precision {
        Precision::F32 => Kind::Float,
        Precision::F64 => Kind::Double,
    };
    let part = mats.len().div_ceil(threads.max(1));
    let tensors: Vec<Tensor> = mats
        .chunks(part)
        .map(|chunk| {
            let mut buf = Vec::with_capacity(chunk.len() * r * c);
            for m in chunk {
                buf.extend_from_slice(m.data());
            }
            Tensor::from_slice(&buf)
                .view([chunk.len() as i64, r as i64, c as i64])
                .to_kind(kind)
        })
        .collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in tensors {
            scope.spawn(move || {
                let _g = tch::no_grad_guard();
                let (_, s, _) = t.svd(true, false);
                s.sum(Kind::Double).double_value(&[])
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
    let _ = std::io::stdout().flush();
}

fn main() {
    let o = parse_args();
    let torch = TorchBackend::cpu(o.threads);
    let faer = FaerBackend::new(o.threads).expect("threads");
    let gram = FaerBackend::new(o.threads)
        .expect("threads")
        .with_dense_algorithm(DenseAlgorithm::GramChecked);
    let svd_only = FaerBackend::new(o.threads)
        .expect("threads")
        .with_dense_algorithm(DenseAlgorithm::Svd);
    let within = FaerBackend::new(o.threads)
        .expect("threads")
        .with_parallelism(JobParallelism::WithinJobs);
    println!(
        "threads: {} (faer pool; torch-cpu and the floor: sub-batches on that many threads, 1 libtorch intra-op thread); OPENBLAS_CORETYPE={}",
        o.threads,
        std::env::var("OPENBLAS_CORETYPE").unwrap_or_else(|_| "(unset)".into())
    );
    println!();
    row(&[
        "model".into(),
        "set".into(),
        "jobs".into(),
        "precision".into(),
        "backend".into(),
        "seconds".into(),
        "vs floor".into(),
        "max |Δσ|/σ_1 vs LAPACK f64".into(),
    ]);
    row(&vec!["---".to_string(); 8]);
    let mut extra: Vec<String> = Vec::new();

    for model in &o.models {
        let layers = workloads::layers(model, model.layers, 42);
        let mut heads = Vec::new();
        let mut circuits = Vec::new();
        for l in &layers {
            let (h, c) = workloads::per_head(model, l);
            heads.extend(h);
            circuits.extend(c);
        }
        let key = model.d.to_string();
        let whole_mats: Vec<&Matrix> = layers.iter().flatten().collect();
        let sets: [(&str, Workload); 3] = [
            ("whole", Workload::Whole(&layers)),
            ("per-head", Workload::Heads(&heads)),
            ("circuits", Workload::Circuits(&circuits)),
        ];
        // Reference spectra: LAPACK f64 through torch-cpu (MKL), per set.
        let mut reference: Vec<Vec<Vec<f64>>> = Vec::new();
        let mut t_ref: Vec<f64> = Vec::new();
        for (_, w) in &sets {
            let (t, r) = timed(&torch, &w.jobs(), Precision::F64);
            reference.push(r);
            t_ref.push(t);
        }
        for &precision in &o.precisions {
            let p = precision.to_string();
            let t_torch_floor = torch_floor(&whole_mats, precision, o.threads);
            let t_numpy = o.floor.get(&key).and_then(|m| m.get(&p)).copied();
            let floor = t_numpy.map_or(t_torch_floor, |n| n.min(t_torch_floor));
            row(&[
                model.name.into(),
                "whole".into(),
                whole_mats.len().to_string(),
                p.clone(),
                "floor: libtorch gesdd values-only (MKL)".into(),
                format!("{t_torch_floor:.2}"),
                format!("{:.2}", t_torch_floor / floor),
                "".into(),
            ]);
            if let Some(n) = t_numpy {
                row(&[
                    model.name.into(),
                    "whole".into(),
                    whole_mats.len().to_string(),
                    p.clone(),
                    "floor: numpy gesdd values-only (OpenBLAS)".into(),
                    format!("{n:.2}"),
                    format!("{:.2}", n / floor),
                    "".into(),
                ]);
            }
            for name in &o.backends {
                let backend: &dyn SvdBackend = match name.as_str() {
                    "faer" => &faer,
                    "faer-gram" => &gram,
                    "faer-svd" => &svd_only,
                    "faer-within" => &within,
                    "torch-cpu" => &torch,
                    other => fail(&format!("unknown backend {other}")),
                };
                let mut times = [0.0; 3];
                for (i, (set, w)) in sets.iter().enumerate() {
                    // Variants that only change dense jobs, or whole-layer ones.
                    let skip = match name.as_str() {
                        "faer-gram" | "faer-svd" => *set == "circuits",
                        "faer-within" => *set != "whole",
                        _ => false,
                    };
                    if skip {
                        continue;
                    }
                    let jobs: Vec<Job> = w.jobs();
                    let (t, out) = if name == "torch-cpu" && precision == Precision::F64 {
                        (t_ref[i], reference[i].clone())
                    } else {
                        timed(backend, &jobs, precision)
                    };
                    times[i] = t;
                    let d = max_rel_diff(&out, &reference[i]);
                    row(&[
                        model.name.into(),
                        (*set).into(),
                        jobs.len().to_string(),
                        p.clone(),
                        name.clone(),
                        format!("{t:.2}"),
                        if *set == "whole" {
                            format!("{:.2}", t / floor)
                        } else {
                            "".into()
                        },
                        format!("{d:.1e}"),
                    ]);
                }
                if (name == "faer" || name == "torch-cpu") && times[0] > 0.0 {
                    extra.push(format!(
                        "{} {p} {name}: per-head + circuits add {:.0}% to the whole-layer time ({:.2} s + {:.2} s on {:.2} s)",
                        model.name,
                        100.0 * (times[1] + times[2]) / times[0],
                        times[1],
                        times[2],
                        times[0]
                    ));
                }
            }
        }
    }
    println!();
    for e in extra {
        println!("- {e}");
    }
}
