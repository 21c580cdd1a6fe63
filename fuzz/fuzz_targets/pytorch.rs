//! Fuzz target `pytorch`: PyTorch torch.save zip archive (zip, restricted unpickler, views, every tensor).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra::fuzzing::pytorch(data);
});
