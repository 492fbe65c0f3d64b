#![no_main]
//! See `polis_gateway::fuzzing::signature_differential`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| polis_gateway::fuzzing::signature_differential(data));
