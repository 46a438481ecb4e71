//! The lock parser: a lock that parses round-trips; mistakes are diagnostics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| osbuild_fuzz::lock(data));
