//! Fetches a model with the settings of the environment (`HF_ENDPOINT`, `HF_TOKEN`,
//! `HF_HUB_CACHE`, `HF_HOME`, `HF_HUB_OFFLINE`) and prints what landed as JSON:
//! `hub_fetch <org/name> [revision] [file.gguf]`.

use attn_spectra_hub::{Hub, HubOptions, Want};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: hub_fetch <org/name> [revision] [file.gguf]");
        std::process::exit(2);
    };
    let revision = args.get(1).map_or("main", String::as_str);
    let want = args.get(2).map_or(Want::Auto, |g| Want::Gguf(g.clone()));
    let result = Hub::new(HubOptions::from_env()).and_then(|hub| hub.fetch(model, revision, want));
    match result {
        Ok(m) => {
            let files: Vec<serde_json::Value> = m
                .files
                .iter()
                .map(|f| serde_json::json!({"name": f.name, "size": f.size, "sha256": f.sha256, "etag": f.etag}))
                .collect();
            let out = serde_json::json!({
                "model_id": m.model_id,
                "revision": m.revision,
                "commit": m.commit,
                "dir": m.dir,
                "files": files,
                "bytes_downloaded": m.bytes_downloaded,
                "identical_to": m.identical_to,
            });
            println!("{out}");
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
