//! The SP metadata over real HTTP: `/metadata/cie` (signed with the configured CIE
//! key, verified here with our own verifier; the `cie:` extensions) and the SPID
//! metadata with the eIDAS attribute sets 99 and 100.

use std::sync::Arc;

use polis_gateway::keygen::{self, CertProfile, CertRequest, SpSector};
use polis_gateway::saml::cie_metadata::NS_CIE;
use polis_gateway::saml::sign::{ReferenceRule, check_signature_shape, verify_and_reduce};
use polis_gateway::saml::xml::{self, Element, Limits};
use polis_gateway::saml::{NS_DS, NS_MD, TrustedCert};
use polis_gateway::state::MemoryStore;

use crate::support::gateway::{Env, EnvOptions};

const CIE: &str = "[cie]\nenabled = true\npublic = true\nipa_code = \"m_pi\"\nipa_category = \"C10\"\nmunicipality = \"H501\"\nprovince = \"RM\"\ncountry = \"IT\"\n";
const ADMIN: &str =
    "[cie.administrative]\nemail = \"cie@example.gov.it\"\nphone = \"+390600000000\"\n";
const PARTNER: &str = "[cie.technical]\ncompany = \"Partner Tecnologico S.r.l.\"\nemail = \"cie@partner.example.it\"\nvat_number = \"IT12345678901\"\nfiscal_code = \"12345678901\"\nnace2_codes = [\"62.01.00\"]\nmunicipality = \"F205\"\nprovince = \"MI\"\n";

async fn start(extra_toml: String) -> Env {
    Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            extra_toml,
            ..EnvOptions::default()
        },
    )
    .await
}

async fn get(env: &Env, path: &str) -> (u16, String, String) {
    let r = env
        .client()
        .get(format!("{}{path}", env.gw))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// The document read strictly and its one enveloped signature verified with `cert`
/// only (the KeyInfo certificate is not used).
fn verified(md: &str, cert_pem: &[u8]) -> Result<Element, String> {
    let root = xml::parse(md, Limits::default()).map_err(|e| e.to_string())?;
    let id = root.attr("ID").ok_or("no ID")?.to_owned();
    let sig = root
        .required_child(NS_DS, "Signature")
        .map_err(|e| e.to_string())?;
    check_signature_shape(sig, &id, ReferenceRule::IdOnly).map_err(|e| e.to_string())?;
    let cert = TrustedCert::from_pem(cert_pem).map_err(|e| e.to_string())?;
    verify_and_reduce(md, &[cert], Limits::default(), ReferenceRule::IdOnly)
        .map_err(|e| e.to_string())?;
    Ok(root)
}

fn texts<'a>(root: &'a Element, ns: &str, name: &str) -> Vec<&'a str> {
    root.descendants()
        .into_iter()
        .filter(|e| e.is(ns, name))
        .map(Element::trimmed_text)
        .collect()
}

