#![no_main]
//! See `sluice_fuzz::flv`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::flv::fuzz(data));
