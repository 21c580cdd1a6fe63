//! Fuzz target `gguf`: GGUF file (header, metadata, tensor infos, names, config, architecture, layers, every tensor).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::gguf(data);
});
