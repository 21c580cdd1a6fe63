//! Progress bars (indicatif, one per file on stderr) and the byte counting behind
//! `FetchedModel::bytes_downloaded`, fed both by `hf-hub`'s progress events and by the crate's
//! own resumable downloads.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hf_hub::progress::{DownloadEvent, FileStatus, ProgressEvent, ProgressHandler};
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

/// Receives `hf-hub`'s download events for one file: moves the bar and remembers how many
/// bytes actually came over the network (cache hits only report `Complete`).
pub(crate) struct FileProgress {
    pub bar: ProgressBar,
    received: AtomicU64,
}

impl FileProgress {
    pub fn new(bar: ProgressBar) -> Arc<FileProgress> {
        Arc::new(FileProgress {
            bar,
            received: AtomicU64::new(0),
        })
    }

    /// Bytes `hf-hub` streamed for this file.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl ProgressHandler for FileProgress {
    fn on_progress(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Download(DownloadEvent::Progress { files }) => {
                for f in files {
                    if f.status == FileStatus::InProgress {
                        self.received
                            .fetch_max(f.bytes_completed, Ordering::Relaxed);
                        self.bar.set_position(f.bytes_completed);
                    }
                }
            }
            ProgressEvent::Download(DownloadEvent::AggregateProgress {
                bytes_completed, ..
            }) => {
                self.received.fetch_max(*bytes_completed, Ordering::Relaxed);
                self.bar.set_position(*bytes_completed);
            }
            _ => {}
        }
    }
}
