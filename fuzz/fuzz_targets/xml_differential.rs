#![no_main]
//! Differential: whatever the strict reader accepts, libxml2 (as samael's patched copy
//! configures it: no network, no recovery, no entity substitution) must read as the
//! same tree of elements, attributes and text. See `polis_gateway::fuzzing::libxml_view`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(strict) = polis_gateway::fuzzing::strict_view_comparable(data) {
        let libxml2 = polis_gateway_fuzz_libxml::view(data);
        assert_eq!(Some(strict), libxml2, "the two readers disagree");
    }
});

mod polis_gateway_fuzz_libxml {
    include!("../libxml_view.rs");
}
