//! Exclusive XML Canonicalization 1.0 without comments
//! (<https://www.w3.org/TR/xml-exc-c14n/>), written over the strict reader's tree
//! ([`super::xml::Element`]) so that the ACS verifies signatures on the very tree it
//! then reads ([`super::verify`]): one parse, and no second view of the bytes.
//!
//! What the tree holds is exactly what the algorithm needs: line ends already read as
//! LF, references resolved, CDATA read as text, attribute values normalised (the
//! reader does it as XML 1.0 §3.3.3 says for CDATA attributes: there is no DTD), no
//! processing instructions and no DOCTYPE (refused), comments dropped (the
//! "without comments" variant; the text around them is concatenated as the
//! canonical form concatenates it). The subset is always an element's whole subtree,
//! less at most one omitted descendant (the enveloped signature), so every element
//! below the apex has its parent in the output.
//!
//! Namespaces: an element renders a declaration for each prefix it *visibly
//! utilises* (its own, its attributes' except `xml`; the default namespace when it has
//! no prefix) and for each prefix of the `InclusiveNamespaces PrefixList` in scope,
//! unless the nearest output ancestor already rendered the same prefix with the same
//! name. An unprefixed element whose parent rendered a non-empty default gets
//! `xmlns=""`. Declarations sort by prefix (the default first), attributes by
//! namespace name then local name, unqualified first.

use super::error::SamlError;
use super::xml::Element;

/// What to canonicalise: an element in its document, less one descendant.
#[derive(Debug, Clone, Copy)]
pub struct Subset<'a> {
    /// The apex's ancestors from the root, then the apex itself (for the namespaces in
    /// scope at the apex; their attributes are not inherited, as exc-c14n says).
    pub path: &'a [&'a Element],
    /// A descendant of the apex left out with its subtree (the enveloped signature).
    pub omit: Option<&'a Element>,
    /// The `InclusiveNamespaces PrefixList`: these prefixes are rendered as inclusive
    /// c14n would, used or not (`None` stands for `#default`).
    pub inclusive: &'a [Option<&'a str>],
}

/// The canonical octets of `subset`. An element whose text segments do not match its
/// children (a tree not built by [`super::xml::parse`]) is refused: nothing is guessed.
pub fn exclusive(subset: &Subset<'_>) -> Result<Vec<u8>, SamlError> {
    let (apex, ancestors) = subset
        .path
        .split_last()
        .ok_or_else(|| SamlError::Structure("nothing to canonicalise".into()))?;
    let mut w = Writer {
        scope: Vec::new(),
        rendered: Vec::new(),
        omit: subset.omit,
        inclusive: subset.inclusive,
        out: Vec::with_capacity(4096),
    };
    for a in ancestors {
        w.declare(a);
    }
    w.element(apex)?;
    Ok(w.out)
}

/// A prefix and the namespace name bound to it (`None`: the default namespace).
type Binding<'a> = (Option<&'a str>, &'a str);

struct Writer<'a> {
    /// Namespace declarations in scope, innermost last.
    scope: Vec<Binding<'a>>,
    /// Declarations rendered by the output ancestors, innermost last.
    rendered: Vec<Binding<'a>>,
    omit: Option<&'a Element>,
    inclusive: &'a [Option<&'a str>],
    out: Vec<u8>,
}

fn lookup<'a>(bindings: &[Binding<'a>], prefix: Option<&str>) -> Option<&'a str> {
    bindings
        .iter()
        .rev()
        .find(|(p, _)| *p == prefix)
        .map(|(_, uri)| *uri)
}

impl<'a> Writer<'a> {
    fn declare(&mut self, e: &'a Element) {
        self.scope.extend(
            e.ns_decls
                .iter()
                .map(|d| (d.prefix.as_deref(), d.uri.as_str())),
        );
    }

