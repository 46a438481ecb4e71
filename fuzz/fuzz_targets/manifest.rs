//! Bytes → manifest parser → pre-flight check → plan, every diagnostic rendered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The CLI reads manifests with read_to_string: only UTF-8 gets this far.
    if let Ok(text) = std::str::from_utf8(data) {
        osbuild_fuzz::manifest(text);
    }
});
