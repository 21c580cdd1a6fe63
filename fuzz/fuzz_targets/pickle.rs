//! Fuzz target `pickle`: structure-aware: the input is data.pkl inside a valid torch.save zip archive.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::pickle(data);
});
