//! Fuzz target `gguf_blocks`: every GGUF block decoder: first byte picks the type, the rest is blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::gguf_blocks(data);
});
