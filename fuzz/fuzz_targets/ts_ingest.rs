#![no_main]
//! See `sluice_fuzz::ts_ingest`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::ts_ingest::fuzz(data));
