#![no_main]
//! See `sluice_fuzz::fragment`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::fragment::fuzz(data));
