#![no_main]
//! See `polis_gateway::fuzzing::post_binding`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| polis_gateway::fuzzing::post_binding(data));
