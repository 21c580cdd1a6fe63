//! GPU check: the torch backend on CUDA against faer on the same matrices (the seed study's
//! shapes, their per-head matrices and circuits), printing agreement and timings as Markdown.
//!
//! ```text
//! gpu_check [--quick] [--ref-layers N] [--budget-s S] [--threads N] [--device cuda|cpu]
//! ```
//!
//! `--quick` uses 2 layers per model and skips the 4096 layer; `--ref-layers` (default 1) is
//! how many layers faer recomputes as the reference; `--budget-s` (default 300) stops starting
//! new GPU runs once that much time has passed. Without a visible CUDA device it says so,
//! compares torch-cpu against faer on the quick set instead, and exits with status 2. It exits
//! with 1 when an agreement bound is broken: the accuracy contract (both backends within
//! `Precision::tolerance()` · σ_1 of the exact values, so within twice that of each other:
//! 2e-12 in f64, 2e-6 in f32).

#[path = "common/workloads.rs"]
mod workloads;

use std::time::Instant;

use attn_spectra::Matrix;
use attn_spectra::spectral::{FaerBackend, Job, Precision, SvdBackend};
use attn_spectra_torch::{CudaDriver, TorchBackend, cuda_available};
use workloads::{LLAMA7B_LAYER, Model, SEED_768, SEED_1024, Workload, max_rel_diff, timed};

struct Options {
    quick: bool,
    ref_layers: usize,
    budget_s: f64,
    threads: usize,
    cuda: bool,
}

fn parse_args() -> Options {
    let mut o = Options {
        quick: false,
        ref_layers: 1,
        budget_s: 300.0,
        threads: 0,
        cuda: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--ref-layers" => o.ref_layers = parse(&value("--ref-layers")),
            "--budget-s" => o.budget_s = parse(&value("--budget-s")),
            "--threads" => o.threads = parse(&value("--threads")),
            "--device" => match value("--device").as_str() {
                "cuda" => o.cuda = true,
                "cpu" => o.cuda = false,
                other => fail(&format!("--device {other}: expected cuda or cpu")),
            },
            "-h" | "--help" => {
                println!(
                    "gpu_check [--quick] [--ref-layers N] [--budget-s S] [--threads N] [--device cuda|cpu]"
                );
                std::process::exit(0);
            }
            other => fail(&format!("unknown argument {other}")),
        }
    }
    o
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| fail(&format!("cannot parse `{s}`")))
}

fn fail(msg: &str) -> ! {
    eprintln!("gpu_check: {msg}");
    std::process::exit(64);
}

struct Report {
    rows: Vec<String>,
    broken: Vec<String>,
}

impl Report {
    fn row(&mut self, cells: &[String]) {
        let line = format!("| {} |", cells.join(" | "));
        println!("{line}");
        self.rows.push(line);
    }

    fn check(&mut self, what: &str, diff: f64, precision: Precision) {
        // Each backend keeps the contract, so they agree within twice its tolerance.
        let bound = 2.0 * precision.tolerance();
        if diff.is_nan() || diff > bound {
            self.broken
                .push(format!("{what} {precision}: {diff:.3e} > {bound:e}"));
        }
    }
}

