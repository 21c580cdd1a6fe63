//! Serves a directory tree as a mock Hugging Face Hub on 127.0.0.1, for checking other clients
//! (Python's `huggingface_hub`, say) against the mock: `mock_hub <root> [seconds]`.
//!
//! Prints `endpoint <url>` on stdout, then serves until stdin is closed or `seconds` (default
//! 300) have passed.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use attn_spectra_hub::mock::MockHub;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: mock_hub <root> [seconds]");
        std::process::exit(2);
    };
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
    let hub = MockHub::start(root)?;
    println!("endpoint {}", hub.endpoint());
    std::io::stdout().flush()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
            line.clear();
        }
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(secs));
    for r in hub.requests() {
        eprintln!(
            "{:?} {} {} {:?} -> {} ({} bytes)",
            r.origin, r.method, r.path, r.range, r.status, r.body_bytes
        );
    }
    Ok(())
}
