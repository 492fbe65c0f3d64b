//! SPID, CIE and eIDAS through one gateway, over real HTTP with the mock federation
//! (the mock SPID IdP, the mock CIE IdP under `/cie`, the mock FICEP node under
//! `/ficep`): one account per person, one `sub`, the scheme in the tokens; the CIE
//! request and Response shape; the CIE *Simple Logout*; an eIDAS person without a
//! codice fiscale through the abilitazione to tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use polis_gateway::accounts::EnablementState;
use polis_gateway::identity::Scheme;
use polis_gateway::saml::{binding, xml};
use polis_gateway::state::MemoryStore;
use serde_json::Value;

use crate::support::gateway::{Database, Env, EnvOptions, pairs, pkce};
use crate::support::postgres::PostgresServer;
use crate::support::{eventually, join_all};

const MARIO: &str = "RSSMRA80A01H501U";
const GIULIA: &str = "BNCGLI85M52F205H";
/// María García López at the mock FICEP node.
const MARIA_EIDAS: &str = "ES/IT/02635542Y";
const CP: &str = "Scuola2026x";

fn postgres_server() -> &'static PostgresServer {
    PostgresServer::shared()
}

fn postgres() -> Database {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    Database::Postgres(postgres_server().create_database(&format!("schemes_{n}")))
}

async fn start(database: Database, extra_toml: &str) -> Env {
    Env::start_with(
        Arc::new(MemoryStore::new()),
        EnvOptions {
            oidc: true,
            database,
            extra_toml: extra_toml.to_owned(),
            ..EnvOptions::default()
        },
    )
    .await
}

/// The claims of a JWT, unverified (the OIDC tests verify signatures; here the claims
/// are what is looked at).
fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A fresh browser through the whole authorization, logging in at `idp` as `user`;
/// returns the ID token's claims.
async fn id_token_via(env: &Env, idp: &str, user: &str) -> Value {
    let browser = env.client();
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let hop = env
        .oidc_browse_at(&browser, &env.authorize_url(&pairs(&params)), idp, user, 2)
        .await;
    assert_eq!(hop.logins.len(), 1, "one login at {idp}: {}", hop.body);
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    claims(tokens["id_token"].as_str().unwrap())
}