fn main() {
    let o = parse_args();
    let start = Instant::now();
    println!(
        "libtorch (build time): {}",
        option_env!("ATTN_SPECTRA_LIBTORCH_LIB").unwrap_or("?")
    );
    let has_cuda = cuda_available();
    println!(
        "CUDA visible to libtorch: {has_cuda} ({} device(s)); host threads: {}",
        tch::Cuda::device_count(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut exit = 0;
    let (torch, quick) = if o.cuda && has_cuda {
        (TorchBackend::cuda(0).expect("CUDA device 0"), o.quick)
    } else {
        if o.cuda {
            eprintln!(
                "gpu_check: no CUDA device is visible to libtorch (no GPU, no driver, or a CPU-only \
                 libtorch). The GPU check was NOT performed; comparing torch-cpu with faer on the \
                 quick set instead."
            );
            exit = 2;
        }
        (TorchBackend::cpu(o.threads), true)
    };
    let faer = FaerBackend::new(o.threads).expect("faer threads");
    println!("faer threads: {}", faer.threads());

    // Warm-up: CUDA context, cuSOLVER handles, first-use allocations.
    {
        let w = workloads::Rng::new(1).weight(64, 64);
        let t = Instant::now();
        torch
            .spectra(&[Job::Dense(&w)], Precision::F64)
            .expect("warm-up");
        println!("warm-up: {:.2} s", t.elapsed().as_secs_f64());
    }

    let models: Vec<Model> = if quick {
        vec![SEED_768, SEED_1024]
    } else {
        vec![SEED_768, SEED_1024, LLAMA7B_LAYER]
    };
    let mut report = Report {
        rows: Vec::new(),
        broken: Vec::new(),
    };
    println!();
    report.row(&[
        "workload".into(),
        "jobs".into(),
        "precision".into(),
        "backend".into(),
        "seconds".into(),
        "ms/job".into(),
        "max |Δσ|/σ_1 vs faer f64".into(),
    ]);
    report.row(&vec!["---".to_string(); 7]);
    let drivers: &[CudaDriver] = if torch.device() == tch::Device::Cpu {
        &[CudaDriver::Gesvdj] // ignored on the CPU
    } else {
        &[CudaDriver::Gesvdj, CudaDriver::Gesvd]
    };

    for model in models {
        let n_layers = if quick {
            2.min(model.layers)
        } else {
            model.layers
        };
        let layers = workloads::layers(&model, n_layers, 42);
        let ref_layers = o.ref_layers.clamp(1, n_layers);
        let (heads, circuits): (Vec<Matrix>, Vec<(Matrix, Matrix)>) = {
            let mut h = Vec::new();
            let mut c = Vec::new();
            for l in &layers {
                let (a, b) = workloads::per_head(&model, l);
                h.extend(a);
                c.extend(b);
            }
            (h, c)
        };
        let heads_per_layer = 4 * model.heads;
        let circuits_per_layer = 2 * model.heads;
        // The 4096 layer: faer recomputes two of its four matrices.
        let whole_ref = if model.d >= 4096 { 2 } else { 4 * ref_layers };
        let sets: [(&str, Workload, usize); 3] = [
            ("whole", Workload::Whole(&layers), whole_ref),
            (
                "per-head",
                Workload::Heads(&heads),
                heads_per_layer * ref_layers,
            ),
            (
                "circuits",
                Workload::Circuits(&circuits),
                circuits_per_layer * ref_layers,
            ),
        ];
        for (set, workload, n_ref) in sets {
            let jobs = workload.jobs();
            let n_ref = n_ref.min(jobs.len());
            let label = format!("{} {set}", model.name);
            let (t_ref, reference) = timed(&faer, &jobs[..n_ref], Precision::F64);
            report.row(&[
                label.clone(),
                n_ref.to_string(),
                "f64".into(),
                "faer (reference)".into(),
                format!("{t_ref:.3}"),
                format!("{:.2}", 1e3 * t_ref / n_ref as f64),
                "0".into(),
            ]);
            let (t32, faer32) = timed(&faer, &jobs[..n_ref], Precision::F32);
            let d = max_rel_diff(&faer32, &reference);
            report.row(&[
                label.clone(),
                n_ref.to_string(),
                "f32".into(),
                "faer".into(),
                format!("{t32:.3}"),
                format!("{:.2}", 1e3 * t32 / n_ref as f64),
                format!("{d:.2e}"),
            ]);
            for &driver in drivers {
                let backend = TorchBackend::cuda(0)
                    .map(|b| b.with_cuda_driver(driver))
                    .unwrap_or_else(|_| TorchBackend::cpu(o.threads));
                let name = if backend.device() == tch::Device::Cpu {
                    "torch-cpu".to_string()
                } else {
                    format!("torch-cuda {}", driver.name())
                };
                for precision in [Precision::F64, Precision::F32] {
                    if start.elapsed().as_secs_f64() > o.budget_s {
                        report.row(&[
                            label.clone(),
                            jobs.len().to_string(),
                            precision.to_string(),
                            name.clone(),
                            "skipped (budget)".into(),
                            "".into(),
                            "".into(),
                        ]);
                        continue;
                    }
                    let (t, out) = timed(&backend, &jobs, precision);
                    let d = max_rel_diff(&out[..n_ref], &reference);
                    report.check(&format!("{label} {name}"), d, precision);
                    report.row(&[
                        label.clone(),
                        jobs.len().to_string(),
                        precision.to_string(),
                        name.clone(),
                        format!("{t:.3}"),
                        format!("{:.2}", 1e3 * t / jobs.len() as f64),
                        format!("{d:.2e}"),
                    ]);
                }
            }
        }
    }
    println!("\ntotal: {:.1} s", start.elapsed().as_secs_f64());
    if report.broken.is_empty() {
        println!("agreement: all within the contract (f64 2e-12, f32 2e-6 relative to sigma_1)");
    } else {
        println!("agreement BROKEN:");
        for b in &report.broken {
            println!("  {b}");
        }
        exit = 1;
    }
    std::process::exit(exit);
}