#[tokio::test]
async fn cie_metadata_is_signed_with_its_own_key_and_carries_the_cie_extensions() {
    // A CIE certificate of its own (keygen --profile cie), not the SPID one.
    let dir = tempfile::tempdir().unwrap();
    let cie_cert = keygen::generate_for(
        &CertRequest {
            sector: SpSector::Public,
            common_name: "MIM".into(),
            organization_name: "Ministero dell'Istruzione e del Merito".into(),
            entity_id: "https://istanze.example.gov.it/cie".into(),
            organization_identifier: "PA:IT-m_pi".into(),
            country: "IT".into(),
            locality: "Roma".into(),
            key_bits: 2048,
            days: 30,
        },
        CertProfile::Cie,
    )
    .unwrap();
    let (key, cert) = (dir.path().join("cie.key"), dir.path().join("cie.crt"));
    std::fs::write(&key, &cie_cert.key_pem).unwrap();
    std::fs::write(&cert, &cie_cert.cert_pem).unwrap();
    let own = format!(
        "entity_id = \"https://istanze.example.gov.it/cie\"\nkey_file = \"{}\"\ncertificate_file = \"{}\"\n",
        key.display(),
        cert.display()
    );
    let env = start(format!("{CIE}{own}{ADMIN}{PARTNER}")).await;

    let (status, ctype, md) = get(&env, "/metadata/cie").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/samlmetadata+xml"), "{ctype}");
    let root = verified(&md, &cie_cert.cert_pem).unwrap();
    // Our verifier refuses it with the SPID certificate (the one in /metadata).
    let (_, _, spid) = get(&env, "/metadata").await;
    let spid_root = xml::parse(&spid, Limits::default()).unwrap();
    let spid_cert = texts(&spid_root, NS_DS, "X509Certificate")[0].to_owned();
    let spid_pem = format!("-----BEGIN CERTIFICATE-----\n{spid_cert}\n-----END CERTIFICATE-----\n");
    assert!(verified(&md, spid_pem.as_bytes()).is_err());

    // One EntityDescriptor with the CIE entityID and the SPSSODescriptor rules.
    assert!(root.is(NS_MD, "EntityDescriptor"));
    assert_eq!(
        root.attr("entityID"),
        Some("https://istanze.example.gov.it/cie")
    );
    let sp = root.required_child(NS_MD, "SPSSODescriptor").unwrap();
    assert_eq!(sp.attr("AuthnRequestsSigned"), Some("true"));
    assert_eq!(sp.attr("WantAssertionsSigned"), Some("true"));
    assert_eq!(
        texts(&root, NS_MD, "NameIDFormat"),
        ["urn:oasis:names:tc:SAML:2.0:nameid-format:transient"]
    );
    let slo: Vec<_> = sp
        .children_named(NS_MD, "SingleLogoutService")
        .filter_map(|s| s.attr("Binding"))
        .collect();
    assert!(slo.contains(&"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"));
    let acs = sp
        .required_child(NS_MD, "AssertionConsumerService")
        .unwrap();
    assert_eq!(
        acs.attr("Location"),
        Some(format!("{}/acs", env.gw).as_str())
    );
    let requested: Vec<_> = root
        .descendants()
        .into_iter()
        .filter(|e| e.is(NS_MD, "RequestedAttribute"))
        .filter_map(|e| e.attr("Name"))
        .collect();
    assert_eq!(
        requested,
        ["name", "familyName", "dateOfBirth", "fiscalNumber"]
    );

    // The contacts: administrative (Public, IPA, Belfiore, Company = OrganizationName)
    // and the partner's technical one (Private, VAT, fiscal code, NACE2).
    let contacts: Vec<_> = root.children_named(NS_MD, "ContactPerson").collect();
    let types: Vec<_> = contacts
        .iter()
        .filter_map(|c| c.attr("contactType"))
        .collect();
    assert_eq!(types, ["administrative", "technical"]);
    assert_eq!(
        texts(&root, NS_MD, "Company"),
        [
            texts(&root, NS_MD, "OrganizationName")[0],
            "Partner Tecnologico S.r.l."
        ]
    );
    fn ext<'a>(c: &'a Element, name: &str) -> Vec<&'a str> {
        texts(c, NS_CIE, name)
    }
    assert_eq!(ext(contacts[0], "Public").len(), 1);
    assert_eq!(ext(contacts[0], "IPACode"), ["m_pi"]);
    assert_eq!(ext(contacts[0], "IPACategory"), ["C10"]);
    assert_eq!(ext(contacts[0], "Municipality"), ["H501"]);
    assert_eq!(ext(contacts[0], "Province"), ["RM"]);
    assert_eq!(ext(contacts[0], "Country"), ["IT"]);
    assert_eq!(ext(contacts[1], "Private").len(), 1);
    assert_eq!(ext(contacts[1], "VATNumber"), ["IT12345678901"]);
    assert_eq!(ext(contacts[1], "NACE2Code"), ["62.01.00"]);
    assert_eq!(ext(contacts[1], "Municipality"), ["F205"]);
    assert_eq!(
        texts(&root, NS_MD, "EmailAddress"),
        ["cie@example.gov.it", "cie@partner.example.it"]
    );
}

#[tokio::test]
async fn cie_metadata_defaults_to_the_spid_identity_and_is_absent_when_off() {
    let env = start(format!("{CIE}{ADMIN}")).await;
    let (status, _, md) = get(&env, "/metadata/cie").await;
    assert_eq!(status, 200);
    let (_, _, spid) = get(&env, "/metadata").await;
    let spid_root = xml::parse(&spid, Limits::default()).unwrap();
    let cert = texts(&spid_root, NS_DS, "X509Certificate")[0].to_owned();
    let pem = format!("-----BEGIN CERTIFICATE-----\n{cert}\n-----END CERTIFICATE-----\n");
    let root = verified(&md, pem.as_bytes()).unwrap();
    assert_eq!(root.attr("entityID"), spid_root.attr("entityID"));
    assert_eq!(root.children_named(NS_MD, "ContactPerson").count(), 1);

    let off = start(String::new()).await;
    let (status, _, page) = get(&off, "/metadata/cie").await;
    assert_eq!(status, 404, "{page}");
}

