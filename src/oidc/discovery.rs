//! Discovery: the OpenID Provider metadata (`/.well-known/openid-configuration`) and
//! the published keys (`/oidc/jwks`: the keys live at the clock's now).

use jsonwebtoken::jwk::JwkSet;

use super::authorize::ACR_CP;
use super::claims::SCOPES;
use super::provider::Provider;
use crate::saml::Level;

impl Provider {
    /// The discovery document.
    pub fn discovery(&self) -> serde_json::Value {
        let iss = &self.settings.issuer;
        let mut acr: Vec<&str> = [Level::L1, Level::L2, Level::L3]
            .into_iter()
            .map(Level::uri)
            .collect();
        acr.push(ACR_CP);
        serde_json::json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oidc/authorize"),
            "token_endpoint": format!("{iss}/oidc/token"),
            "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
            "jwks_uri": format!("{iss}/oidc/jwks"),
            "introspection_endpoint": format!("{iss}/oidc/introspect"),
            "revocation_endpoint": format!("{iss}/oidc/revoke"),
            "end_session_endpoint": format!("{iss}/oidc/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": SCOPES,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp", "given_name", "family_name", "name", "birthdate", "preferred_username", "email", "email_verified", "fiscal_number", "eidas_person_identifier", "idp_scheme", "username", "enablement_state", "cp_time", "spid_auth_time"],
            "acr_values_supported": acr,
            "prompt_values_supported": ["login"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        })
    }

    /// The JWKS: every key live now.
    pub fn jwks(&self) -> JwkSet {
        self.keys.jwks(self.now())
    }
}
