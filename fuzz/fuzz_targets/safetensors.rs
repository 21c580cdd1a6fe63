//! Fuzz target `safetensors`: safetensors file (header length, JSON header, every tensor decoded).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::safetensors(data);
});
