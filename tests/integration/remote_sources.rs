//! `[[federation.remote]]` sources over real HTTP (issue 10): a FICEP-like signed
//! EntityDescriptor verified against its pinned signer, a CIE-like unsigned one whose
//! IdP signing certificates are trusted only if pinned; failures keep the last good copy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use polis_gateway::clock::ManualClock;
use polis_gateway::federation::{
    self, Federation, RemoteAnchor, RemoteSettings, TrustAs, USER_AGENT,
};
use polis_gateway::saml::idp::build_idp_metadata;
use polis_gateway::saml::{IdpProfile, SigningKey, TrustedCert};

use crate::support::gateway::idp_key;

/// Serves whatever `body` holds at `/md`, recording each User-Agent.
struct Server {
    url: url::Url,
    body: Arc<Mutex<String>>,
    agents: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            url::Url::parse(&format!("http://{}/md", listener.local_addr().unwrap())).unwrap();
        let body = Arc::new(Mutex::new(String::new()));
        let agents = Arc::new(Mutex::new(Vec::new()));
        let (b, a) = (body.clone(), agents.clone());
        let router = axum::Router::new().route(
            "/md",
            axum::routing::get(move |h: axum::http::HeaderMap| {
                let (b, a) = (b.clone(), a.clone());
                async move {
                    let ua = h.get("user-agent").and_then(|v| v.to_str().ok());
                    a.lock().unwrap().push(ua.unwrap_or_default().to_owned());
                    b.lock().unwrap().clone()
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Server {
            url,
            body,
            agents,
            task,
        }
    }

    fn serve(&self, xml: &str) {
        *self.body.lock().unwrap() = xml.to_owned();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn metadata(entity_id: &str, key: &SigningKey) -> String {
    build_idp_metadata(
        entity_id,
        &format!("{entity_id}/sso"),
        &format!("{entity_id}/slo"),
        "Remote test IdP",
        key,
    )
    .unwrap()
}

/// `md` with a second signing KeyDescriptor carrying `extra`'s certificate.
fn with_extra_cert(md: &str, extra: &SigningKey) -> String {
    let head = r#"<md:KeyDescriptor use="signing">"#;
    md.replacen(
        head,
        &format!(
            r#"{head}<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>{head}"#,
            extra.cert_base64()
        ),
        1,
    )
}

fn source(url: &url::Url, profile: IdpProfile, anchor: RemoteAnchor) -> RemoteSettings {
    RemoteSettings {
        url: url.clone(),
        trust: TrustAs {
            profile,
            attribute_index: None,
            test: true,
        },
        anchor,
        refresh_every: Duration::from_secs(3600),
        cache_file: None,
    }
}

fn federation() -> Federation {
    Federation::new(true, ManualClock::at(chrono::Utc::now()))
}

#[tokio::test]
async fn a_signed_source_verifies_against_its_pin_and_keeps_the_last_good_copy() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ficep_key, _, ficep_pem) = idp_key("FICEP metadata signer");
    let pin = dir.path().join("ficep.pem");
    std::fs::write(&pin, &ficep_pem).unwrap();
    let mut src = source(&server.url, IdpProfile::Ficep, RemoteAnchor::SignedBy(pin));
    src.cache_file = Some(dir.path().join("ficep-cache.xml"));
    let fed = federation();
    let client = federation::metadata_client().unwrap();
    let id = format!(
        "{}/spproxy/idpit",
        server.url.origin().ascii_serialization()
    );
    let good = metadata(&id, &ficep_key);
    server.serve(&good);
    let update = federation::refresh_remote(&fed, &src, &client)
        .await
        .unwrap();
    assert_eq!(update.added, vec![id.clone()]);
    let idp = fed.get(&id).unwrap();
    assert_eq!(idp.profile, IdpProfile::Ficep);
    assert_eq!(idp.attribute_index(0), 99);
    assert_eq!(
        std::fs::read_to_string(src.cache_file.as_ref().unwrap()).unwrap(),
        good
    );
    assert_eq!(server.agents.lock().unwrap()[0], USER_AGENT);

    // Signed by another key, or tampered: refused; the last good copy and cache stay.
    let (other, _, _) = idp_key("not the pin");
    let tampered = good.replace("/sso\"", "/evil\"");
    for bad in [metadata(&id, &other), tampered] {
        server.serve(&bad);
        assert!(
            federation::refresh_remote(&fed, &src, &client)
                .await
                .is_err()
        );
        assert!(fed.get(&id).is_some());
        assert_eq!(
            std::fs::read_to_string(src.cache_file.as_ref().unwrap()).unwrap(),
            good
        );
    }
    // The cache loads at start.
    let fresh = federation();
    assert_eq!(
        federation::load_remote_cache(&fresh, &src, chrono::Utc::now()).unwrap(),
        1
    );

    // A refresh that no longer lists the IdP drops it.
    let replaced = format!("{id}-new");
    server.serve(&metadata(&replaced, &ficep_key));
    let update = federation::refresh_remote(&fed, &src, &client)
        .await
        .unwrap();
    assert_eq!(update.removed, vec![id.clone()]);
    assert!(fed.get(&id).is_none());
    assert!(fed.get(&replaced).is_some());
}

#[tokio::test]
async fn an_unsigned_source_trusts_only_pinned_idp_certificates() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cie_key, _, cie_pem) = idp_key("CIE IdP");
    let (rollover, _, _) = idp_key("CIE IdP, unpinned");
    let pin = dir.path().join("cie.pem");
    std::fs::write(&pin, &cie_pem).unwrap();
    let src = source(
        &server.url,
        IdpProfile::Cie,
        RemoteAnchor::PinnedIdpCerts(vec![pin]),
    );
    let fed = federation();
    let client = federation::metadata_client().unwrap();
    let id = format!(
        "{}/idp/profile/SAML2/POST/SSO",
        server.url.origin().ascii_serialization()
    );

    // The pinned certificate and an unpinned extra one: only the pinned one is trusted.
    server.serve(&with_extra_cert(&metadata(&id, &cie_key), &rollover));
    federation::refresh_remote(&fed, &src, &client)
        .await
        .unwrap();
    let idp = fed.get(&id).unwrap();
    assert_eq!(idp.profile, IdpProfile::Cie);
    let pinned = TrustedCert::from_pem(&cie_pem).unwrap();
    assert_eq!(idp.descriptor.signing_certs, vec![pinned.clone()]);

    // Only an unpinned certificate: the IdP is refused, the last good copy kept.
    server.serve(&metadata(&id, &rollover));
    let err = federation::refresh_remote(&fed, &src, &client)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pinned"), "{err}");
    assert_eq!(fed.get(&id).unwrap().descriptor.signing_certs, vec![pinned]);

    // With no pinned certificate at all, nothing from this source is trusted.
    let fresh = federation();
    assert!(
        federation::refresh_remote(&fresh, &src, &client)
            .await
            .is_err()
    );
    assert!(fresh.list().is_empty());
}

/// `md` re-signed by `key` the way FICEP signs its production metadata: the enveloped
/// root signature with `Reference URI=""` (the whole document), not `#<ID>`.
fn signed_whole_document(md: &str, key: &SigningKey) -> String {
    let start = md.find("<ds:Signature").unwrap();
    let end = md.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let template = polis_gateway::saml::sign::signature_template("_x", key.cert_base64())
        .replace(r##"URI="#_x""##, r#"URI="""#);
    key.sign_enveloped(&format!("{}{template}{}", &md[..start], &md[end..]))
        .unwrap()
}

#[tokio::test]
async fn a_signed_source_over_the_whole_document_verifies_against_its_pin() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ficep_key, _, ficep_pem) = idp_key("FICEP metadata signer, URI empty");
    let pin = dir.path().join("ficep.pem");
    std::fs::write(&pin, &ficep_pem).unwrap();
    let src = source(&server.url, IdpProfile::Ficep, RemoteAnchor::SignedBy(pin));
    let fed = federation();
    let client = federation::metadata_client().unwrap();
    let id = format!(
        "{}/spproxy/idpit",
        server.url.origin().ascii_serialization()
    );
    let good = signed_whole_document(&metadata(&id, &ficep_key), &ficep_key);
    assert!(good.contains(r#"<ds:Reference URI="">"#));
    server.serve(&good);
    let update = federation::refresh_remote(&fed, &src, &client)
        .await
        .unwrap();
    assert_eq!(update.added, vec![id.clone()]);
    let idp = fed.get(&id).unwrap();
    assert_eq!(idp.profile, IdpProfile::Ficep);
    assert_eq!(
        idp.descriptor.sso_post.as_deref(),
        Some(format!("{id}/sso").as_str())
    );

    // Tampered, or signed so by another key: refused, the verified copy stays.
    let (other, _, _) = idp_key("not the pin");
    let tampered = good.replace("/sso\"", "/evil\"");
    let foreign = signed_whole_document(&metadata(&id, &other), &other);
    for bad in [tampered, foreign] {
        server.serve(&bad);
        let err = federation::refresh_remote(&fed, &src, &client)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        assert_eq!(
            fed.get(&id).unwrap().descriptor.sso_post.as_deref(),
            Some(format!("{id}/sso").as_str())
        );
    }
}
