//! Fuzz target `config`: config.json through the architecture registry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::config(data);
});
