#![no_main]
//! See `polis_gateway::fuzzing::xml_reader`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| polis_gateway::fuzzing::xml_reader(data));
