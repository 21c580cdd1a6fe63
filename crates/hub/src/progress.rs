//! Progress bars (indicatif, one per file on stderr) for downloads.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars are drawn: asked for, and stderr is a terminal.
pub(crate) fn bars_enabled(asked: bool) -> bool {
    asked && std::io::stderr().is_terminal()
}

/// A bar for downloading `file` of `total` bytes (hidden when `enabled` is false).
pub(crate) fn file_bar(enabled: bool, file: &str, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(file.to_string());
    bar
}
