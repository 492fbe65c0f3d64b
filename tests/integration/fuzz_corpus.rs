//! The committed fuzz corpora (`fuzz/corpus/<target>/`) replayed through the same entry
//! points the cargo-fuzz targets call (`polis_gateway::fuzzing`), without an
//! instrumented build: every input the fuzzer kept (and every crash it once found, once
//! fixed and added) stays clean on every `cargo test`. The differential target compares
//! the strict reader with libxml2 on each input the strict reader accepts.

use std::path::{Path, PathBuf};

use polis_gateway::fuzzing;

mod libxml_view {
    include!("../../fuzz/libxml_view.rs");
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| {
            let path = f.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{target}: empty corpus");
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn xml_reader_corpus() {
    replay("xml_reader", fuzzing::xml_reader);
}

#[test]
fn post_binding_corpus() {
    replay("post_binding", fuzzing::post_binding);
}

#[test]
fn redirect_binding_corpus() {
    replay("redirect_binding", fuzzing::redirect_binding);
}

#[test]
fn response_parse_corpus() {
    replay("response_parse", fuzzing::response_parse);
}

#[test]
fn fiscal_code_corpus() {
    replay("fiscal_code", fuzzing::fiscal_code);
}

#[test]
fn xml_differential_corpus() {
    let mut compared = 0;
    for (path, data) in corpus("xml_differential") {
        if let Some(strict) = fuzzing::strict_view_comparable(&data) {
            compared += 1;
            assert_eq!(
                Some(strict),
                libxml_view::view(&data),
                "{}: the strict reader and libxml2 disagree",
                path.display()
            );
        }
    }
    // Not vacuous: the seeds include documents both readers accept.
    assert!(compared >= 4, "only {compared} inputs compared");
}

#[test]
fn signature_differential_corpus() {
    replay("signature_differential", fuzzing::signature_differential);
    // The seeds verify (both verifiers: the replay above asserts they agree), so the
    // replay compares acceptances, not only refusals.
    let cert = polis_gateway::saml::sign::TrustedCert::from_pem(include_bytes!(
        "../../certs/demo/mock-idp.crt"
    ))
    .unwrap();
    for seed in ["both-signed.xml", "assertion-signed.xml", "mock-idp.xml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/signature_differential")
            .join(seed);
        let text = std::fs::read_to_string(&path).unwrap();
        let root = polis_gateway::saml::xml::parse(&text, Default::default()).unwrap();
        assert_eq!(
            polis_gateway::saml::verify::verify_all(&root, std::slice::from_ref(&cert)),
            Ok(()),
            "{seed}"
        );
    }
}
