//! One identity per Response: the attributes of a verified Assertion, each exactly
//! once with exactly one bounded value.
//!
//! A person's identity must not depend on which of two values a reader picks, so
//! anything ambiguous is refused, never resolved: a second `AttributeStatement`, an
//! attribute named twice, an attribute with more than one `AttributeValue`. Every
//! value is bounded before anything stores it: a length per attribute (refused, not
//! cut), no control characters (CR/LF included), and the e-mail attributes must be
//! addresses.

use std::collections::BTreeMap;

use super::error::SamlError;
use super::xml::Element;
use super::{NS_SAML, xml};

/// Longest NameID or SessionIndex accepted (SAML IDs are short; SPID uses ≤ 64).
pub const MAX_NAME_ID: usize = 256;
/// Longest entityID accepted (NameQualifier).
pub const MAX_ENTITY_ID: usize = 1024;
/// Most attributes in one Assertion (SPID defines 23).
const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute Name.
const MAX_ATTRIBUTE_NAME: usize = 128;
/// Bound of an attribute not listed in [`max_len`].
const DEFAULT_MAX_LEN: usize = 256;

/// The longest value accepted for a SPID attribute.
fn max_len(name: &str) -> usize {
    match name {
        "fiscalNumber" | "ivaCode" | "companyFiscalNumber" => 32,
        "spidCode" | "mobilePhone" => 64,
        "dateOfBirth" | "expirationDate" => 10,
        "gender" => 8,
        "countyOfBirth" | "domicileProvince" | "domicileNation" | "domicilePostalCode" => 64,
        "placeOfBirth" => 128,
        "name" | "familyName" | "domicileMunicipality" => 128,
        // RFC 5321: a path is at most 256 octets, an address 254.
        "email" | "digitalAddress" => 254,
        "registeredOffice" | "address" | "domicileStreetAddress" | "companyName" | "idCard" => 512,
        _ => DEFAULT_MAX_LEN,
    }
}

fn refused(reason: String) -> SamlError {
    SamlError::Attribute(reason)
}

