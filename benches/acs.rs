//! `make bench`: ACS validation throughput on one core.
//!
//! Builds signed SPID Responses (Assertion and Response signed, RSA-2048, 6
//! attributes) with the mock-IdP builder, then times `response::parse` +
//! `response::validate` (strict read, shape checks, the one-parse verification of
//! both signatures in `saml::verify`: exclusive c14n of the read tree, openssl digest
//! and RSA, every R-* rule) on a single thread. Prints validated Responses per
//! second and the per-Response latency distribution.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use chrono::Utc;
use polis_gateway::keygen::generate_idp_test_cert;
use polis_gateway::saml::idp::{AttributeValue, ResponseSpec, ResponseStatus, build_response};
use polis_gateway::saml::request::Binding;
use polis_gateway::saml::xml::Limits;
use polis_gateway::saml::{
    Comparison, Level, PendingRequest, ResponseCheck, SigningKey, TrustedCert, response,
};

const SP: &str = "https://polis.example.gov.it";
const ACS: &str = "https://polis.example.gov.it/acs";
const IDP: &str = "https://idp.example.it";

fn main() {
    let g = generate_idp_test_cert("bench IdP", 30).unwrap();
    let key = SigningKey::from_pem(&g.key_pem, &g.cert_pem).unwrap();
    let certs = [TrustedCert::from_pem(&g.cert_pem).unwrap()];
    let now = Utc::now();
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let attrs: Vec<AttributeValue> = [
        ("spidCode", "MOCK1234567890"),
        ("name", "Mario"),
        ("familyName", "Rossi"),
        ("fiscalNumber", "TINIT-RSSMRA80A01H501U"),
        ("email", "mario.rossi@example.it"),
        ("dateOfBirth", "1980-01-01"),
    ]
    .iter()
    .map(|(n, v)| AttributeValue {
        name: (*n).into(),
        value: (*v).into(),
    })
    .collect();
    let cases: Vec<(PendingRequest, String)> = (0..n)
        .map(|i| {
            let pending = PendingRequest {
                id: format!("_req{i:032}"),
                issue_instant: now,
                idp_entity_id: IDP.into(),
                level: Level::L2,
                comparison: Comparison::Minimum,
                relay_state: "rs".into(),
                binding: Binding::Redirect,
                xml: String::new(),
                return_to: None,
                browser: String::new(),
                profile: polis_gateway::saml::IdpProfile::Spid,
            };
            let xml = build_response(
                &ResponseSpec {
                    idp_entity_id: IDP,
                    sp_entity_id: SP,
                    acs_url: ACS,
                    in_response_to: &pending.id,
                    status: ResponseStatus::Success {
                        level: Level::L2,
                        attributes: attrs.clone(),
                    },
                    now,
                    sign_response: true,
                    profile: polis_gateway::saml::IdpProfile::Spid,
                },
                &key,
            )
            .unwrap();
            (pending, xml)
        })
        .collect();
    let bytes = cases.iter().map(|c| c.1.len()).sum::<usize>() / n;
    // Warm-up.
    for (pending, xml) in cases.iter().take(50) {
        validate(pending, xml, &certs, now);
    }
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for (pending, xml) in &cases {
        let t = Instant::now();
        validate(pending, xml, &certs, now);
        latencies.push(t.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "acs validation (parse + verify x2 + SPID rules), 1 thread, {n} Responses of ~{bytes} bytes"
    );
    println!(
        "  {:.0} validated Responses/s   mean {:?}   p50 {:?}   p99 {:?}   max {:?}",
        n as f64 / total.as_secs_f64(),
        total / u32::try_from(n).unwrap(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(Duration::ZERO)
    );
}

fn validate(
    pending: &PendingRequest,
    xml: &str,
    certs: &[TrustedCert],
    now: chrono::DateTime<Utc>,
) {
    let parsed = response::parse(xml, Limits::default()).unwrap();
    let v = response::validate(
        &parsed,
        &ResponseCheck {
            pending,
            sp_entity_id: SP,
            acs_url: ACS,
            idp_certs: certs,
            now,
            clock_skew: chrono::Duration::seconds(60),
            max_validity: chrono::Duration::seconds(1800),
            limits: Limits::default(),
        },
    )
    .unwrap();
    assert_eq!(v.level(), Level::L2);
}
