#![no_main]
//! See `polis_gateway::fuzzing::redirect_binding`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| polis_gateway::fuzzing::redirect_binding(data));
