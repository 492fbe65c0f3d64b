#![no_main]
//! See `polis_gateway::fuzzing::response_parse`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| polis_gateway::fuzzing::response_parse(data));
