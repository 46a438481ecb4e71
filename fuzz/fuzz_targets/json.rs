//! The spanned JSON parser against serde_json: same verdict, same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osbuild_fuzz::json(data));
