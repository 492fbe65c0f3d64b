// libxml2's reading of a document, in the same flat form as
// `polis_gateway::fuzzing::strict_view_comparable` (attributes by local name: the safe
// `libxml` API does not give their namespaces). Shared by the differential fuzz target
// and the corpus replay test.

/// libxml2's view of `data`, or None if it refuses the document.
pub fn view(data: &[u8]) -> Option<Vec<String>> {
    use libxml::parser::{Parser, ParserOptions};
    let options = ParserOptions {
        recover: false,
        no_def_dtd: false,
        no_error: true,
        no_warning: true,
        pedantic: false,
        no_blanks: false,
        no_net: true,
        no_implied: false,
        compact: false,
        ignore_enc: true,
        // None: the crate's Some(..) path frees the name before libxml2 reads it.
        encoding: None,
    };
    let doc = Parser::default()
        .parse_string_with_options(data, options)
        .ok()?;
    let root = doc.get_root_element()?;
    let mut out = Vec::new();
    flatten(&root, &mut out);
    Some(out)
}

fn flatten(node: &libxml::tree::Node, out: &mut Vec<String>) {
    use libxml::tree::NodeType;
    let ns = node
        .get_namespace()
        .map(|n| n.get_href())
        .unwrap_or_default();
    out.push(format!("element {{{ns}}}{}", node.get_name()));
    let mut attrs: Vec<String> = node
        .get_properties()
        .into_iter()
        .map(|(k, v)| format!("attr {k}={v:?}"))
        .collect();
    attrs.sort();
    out.extend(attrs);
    let mut text = String::new();
    let mut children = Vec::new();
    for c in node.get_child_nodes() {
        match c.get_type() {
            Some(NodeType::TextNode) | Some(NodeType::CDataSectionNode) => {
                text.push_str(&c.get_content())
            }
            Some(NodeType::ElementNode) => children.push(c),
            _ => {}
        }
    }
    out.push(format!("text {text:?}"));
    for c in &children {
        flatten(c, out);
    }
    out.push("end".to_owned());
}
