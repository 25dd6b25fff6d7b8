#![no_main]
//! See `sluice_fuzz::tier_frame`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::tier_frame::fuzz(data));
