#![no_main]
//! See `sluice_fuzz::amf0`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::amf0::fuzz(data));
