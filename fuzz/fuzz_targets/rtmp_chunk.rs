#![no_main]
//! See `sluice_fuzz::rtmp`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::rtmp::fuzz(data));
