//! Fuzz target `safetensors_index`: shard index (model.safetensors.index.json).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::safetensors_index(data);
});
