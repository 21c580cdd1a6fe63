//! Fuzz target `gguf_framed`: structure-aware: the input draws a GGUF file's metadata and tensor infos, written in valid GGUF framing (`attn_spectra::fuzzing::gguf_file`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::gguf_framed(data);
});
