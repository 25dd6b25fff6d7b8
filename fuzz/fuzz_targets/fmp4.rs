#![no_main]
//! See `sluice_fuzz::fmp4`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::fmp4::fuzz(data));
