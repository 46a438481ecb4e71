//! A Rhai script → lowering (bounded engine, the real stdlib) → plans and
//! round-tripped manifests, every diagnostic rendered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        osbuild_fuzz::lower(text);
    }
});