/// The text of a one-page PDF (lopdf), whitespace collapsed.
fn pdf_text(bytes: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(bytes).unwrap();
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc.extract_text(&pages).unwrap();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The SAMLRequest of a Redirect-binding login link, inflated.
async fn authn_request_to(env: &Env, idp: &str) -> xml::Element {
    let pending = env.start_login_at(&env.client(), idp, 1).await;
    let query = pending.location.split_once('?').unwrap().1;
    let params = binding::parse_query(query).unwrap();
    let request = &params
        .iter()
        .find(|p| p.name == "SAMLRequest")
        .unwrap()
        .value;
    let text = binding::inflate_base64(request, 1 << 20).unwrap();
    xml::parse(&text, xml::Limits::default()).unwrap()
}

// ---------------------------------------------------------------------------------------
// One person, two schemes
// ---------------------------------------------------------------------------------------

async fn spid_then_cie(database: Database) {
    let env = start(database, "").await;
    let browser = env.client();
    env.enable_account(&browser, MARIO, CP).await;
    let spid = id_token_via(&env, &env.idp, MARIO).await;
    assert_eq!(spid["idp_scheme"], "spid");
    assert_eq!(spid["amr"], serde_json::json!(["spid"]));

    // The same person with her CIE: no second abilitazione, the same account and sub.
    let cie = id_token_via(&env, &env.cie_idp, MARIO).await;
    assert_eq!(cie["sub"], spid["sub"]);
    assert_eq!(cie["idp_scheme"], "cie");
    assert_eq!(cie["amr"], serde_json::json!(["cie"]));
    assert_eq!(cie["fiscal_number"], MARIO);
    assert_eq!(cie["enablement_state"], "enabled");
    assert!(cie.get("eidas_person_identifier").is_none(), "{cie}");

    let account = env.account(MARIO).await.unwrap();
    assert_eq!(account.id.to_string(), cie["sub"].as_str().unwrap());
    let mut schemes: Vec<Scheme> = account.identities.iter().map(|i| i.scheme).collect();
    schemes.sort_by_key(|s| s.as_str());
    assert_eq!(schemes, [Scheme::Cie, Scheme::Spid]);
    assert!(account.identities.iter().all(|i| i.subject == MARIO));
    assert_eq!(account.enablement_state, EnablementState::Enabled);
}

#[tokio::test]
async fn spid_then_cie_is_one_account_and_one_sub_on_sqlite() {
    spid_then_cie(Database::Sqlite).await;
}

#[tokio::test]
async fn spid_then_cie_is_one_account_and_one_sub_on_postgres() {
    spid_then_cie(postgres()).await;
}

/// Ten browsers log in for the first time at once, half with SPID and half with CIE,
/// as the same person: one account, both identities linked to it.
async fn racing_spid_and_cie(database: Database) {
    let env = Arc::new(start(database, "").await);
    let logins = (0..10).map(|n| {
        let env = env.clone();
        async move {
            let idp = if n % 2 == 0 { &env.idp } else { &env.cie_idp };
            let r = env.login_at(&env.client(), idp, GIULIA).await;
            assert_eq!(r.status(), 303, "login {n}: {}", r.text().await.unwrap());
        }
    });
    join_all(logins).await;
    let account = env.account(GIULIA).await.unwrap();
    let by_cie = env.account_by_identity(Scheme::Cie, GIULIA).await.unwrap();
    let by_spid = env.account_by_identity(Scheme::Spid, GIULIA).await.unwrap();
    assert_eq!(by_cie.id, account.id);
    assert_eq!(by_spid.id, account.id);
    assert_eq!(account.identities.len(), 2, "{:?}", account.identities);
}

#[tokio::test]
async fn racing_first_logins_by_spid_and_cie_make_one_account_on_sqlite() {
    racing_spid_and_cie(Database::Sqlite).await;
}

#[tokio::test]
async fn racing_first_logins_by_spid_and_cie_make_one_account_on_postgres() {
    racing_spid_and_cie(postgres()).await;
}

// ---------------------------------------------------------------------------------------
// The CIE profile
// ---------------------------------------------------------------------------------------

/// `[cie]` with its own entityID (the SP key and certificate).
const OWN_CIE_IDENTITY: &str = "\n[cie]\nenabled = true\nentity_id = \"https://cie.polis.example.it/sp\"\npublic = true\nipa_code = \"m_pi\"\nmunicipality = \"H501\"\n[cie.administrative]\nemail = \"istanze.online@example.gov.it\"\nphone = \"+390658491\"\n";

#[tokio::test]
async fn a_cie_request_forces_authentication_and_carries_the_cie_identity() {
    let env = start(Database::Sqlite, OWN_CIE_IDENTITY).await;
    let cie = authn_request_to(&env, &env.cie_idp).await;
    assert_eq!(
        cie.attr("ForceAuthn"),
        Some("true"),
        "ForceAuthn even at L1"
    );
    assert_eq!(cie.attr("AttributeConsumingServiceIndex"), Some("0"));
    assert_eq!(
        cie.attr("Destination").map(str::to_owned),
        Some(format!("{}/sso", env.cie_idp)),
        "Destination = the SSO Location of the binding used"
    );
    let issuer = cie
        .required_child(polis_gateway::saml::NS_SAML, "Issuer")
        .unwrap();
    assert_eq!(issuer.trimmed_text(), "https://cie.polis.example.it/sp");
    // SPID requests keep the SPID identity and no ForceAuthn at L1.
    let spid = authn_request_to(&env, &env.idp).await;
    assert_eq!(spid.attr("ForceAuthn"), None);
    let issuer = spid
        .required_child(polis_gateway::saml::NS_SAML, "Issuer")
        .unwrap();
    assert_eq!(issuer.trimmed_text(), env.gw);

    // The mock CIE IdP answers in the CIE shape (Issuers without Format, no spidCode)
    // for the CIE audience: the login completes.
    let browser = env.client();
    let r = env.login_at(&browser, &env.cie_idp, MARIO).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let home = env.home(&browser).await;
    assert!(
        home.contains("accesso con CIE"),
        "the scheme on the home page:
{home}"
    );
    let account = env.account(MARIO).await.unwrap();
    assert_eq!(account.spid_code, None, "CIE releases no spidCode");
    assert_eq!(account.identities[0].scheme, Scheme::Cie);
}

#[tokio::test]
async fn cie_error_codes_read_as_the_cie_manual_says() {
    let env = start(Database::Sqlite, "").await;
    let c = env.client();
    for (code, text) in [
        ("21", "Tempo scaduto"),
        ("22", "negato il consenso"),
        ("23", "cie.cittadini@interno.it"),
        ("25", "annullato"),
    ] {
        let resp = c
            .get(format!(
                "{}/login?idp={}&level=2&binding=redirect",
                env.gw,
                binding::encode_component(&env.cie_idp)
            ))
            .send()
            .await
            .unwrap();
        let answer = env.idp_answer_from(&c, resp, 2, MARIO, code).await;
        let r = env
            .post_acs(&c, &answer.saml_response, &answer.relay_state)
            .await;
        assert_eq!(r.status(), 401, "nr{code}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains(text),
            "nr{code}: {text:?} missing from\n{page}"
        );
    }
    assert!(
        env.account(MARIO).await.is_none(),
        "no account from refusals"
    );
}

#[tokio::test]
async fn cie_logout_ends_the_session_and_its_tokens_without_a_logout_response() {
    let env = start(Database::Sqlite, "").await;
    let browser = env.client();
    env.enable_account_at(&browser, &env.cie_idp, MARIO, CP)
        .await;
    let (verifier, challenge) = pkce();
    let params = env.authorize_params(&challenge);
    let hop = env
        .oidc_browse_at(
            &browser,
            &env.authorize_url(&pairs(&params)),
            &env.cie_idp,
            MARIO,
            2,
        )
        .await;
    let code = env.code_of(&hop, &pairs(&params));
    let tokens = env.exchange(&code, &verifier).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(env.introspect(&access).await["active"], true);

    // «Esci»: the session closes here, the browser goes to the IdP's logout page with a
    // plain GET (no SAMLRequest), and nothing waits for an answer.
    let r = env.post_form(&browser, "/logout", &[]).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/slo", env.cie_idp));
    let idp_page = browser.get(&location).send().await.unwrap();
    assert_eq!(idp_page.status(), 200);
    assert!(
        idp_page
            .text()
            .await
            .unwrap()
            .contains("Logout effettuato con successo")
    );
    assert_eq!(
        env.introspect(&access).await["active"],
        false,
        "tokens revoked"
    );
    let (status, _) = env.get(&browser, "/area-riservata").await;
    assert_ne!(status, 200, "no session after the CIE logout");
}

// ---------------------------------------------------------------------------------------
// eIDAS
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_eidas_person_is_enabled_and_gets_tokens_with_her_identifier() {
    let env = start(Database::Sqlite, "\n[sp.eidas]\nenabled = true\n").await;
    let browser = env.client();
    env.enable_account_at(&browser, &env.ficep_idp, MARIA_EIDAS, CP)
        .await;
    let account = env
        .account_by_identity(Scheme::Eidas, MARIA_EIDAS)
        .await
        .unwrap();
    assert_eq!(account.fiscal_code, None);
    assert_eq!(account.enablement_state, EnablementState::Enabled);

    let id = id_token_via(&env, &env.ficep_idp, MARIA_EIDAS).await;
    assert_eq!(id["sub"], account.id.to_string());
    assert_eq!(id["idp_scheme"], "eidas");
    assert_eq!(id["eidas_person_identifier"], MARIA_EIDAS);
    assert!(id.get("fiscal_number").is_none(), "{id}");
    assert_eq!(id["family_name"], "García López");

    // The modulo di adesione mailed with the temporary CP names her identifier and
    // the issuing country.
    let mails = eventually(
        std::time::Duration::from_secs(5),
        "the temporary CP message",
        || std::future::ready(Some(env.outbox_messages()).filter(|m| !m.is_empty())),
    )
    .await;
    let text = mails[0].text.clone().unwrap_or_default();
    assert!(
        text.contains("accesso con eIDAS") && text.contains("con eIDAS."),
        "the message names the scheme used:\n{text}"
    );
    let modulo = mails[0]
        .attachments
        .iter()
        .find(|a| a.filename == "modulo-adesione.pdf")
        .expect("the modulo di adesione");
    let text = pdf_text(&modulo.bytes);
    assert!(text.contains(MARIA_EIDAS), "{text}");
    assert!(text.contains("Spagna"), "issuing country: {text}");
}

#[tokio::test]
async fn the_request_asks_an_eidas_person_in_italian_and_english_what_her_node_did_not_say() {
    let env = start(Database::Sqlite, "\n[sp.eidas]\nenabled = true\n").await;
    let browser = env.client();
    let r = env.login_at(&browser, &env.ficep_idp, MARIA_EIDAS).await;
    assert_eq!(r.status(), 303);
    let (status, page) = env.get(&browser, "/abilitazione/richiesta").await;
    assert_eq!(status, 200);
    // The label's markup, up to its end.
    let label = |name: &str| {
        let start = format!("for=\"f-{name}\">");
        page.split_once(&start)
            .and_then(|(_, rest)| rest.split_once("</label>"))
            .map(|(inside, _)| inside.to_owned())
            .unwrap_or_default()
    };
    assert!(
        label("birth_place").starts_with("Luogo di nascita"),
        "{page}"
    );
    assert!(
        label("birth_place").contains("<span lang=\"en\">/ Place of birth"),
        "the English is marked lang=en: {page}"
    );
    assert!(label("sex").contains("Sesso") && label("sex").contains("Sex"));
    assert!(
        label("street").contains("Address"),
        "every label has its English"
    );
    assert!(page.contains("Abilitazione con eIDAS"), "{page}");
    assert!(page.contains("/logout"), "«Esci» from step 1 on");

    // Without them the request is refused, each field with its message.
    let fields = [
        ("email", "maria@posta.example.es"),
        ("mobile", "+34 600 123 456"),
        ("street", "Calle Mayor 1"),
        ("postal_code", "28013"),
        ("municipality", "Madrid"),
        ("nation", "Spagna"),
        ("doc_kind", "Passaporto"),
        ("doc_number", "PAB123456"),
        ("doc_issuer", "Ministerio del Interior"),
        ("doc_issued_on", "2021-03-15"),
        ("doc_expires_on", "2099-03-15"),
    ];
    let r = env
        .post_form(&browser, "/abilitazione/richiesta", &fields)
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"e-birth_place\""), "{page}");
    assert!(page.contains("id=\"e-sex\""), "{page}");
    assert!(page.contains("Please correct the fields"), "{page}");
    let account = env
        .account_by_identity(Scheme::Eidas, MARIA_EIDAS)
        .await
        .unwrap();
    assert_eq!(
        account.enablement_state,
        EnablementState::NotEnabled,
        "nothing written"
    );

    let mut complete = fields.to_vec();
    complete.extend([("birth_place", "Madrid, Spagna"), ("sex", "F")]);
    let r = env
        .post_form(&browser, "/abilitazione/richiesta", &complete)
        .await;
    assert_eq!(r.status(), 303);
    let account = env
        .account_by_identity(Scheme::Eidas, MARIA_EIDAS)
        .await
        .unwrap();
    assert_eq!(account.birth_place.as_deref(), Some("Madrid, Spagna"));
    assert_eq!(account.sex.as_deref(), Some("F"));
    assert!(
        account.birth_date.is_some(),
        "the node's date of birth is kept"
    );

    // Back on step 1 the typed values are there to be corrected.
    let (_, page) = env.get(&browser, "/abilitazione/richiesta").await;
    assert!(page.contains("value=\"Madrid, Spagna\""), "{page}");
    assert!(page.contains("<option value=\"F\" selected>"), "{page}");
}

