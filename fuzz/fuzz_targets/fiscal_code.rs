#![no_main]
//! See `polis_gateway::fuzzing::fiscal_code`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| polis_gateway::fuzzing::fiscal_code(data));