    /// The declarations `e` renders, sorted by prefix (the default first).
    fn namespaces(&self, e: &'a Element) -> Vec<Binding<'a>> {
        let mut wanted: Vec<Option<&'a str>> = Vec::with_capacity(2 + self.inclusive.len());
        if e.prefix.as_deref() != Some("xml") {
            wanted.push(e.prefix.as_deref());
        }
        wanted.extend(
            e.attrs
                .iter()
                .filter_map(|a| a.prefix.as_deref())
                .filter(|p| *p != "xml")
                .map(Some),
        );
        wanted.extend(self.inclusive.iter().copied());
        wanted.sort_unstable();
        wanted.dedup();
        wanted
            .into_iter()
            .filter_map(|prefix| {
                let uri = match (lookup(&self.scope, prefix), prefix) {
                    (Some(uri), _) => uri,
                    // No default namespace in scope: the empty one.
                    (None, None) => "",
                    // An inclusive prefix not in scope here: nothing to render.
                    (None, Some(_)) => return None,
                };
                let already = lookup(&self.rendered, prefix);
                let same = match prefix {
                    None => already.unwrap_or("") == uri,
                    Some(_) => already == Some(uri),
                };
                (!same).then_some((prefix, uri))
            })
            .collect()
    }

    fn element(&mut self, e: &'a Element) -> Result<(), SamlError> {
        if e.segments.len() != e.children.len() + 1 {
            return Err(SamlError::Structure(
                "element text out of step with its children".into(),
            ));
        }
        let (scope_mark, rendered_mark) = (self.scope.len(), self.rendered.len());
        self.declare(e);
        let decls = self.namespaces(e);
        self.out.push(b'<');
        self.qname(e.prefix.as_deref(), &e.name);
        for (prefix, uri) in &decls {
            match prefix {
                Some(p) => {
                    self.out.extend_from_slice(b" xmlns:");
                    self.out.extend_from_slice(p.as_bytes());
                }
                None => self.out.extend_from_slice(b" xmlns"),
            }
            self.attr_value(uri);
        }
        self.rendered.extend(decls);
        let mut attrs: Vec<_> = e.attrs.iter().collect();
        attrs.sort_unstable_by(|a, b| {
            (a.ns.as_deref().unwrap_or(""), a.name.as_str())
                .cmp(&(b.ns.as_deref().unwrap_or(""), b.name.as_str()))
        });
        for a in attrs {
            self.out.push(b' ');
            self.qname(a.prefix.as_deref(), &a.name);
            self.attr_value(&a.value);
        }
        self.out.push(b'>');
        for (segment, child) in e.segments.iter().zip(&e.children) {
            self.text(segment);
            if !self.omit.is_some_and(|o| std::ptr::eq(o, child)) {
                self.element(child)?;
            }
        }
        if let Some(last) = e.segments.last() {
            self.text(last);
        }
        self.out.extend_from_slice(b"</");
        self.qname(e.prefix.as_deref(), &e.name);
        self.out.push(b'>');
        self.scope.truncate(scope_mark);
        self.rendered.truncate(rendered_mark);
        Ok(())
    }

    fn qname(&mut self, prefix: Option<&str>, local: &str) {
        if let Some(p) = prefix {
            self.out.extend_from_slice(p.as_bytes());
            self.out.push(b':');
        }
        self.out.extend_from_slice(local.as_bytes());
    }

    /// `="value"` with the attribute escapes of C14N 1.0 §2.3.
    fn attr_value(&mut self, value: &str) {
        self.out.extend_from_slice(b"=\"");
        for b in value.bytes() {
            match b {
                b'&' => self.out.extend_from_slice(b"&amp;"),
                b'<' => self.out.extend_from_slice(b"&lt;"),
                b'"' => self.out.extend_from_slice(b"&quot;"),
                b'\t' => self.out.extend_from_slice(b"&#x9;"),
                b'\n' => self.out.extend_from_slice(b"&#xA;"),
                b'\r' => self.out.extend_from_slice(b"&#xD;"),
                _ => self.out.push(b),
            }
        }
        self.out.push(b'"');
    }

    /// Text with the escapes of C14N 1.0 §2.3.
    fn text(&mut self, text: &str) {
        for b in text.bytes() {
            match b {
                b'&' => self.out.extend_from_slice(b"&amp;"),
                b'<' => self.out.extend_from_slice(b"&lt;"),
                b'>' => self.out.extend_from_slice(b"&gt;"),
                b'\r' => self.out.extend_from_slice(b"&#xD;"),
                _ => self.out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::xml::{Limits, parse};

    /// The canonical form of the element at `path` (child indexes from the root).
    fn c14n(doc: &str, path: &[usize], inclusive: &[Option<&str>]) -> String {
        let root = parse(doc, Limits::default()).unwrap();
        let mut chain = vec![&root];
        for &i in path {
            let next = &chain.last().unwrap().children[i];
            chain.push(next);
        }
        let out = exclusive(&Subset {
            path: &chain,
            omit: None,
            inclusive,
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_only_visibly_utilised_namespaces_from_the_ancestors() {
        let doc = r#"<r:root xmlns:r="urn:r" xmlns:a="urn:a" xmlns:unused="urn:u" xmlns="urn:d"><a:x b="1" a:c="2"><y/></a:x></r:root>"#;
        assert_eq!(
            c14n(doc, &[0], &[]),
            r#"<a:x xmlns:a="urn:a" b="1" a:c="2"><y xmlns="urn:d"></y></a:x>"#
        );
        // The PrefixList brings in a prefix the subtree does not use.
        assert_eq!(
            c14n(doc, &[0], &[Some("unused"), Some("absent")]),
            r#"<a:x xmlns:a="urn:a" xmlns:unused="urn:u" b="1" a:c="2"><y xmlns="urn:d"></y></a:x>"#
        );
    }

    #[test]
    fn the_empty_default_is_rendered_only_against_a_rendered_default() {
        let doc = r#"<a xmlns="urn:d"><b xmlns=""><c/></b><p:e xmlns:p="urn:p"/></a>"#;
        assert_eq!(
            c14n(doc, &[], &[]),
            r#"<a xmlns="urn:d"><b xmlns=""><c></c></b><p:e xmlns:p="urn:p"></p:e></a>"#
        );
        // At the apex there is no rendered default to undo.
        assert_eq!(c14n(doc, &[0], &[]), "<b><c></c></b>");
    }

    #[test]
    fn sorts_attributes_and_escapes_as_c14n_says() {
        let doc = "<a xmlns:z=\"urn:a\" xmlns:b=\"urn:z\" z:k=\"1\" b:k=\"2\" k=\"&#9;&quot;&lt;&gt;\" xml:lang=\"it\">t&amp;&lt;&gt;&#13;\"'<![CDATA[<x>]]><!-- c --> end</a>";
        assert_eq!(
            c14n(doc, &[], &[]),
            "<a xmlns:b=\"urn:z\" xmlns:z=\"urn:a\" k=\"&#x9;&quot;&lt;>\" xml:lang=\"it\" z:k=\"1\" b:k=\"2\">t&amp;&lt;&gt;&#xD;\"'&lt;x&gt; end</a>"
        );
    }

    #[test]
    fn redeclarations_render_again_and_equal_ones_do_not() {
        let doc = r#"<p:a xmlns:p="urn:1"><p:b xmlns:p="urn:1"><p:c xmlns:p="urn:2"/></p:b></p:a>"#;
        assert_eq!(
            c14n(doc, &[], &[]),
            r#"<p:a xmlns:p="urn:1"><p:b><p:c xmlns:p="urn:2"></p:c></p:b></p:a>"#
        );
    }

    #[test]
    fn omits_one_descendant_and_keeps_the_text_around_it() {
        let doc = "<a>\n  <s><t/></s>\n  <b/>\n</a>";
        let root = parse(doc, Limits::default()).unwrap();
        let out = exclusive(&Subset {
            path: &[&root],
            omit: root.children.first(),
            inclusive: &[],
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "<a>\n  \n  <b></b>\n</a>");
    }

    #[test]
    fn a_tree_not_built_by_the_reader_is_refused() {
        let e = Element {
            name: "a".into(),
            ..Element::default()
        };
        assert!(
            exclusive(&Subset {
                path: &[&e],
                omit: None,
                inclusive: &[]
            })
            .is_err()
        );
    }
}
