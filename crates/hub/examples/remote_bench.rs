//! Benchmark of `--remote` reads against the mock Hub on 127.0.0.1: serves a local
//! safetensors checkpoint directory, then reads every layer's attention tensors remotely,
//! first one request per tensor (no hints: the reader as it was before prefetching), then
//! with the extract stage's hints (this layer's and the next one's tensors: merged ranges,
//! several requests in flight). Prints requests, bytes and wall time of each, and checks that
//! both read the same values. No spectra are computed, so it times the downloads alone.
//!
//! `cargo run --release -p attn-spectra-hub --features mock --example remote_bench -- DIR`

use std::time::Instant;

use attn_spectra::{Architecture, Checkpoint};
use attn_spectra_hub::mock::MockHub;
use attn_spectra_hub::{Hub, HubOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: remote_bench <checkpoint dir>");
        std::process::exit(2);
    };
    let served = tempfile_dir()?;
    let hub = MockHub::start(&served)?;
    let model = "bench/model";
    for entry in std::fs::read_dir(&dir)? {
        let p = entry?.path();
        if p.is_file() {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            hub.put_file(model, "main", name, &std::fs::read(&p)?)?;
        }
    }
    let cache = served.with_extension("cache");
    let client = Hub::new(HubOptions::new(hub.endpoint(), &cache))?;
    let mut results = Vec::new();
    for hinted in [false, true] {
        let t = Instant::now();
        let remote = client.open_remote(model, "main")?;
        let ck: &Checkpoint = &remote.checkpoint;
        let arch = Architecture::detect_in(ck)?;
        let mut values = Vec::new();
        for i in 0..arch.geometry().n_layers {
            let metas = arch.layer_tensors(ck, i);
            if hinted {
                let mut wanted = metas.clone();
                wanted.extend(arch.layer_tensors(ck, i + 1));
                ck.prefetch(&wanted);
            }
            for m in metas {
                values.push(ck.read(m)?);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let traffic = remote.traffic();
        println!(
            "{}: {} requests, {:.1} MB, {:.2} s",
            if hinted {
                "prefetch hints"
            } else {
                "one request per tensor"
            },
            traffic.requests(),
            traffic.bytes_downloaded() as f64 / 1e6,
            secs
        );
        results.push(values);
    }
    assert!(results[0] == results[1], "the two reads differ");
    std::fs::remove_dir_all(&served)?;
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("remote-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
