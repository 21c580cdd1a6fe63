//! Fuzz target `hub_response`: Hub client: a HEAD answer (ETag, size) and a ranged GET answer (status, Content-Range, body).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attn_spectra_hub::fuzzing::response(data);
});