/// Refuses an empty-after-trim value, one over `max` characters, or one with control
/// characters.
pub fn check_bounded(field: &str, value: &str, max: usize) -> Result<(), SamlError> {
    if value.chars().count() > max {
        return Err(refused(format!("{field} longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(refused(format!("{field} contains control characters")));
    }
    Ok(())
}

/// An e-mail address: `local@domain`, the local part of atext and dots, the domain of
/// LDH labels with at least one dot (what a mail server will accept as a recipient).
pub fn is_email_address(v: &str) -> bool {
    let Some((local, domain)) = v.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok
}

/// The attributes of a verified Assertion, by name, each with its single value.
pub fn read(assertion: &Element) -> Result<BTreeMap<String, Vec<String>>, SamlError> {
    let mut statements = assertion.children_named(NS_SAML, "AttributeStatement");
    let Some(statement) = statements.next() else {
        return Ok(BTreeMap::new());
    };
    if statements.next().is_some() {
        return Err(refused("more than one AttributeStatement".into()));
    }
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for attr in statement.children_named(NS_SAML, "Attribute") {
        let name = attr.attr("Name").unwrap_or_default().trim();
        if name.is_empty() {
            return Err(SamlError::Missing("Name"));
        }
        check_bounded("Attribute Name", name, MAX_ATTRIBUTE_NAME)?;
        let mut values = attr.children_named(NS_SAML, "AttributeValue");
        let value = values
            .next()
            .map(xml::Element::trimmed_text)
            .ok_or_else(|| SamlError::invalid("Attribute", format!("{name} has no value")))?;
        if values.next().is_some() {
            return Err(refused(format!("{name} has more than one value")));
        }
        check_bounded(name, value, max_len(name))?;
        if matches!(name, "email" | "digitalAddress") && !is_email_address(value) {
            return Err(refused(format!("{name} is not an e-mail address")));
        }
        if attributes.contains_key(name) {
            return Err(refused(format!("{name} is present twice")));
        }
        if attributes.len() >= MAX_ATTRIBUTES {
            return Err(refused("too many attributes".into()));
        }
        attributes.insert(name.to_owned(), vec![value.to_owned()]);
    }
    if attributes.is_empty() {
        return Err(SamlError::Missing("Attribute"));
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(statements: &str) -> Element {
        let xml = format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">{statements}</saml:Assertion>"#
        );
        xml::parse(&xml, xml::Limits::default()).unwrap()
    }

    fn attr(name: &str, values: &[&str]) -> String {
        let v: String = values
            .iter()
            .map(|v| format!("<saml:AttributeValue>{v}</saml:AttributeValue>"))
            .collect();
        format!(r#"<saml:Attribute Name="{name}">{v}</saml:Attribute>"#)
    }

    fn statement(attrs: &[String]) -> String {
        format!(
            "<saml:AttributeStatement>{}</saml:AttributeStatement>",
            attrs.concat()
        )
    }

    #[test]
    fn reads_one_value_per_attribute() {
        let a = assertion(&statement(&[
            attr("fiscalNumber", &["TINIT-RSSMRA80A01H501U"]),
            attr("email", &[" mario.rossi@example.it "]),
        ]));
        let m = read(&a).unwrap();
        assert_eq!(m["fiscalNumber"], vec!["TINIT-RSSMRA80A01H501U"]);
        assert_eq!(m["email"], vec!["mario.rossi@example.it"]);
    }

    #[test]
    fn refuses_every_ambiguity() {
        let two_values = assertion(&statement(&[attr("fiscalNumber", &["TINIT-A", "TINIT-B"])]));
        assert!(matches!(read(&two_values), Err(SamlError::Attribute(_))));
        let twice = assertion(&statement(&[
            attr("fiscalNumber", &["TINIT-A"]),
            attr("fiscalNumber", &["TINIT-B"]),
        ]));
        assert!(matches!(read(&twice), Err(SamlError::Attribute(_))));
        let same_twice = assertion(&statement(&[
            attr("name", &["Mario"]),
            attr("name", &["Mario"]),
        ]));
        assert!(matches!(read(&same_twice), Err(SamlError::Attribute(_))));
        let two_statements = format!(
            "{}{}",
            statement(&[attr("fiscalNumber", &["TINIT-A"])]),
            statement(&[attr("name", &["Mario"])])
        );
        assert!(matches!(
            read(&assertion(&two_statements)),
            Err(SamlError::Attribute(_))
        ));
    }

    #[test]
    fn bounds_every_value() {
        let long_name = "M".repeat(129);
        let a = assertion(&statement(&[attr("name", &[&long_name])]));
        assert!(matches!(read(&a), Err(SamlError::Attribute(_))));
        let ok_name = "M".repeat(128);
        assert!(read(&assertion(&statement(&[attr("name", &[&ok_name])]))).is_ok());
        let crlf = assertion(&statement(&[attr(
            "email",
            &["a@b.it&#13;&#10;Bcc: x@y.it"],
        )]));
        assert!(matches!(read(&crlf), Err(SamlError::Attribute(_))));
        let tab = assertion(&statement(&[attr("familyName", &["Ro&#9;ssi"])]));
        assert!(matches!(read(&tab), Err(SamlError::Attribute(_))));
        let not_mail = assertion(&statement(&[attr("email", &["not an address"])]));
        assert!(matches!(read(&not_mail), Err(SamlError::Attribute(_))));
        let unknown = "x".repeat(DEFAULT_MAX_LEN + 1);
        let a = assertion(&statement(&[attr("somethingElse", &[&unknown])]));
        assert!(matches!(read(&a), Err(SamlError::Attribute(_))));
    }

    #[test]
    fn email_addresses() {
        for ok in [
            "a@b.it",
            "mario.rossi+x@mail.example.com",
            "spid.tech@agid.gov.it",
        ] {
            assert!(is_email_address(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.it", "a@.it", "a@b..it", "a b@c.it", "a@-b.it", ".a@b.it",
            "a@b.it\n",
        ] {
            assert!(!is_email_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn no_statement_is_no_attributes_but_an_empty_one_is_refused() {
        assert!(read(&assertion("")).unwrap().is_empty());
        assert!(matches!(
            read(&assertion("<saml:AttributeStatement/>")),
            Err(SamlError::Missing(_))
        ));
    }
}
