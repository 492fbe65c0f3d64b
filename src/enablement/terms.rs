//! The «condizioni di utilizzo» and the privacy «informativa» the modulo di adesione
//! says the person read: the operator's texts (`[terms]`, plain UTF-8 files) or, outside
//! production, the built-in demo texts. Each has a version label, recorded with the
//! account when the person presses «Accetto».
//!
//! The text format is deliberately small: paragraphs separated by a blank line, a line
//! starting with `# ` is a heading, lines starting with `- ` are list items. Everything is
//! shown as text (escaped by the templates), never as HTML.

/// Longest accepted text, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The built-in demo conditions (`config/demo/condizioni-di-utilizzo.txt`).
const DEMO_CONDITIONS: &str = include_str!("../../config/demo/condizioni-di-utilizzo.txt");
/// The built-in demo privacy notice (`config/demo/informativa-privacy.txt`).
const DEMO_PRIVACY: &str = include_str!("../../config/demo/informativa-privacy.txt");
/// The version label of the built-in demo texts.
pub const DEMO_VERSION: &str = "demo-2026-12";

/// One block of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A `# ` line.
    Heading(String),
    /// Consecutive lines joined by spaces.
    Paragraph(String),
    /// Consecutive `- ` lines.
    List(Vec<String>),
}

/// A text read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Its blocks, in order (at least one).
    pub blocks: Vec<Block>,
}

/// Why a text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Over [`MAX_TEXT_BYTES`].
    #[error("longer than {MAX_TEXT_BYTES} bytes")]
    TooLong,
    /// Nothing but white space.
    #[error("empty")]
    Empty,
    /// A control character other than tab and line breaks, on the given line.
    #[error("a control character on line {0}")]
    Control(usize),
}

impl Text {
    /// Reads `source` (see the module documentation).
    pub fn parse(source: &str) -> Result<Self, TextError> {
        if source.len() > MAX_TEXT_BYTES {
            return Err(TextError::TooLong);
        }
        let mut blocks = Vec::new();
        let mut paragraph: Vec<&str> = Vec::new();
        let mut list: Vec<String> = Vec::new();
        fn flush(blocks: &mut Vec<Block>, paragraph: &mut Vec<&str>, list: &mut Vec<String>) {
            if !paragraph.is_empty() {
                blocks.push(Block::Paragraph(paragraph.join(" ")));
                paragraph.clear();
            }
            if !list.is_empty() {
                blocks.push(Block::List(std::mem::take(list)));
            }
        }
        for (n, raw) in source.lines().enumerate() {
            if raw
                .chars()
                .any(|c| c.is_control() && c != '\t' && c != '\r')
            {
                return Err(TextError::Control(n + 1));
            }
            let line = raw.trim();
            if line.is_empty() {
                flush(&mut blocks, &mut paragraph, &mut list);
            } else if let Some(heading) = line.strip_prefix("# ") {
                flush(&mut blocks, &mut paragraph, &mut list);
                blocks.push(Block::Heading(heading.trim().to_owned()));
            } else if let Some(item) = line.strip_prefix("- ") {
                if !paragraph.is_empty() {
                    flush(&mut blocks, &mut paragraph, &mut list);
                }
                list.push(item.trim().to_owned());
            } else {
                if !list.is_empty() {
                    flush(&mut blocks, &mut paragraph, &mut list);
                }
                paragraph.push(line);
            }
        }
        flush(&mut blocks, &mut paragraph, &mut list);
        if blocks.is_empty() {
            return Err(TextError::Empty);
        }
        Ok(Self { blocks })
    }
}

/// The two texts and their version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The version label recorded with each «Accetto».
    pub version: String,
    /// Condizioni di utilizzo.
    pub conditions: Text,
    /// Informativa sul trattamento dei dati personali.
    pub privacy: Text,
    /// The built-in demo texts (never in production).
    pub demo: bool,
}

impl Terms {
    /// The built-in demo texts.
    pub fn demo() -> Self {
        // The shipped files are checked by a unit test; an empty text is the fallback
        // that keeps this free of panics.
        let read = |s: &str| {
            Text::parse(s).unwrap_or_else(|_| Text {
                blocks: vec![Block::Paragraph("Testo dimostrativo.".to_owned())],
            })
        };
        Self {
            version: DEMO_VERSION.to_owned(),
            conditions: read(DEMO_CONDITIONS),
            privacy: read(DEMO_PRIVACY),
            demo: true,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn paragraphs_headings_and_lists() {
        let text = Text::parse(
            "# Titolo\nPrima riga\nseconda riga.\n\n- uno\n- due\nDopo la lista.\n\n\n# Altro\n",
        )
        .unwrap();
        assert_eq!(
            text.blocks,
            vec![
                Block::Heading("Titolo".into()),
                Block::Paragraph("Prima riga seconda riga.".into()),
                Block::List(vec!["uno".into(), "due".into()]),
                Block::Paragraph("Dopo la lista.".into()),
                Block::Heading("Altro".into()),
            ]
        );
    }

    #[test]
    fn bad_texts_are_refused() {
        assert_eq!(Text::parse(" \n\n"), Err(TextError::Empty));
        assert_eq!(Text::parse("a\nb\u{7}"), Err(TextError::Control(2)));
        assert_eq!(
            Text::parse(&"x".repeat(MAX_TEXT_BYTES + 1)),
            Err(TextError::TooLong)
        );
        assert!(
            Text::parse("<script>alert(1)</script>").is_ok(),
            "text, shown escaped"
        );
    }

    #[test]
    fn the_demo_texts_parse_and_say_they_are_demo() {
        for source in [DEMO_CONDITIONS, DEMO_PRIVACY] {
            let text = Text::parse(source).unwrap();
            assert!(text.blocks.len() > 3);
            assert!(source.contains("TESTO DIMOSTRATIVO"));
        }
        assert!(Terms::demo().demo);
    }
}