#[tokio::test]
async fn spid_metadata_with_eidas_on_has_the_ficep_sets_99_and_100() {
    let env = start("[sp.eidas]\nenabled = true\n".to_owned()).await;
    let (status, _, md) = get(&env, "/metadata").await;
    assert_eq!(status, 200);
    let cert = {
        let root = xml::parse(&md, Limits::default()).unwrap();
        texts(&root, NS_DS, "X509Certificate")[0].to_owned()
    };
    let pem = format!("-----BEGIN CERTIFICATE-----\n{cert}\n-----END CERTIFICATE-----\n");
    let root = verified(&md, pem.as_bytes()).unwrap();
    let sp = root.required_child(NS_MD, "SPSSODescriptor").unwrap();
    let service = |index: &str| {
        let s = sp
            .children_named(NS_MD, "AttributeConsumingService")
            .find(|s| s.attr("index") == Some(index))
            .unwrap_or_else(|| panic!("AttributeConsumingService {index}"));
        let name = texts(s, NS_MD, "ServiceName")[0].to_owned();
        let attrs: Vec<String> = s
            .children_named(NS_MD, "RequestedAttribute")
            .filter_map(|r| r.attr("Name").map(str::to_owned))
            .collect();
        (name, attrs)
    };
    let (name, attrs) = service("99");
    assert_eq!(name, "eIDAS Natural Person Minimum Attribute Set");
    assert_eq!(attrs, ["spidCode", "name", "familyName", "dateOfBirth"]);
    let (name, attrs) = service("100");
    assert_eq!(name, "eIDAS Natural Person Full Attribute Set");
    assert_eq!(
        attrs,
        [
            "spidCode",
            "name",
            "familyName",
            "dateOfBirth",
            "placeOfBirth",
            "address",
            "gender"
        ]
    );
    assert!(service("0").1.contains(&"fiscalNumber".to_owned()));

    // Off by default.
    let off = start(String::new()).await;
    let (_, _, md) = get(&off, "/metadata").await;
    assert!(!md.contains("eIDAS Natural Person"));
}

#[tokio::test]
async fn the_cli_prints_both_metadata_and_makes_a_cie_certificate() {
    let env = start(format!("{CIE}{ADMIN}")).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_polis-gateway"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let config = env.config_path.to_str().unwrap();
    let spid = run(&["metadata", "--config", config]);
    assert!(spid.contains("<spid:IPACode>m_pi</spid:IPACode>"));
    assert!(!spid.contains("xmlns:cie="));
    let cie = run(&["metadata", "--profile", "cie", "--config", config]);
    let spid_root = xml::parse(spid.trim_end(), Limits::default()).unwrap();
    let cert = texts(&spid_root, NS_DS, "X509Certificate")[0].to_owned();
    let pem = format!("-----BEGIN CERTIFICATE-----\n{cert}\n-----END CERTIFICATE-----\n");
    let root = verified(cie.trim_end(), pem.as_bytes()).unwrap();
    assert_eq!(texts(&root, NS_CIE, "Municipality"), ["H501"]);

    let dir = tempfile::tempdir().unwrap();
    let (key, crt) = (dir.path().join("cie.key"), dir.path().join("cie.crt"));
    run(&[
        "keygen",
        "--profile",
        "cie",
        "--common-name",
        "MIM",
        "--organization-name",
        "Ministero dell'Istruzione e del Merito",
        "--entity-id",
        "https://istanze.example.gov.it/cie",
        "--organization-identifier",
        "PA:IT-m_pi",
        "--locality",
        "Roma",
        "--key-bits",
        "2048",
        "--days",
        "30",
        "--out-key",
        key.to_str().unwrap(),
        "--out-cert",
        crt.to_str().unwrap(),
    ]);
    let cert = openssl::x509::X509::from_pem(&std::fs::read(&crt).unwrap()).unwrap();
    keygen::check_cie_certificate(&cert).unwrap();
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(!text.contains("1.3.76.16"), "no AgID policy: {text}");
    assert!(text.contains("2.5.4.83") || text.contains("uri"), "{text}");
}