/// The `<td>` of the row labelled `label` in a page's data table.
fn row_value<'a>(page: &'a str, label: &str) -> &'a str {
    let th = format!("<th scope=\"row\">{label}</th>");
    let start = page
        .find(&th)
        .unwrap_or_else(|| panic!("no row {label}: {page}"))
        + th.len();
    let rest = &page[start..];
    let cell = rest.trim_start().strip_prefix("<td>").unwrap();
    &cell[..cell.find("</td>").unwrap()]
}

#[tokio::test]
async fn the_place_of_birth_is_shown_by_name_and_stored_as_its_code() {
    let env = start(Database::Sqlite, "").await;
    let browser = env.client();
    // CIE's minimum set has no placeOfBirth: the code comes from the codice fiscale.
    env.enable_account_at(&browser, &env.cie_idp, GIULIA, CP)
        .await;
    let giulia = env.account_by_identity(Scheme::Cie, GIULIA).await.unwrap();
    assert_eq!(
        giulia.birth_place.as_deref(),
        Some("F205"),
        "stored as the code"
    );

    for path in ["/", "/area-riservata"] {
        let (status, page) = env.get(&browser, path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(
            row_value(&page, "Luogo di nascita"),
            "Milano (MI)",
            "{path}"
        );
        // F205 is still in the codice fiscale shown above, but nowhere as a value.
        assert!(
            !page.contains(">F205<"),
            "{path} shows no cadastral code: {page}"
        );
    }

    let mails = eventually(
        std::time::Duration::from_secs(5),
        "the temporary CP message",
        || std::future::ready(Some(env.outbox_messages()).filter(|m| !m.is_empty())),
    )
    .await;
    let modulo = mails[0]
        .attachments
        .iter()
        .find(|a| a.filename == "modulo-adesione.pdf")
        .expect("the modulo di adesione");
    let text = pdf_text(&modulo.bytes);
    assert!(text.contains("Luogo di nascita Milano (MI)"), "{text}");
    assert!(!text.contains("nascita F205"), "{text}");
}

#[tokio::test]
async fn spid_and_cie_are_not_asked_what_the_codice_fiscale_says() {
    let env = start(Database::Sqlite, "").await;
    for (idp, user) in [(&env.idp, MARIO), (&env.cie_idp, GIULIA)] {
        let browser = env.client();
        let r = env.login_at(&browser, idp, user).await;
        assert_eq!(r.status(), 303);
        let (status, page) = env.get(&browser, "/abilitazione/richiesta").await;
        assert_eq!(status, 200);
        assert!(!page.contains("name=\"birth_place\""), "{page}");
        assert!(!page.contains("name=\"sex\""), "{page}");
        assert!(!page.contains("lang=\"en\""), "Italian only: {page}");
    }
    let giulia = env.account_by_identity(Scheme::Cie, GIULIA).await.unwrap();
    assert_eq!(
        (giulia.birth_place.as_deref(), giulia.sex.as_deref()),
        (Some("F205"), Some("F")),
        "CIE's minimum set has neither: both from the codice fiscale"
    );
}
