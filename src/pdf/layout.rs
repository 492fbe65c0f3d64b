//! A tiny fixed-layout canvas over printpdf: text in the PDF base-14 Helvetica faces
//! (WinAnsi, so Italian accented letters are real characters), greedy line wrapping
//! with the fonts' own advance widths, lines and boxes. Coordinates are millimetres
//! from the **top** left corner of an A4 page; the canvas flips them for PDF.

use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Mm, Op, PdfFontHandle, Point, Pt, Rgb, TextItem,
};

/// A4 width, mm.
pub const PAGE_WIDTH: f32 = 210.0;
/// A4 height, mm.
pub const PAGE_HEIGHT: f32 = 297.0;
/// Left and right margin, mm.
pub const MARGIN: f32 = 20.0;
/// Lowest baseline (from the top) any content may use, mm.
pub const CONTENT_BOTTOM: f32 = PAGE_HEIGHT - 18.0;

const PT_PER_MM: f32 = 72.0 / 25.4;

/// The faces used by the forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// Helvetica.
    Regular,
    /// Helvetica-Bold.
    Bold,
    /// Helvetica-Oblique.
    Italic,
}

impl Face {
    fn builtin(self) -> BuiltinFont {
        match self {
            Self::Regular => BuiltinFont::Helvetica,
            Self::Bold => BuiltinFont::HelveticaBold,
            Self::Italic => BuiltinFont::HelveticaOblique,
        }
    }

    /// Advance width of `c` in 1/1000 em, from the Adobe AFM metrics of Helvetica and
    /// Helvetica-Bold (Oblique shares Helvetica's). Accented letters take their base
    /// letter's width; anything unknown counts as a full em, so measuring errs on the
    /// side of wrapping early. (printpdf's bundled base-14 subsets carry no cmap, so
    /// their metrics cannot be looked up by character.)
    fn advance(self, c: char) -> f32 {
        let bold = self == Self::Bold;
        let base = match c {
            'À'..='Å' => 'A',
            'Ç' => 'C',
            'È'..='Ë' => 'E',
            'Ì'..='Ï' | 'ì'..='ï' => return 278.0,
            'Ñ' => 'N',
            'Ò'..='Ö' | 'Ø' => 'O',
            'Ù'..='Ü' => 'U',
            'Ý' | 'Ÿ' => 'Y',
            'à'..='å' => 'a',
            'ç' => 'c',
            'è'..='ë' => 'e',
            'ñ' => 'n',
            'ò'..='ö' | 'ø' => 'o',
            'ù'..='ü' => 'u',
            'ý' | 'ÿ' => 'y',
            'Š' => 'S',
            'š' => 's',
            'Ž' => 'Z',
            'ž' => 'z',
            '’' | '‘' => return if bold { 278.0 } else { 222.0 },
            '–' | '€' => return 556.0,
            '—' | '…' | 'Æ' | 'Œ' | '‰' => return 1000.0,
            other => other,
        };
        const REGULAR: &[u16; 95] = &[
            278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556,
            556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667,
            667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722,
            667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500,
            556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278,
            556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
        ];
        const BOLD: &[u16; 95] = &[
            278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556,
            556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722,
            722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722,
            667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556,
            611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, 611, 611, 389, 556, 333,
            611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
        ];
        let table = if bold { BOLD } else { REGULAR };
        u32::from(base)
            .checked_sub(0x20)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| table.get(i))
            .map_or(1000.0, |&w| f32::from(w))
    }

    /// Width of `text` at `size` points, in mm.
    pub fn width_mm(self, text: &str, size: f32) -> f32 {
        let em: f32 = text.chars().map(|c| self.advance(c)).sum();
        em / 1000.0 * size / PT_PER_MM
    }
}

/// Maps `text` onto what the base-14 fonts can show (WinAnsiEncoding): controls become
/// spaces, typographic quotes are kept (WinAnsi has them), anything else outside the
/// encoding becomes `?` — the same substitution printpdf would make, done here so the
/// measured width is the drawn width.
pub fn winansi(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                ' '
            } else if is_winansi(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn is_winansi(c: char) -> bool {
    matches!(u32::from(c), 0x20..=0x7E | 0xA0..=0xFF)
        || matches!(
            c,
            '€' | '‚'
                | 'ƒ'
                | '„'
                | '…'
                | '†'
                | '‡'
                | 'ˆ'
                | '‰'
                | 'Š'
                | '‹'
                | 'Œ'
                | 'Ž'
                | '‘'
                | '’'
                | '“'
                | '”'
                | '•'
                | '–'
                | '—'
                | '˜'
                | '™'
                | 'š'
                | '›'
                | 'œ'
                | 'ž'
                | 'Ÿ'
        )
}

/// Splits `text` into lines no wider than `width` mm (greedy, on spaces; a word wider
/// than a line is cut between characters). At most `max_lines` lines: if more were
/// needed the last kept line ends with `…`.
pub fn wrap(text: &str, face: Face, size: f32, width: f32, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if face.width_mm(&candidate, size) <= width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        // The word alone: cut it if it is still too wide.
        for c in word.chars() {
            current.push(c);
            if face.width_mm(&current, size) > width {
                current.pop();
                lines.push(std::mem::take(&mut current));
                current.push(c);
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            while !last.is_empty() && face.width_mm(&format!("{last}…"), size) > width {
                last.pop();
            }
            last.push('…');
        }
    }
    lines
}

/// Collects drawing operations for one page.
#[derive(Debug, Default)]
pub struct Canvas {
    ops: Vec<Op>,
}

impl Canvas {
    /// The operations drawn so far.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// One line of text with its baseline at (`x`, `y`) mm from the top left.
    pub fn text(&mut self, x: f32, y: f32, face: Face, size: f32, text: &str) {
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFont {
                font: PdfFontHandle::Builtin(face.builtin()),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point::new(Mm(x), Mm(PAGE_HEIGHT - y)),
            },
            Op::ShowText {
                items: vec![TextItem::Text(text.to_owned())],
            },
            Op::EndTextSection,
        ]);
    }

    /// Text right-aligned so that it ends at `right` mm.
    pub fn text_right(&mut self, right: f32, y: f32, face: Face, size: f32, text: &str) {
        let x = right - face.width_mm(text, size);
        self.text(x, y, face, size, text);
    }

    /// Text centred on the page.
    pub fn text_centered(&mut self, y: f32, face: Face, size: f32, text: &str) {
        let x = (PAGE_WIDTH - face.width_mm(text, size)) / 2.0;
        self.text(x, y, face, size, text);
    }

    /// Wraps `text` into `width` mm from baseline `y` with `leading` mm between lines;
    /// returns the baseline after the last line.
    #[allow(clippy::too_many_arguments)]
    pub fn paragraph(
        &mut self,
        x: f32,
        y: f32,
        width: f32,
        face: Face,
        size: f32,
        leading: f32,
        max_lines: usize,
        text: &str,
    ) -> f32 {
        let mut y = y;
        for line in wrap(&winansi(text), face, size, width, max_lines) {
            self.text(x, y, face, size, &line);
            y += leading;
        }
        y
    }

    /// The colour of following strokes and text (grey level 0 = black, 1 = white).
    pub fn grey(&mut self, level: f32) {
        let col = Color::Rgb(Rgb {
            r: level,
            g: level,
            b: level,
            icc_profile: None,
        });
        self.ops.push(Op::SetFillColor { col: col.clone() });
        self.ops.push(Op::SetOutlineColor { col });
    }

    /// A straight line from (`x1`, `y1`) to (`x2`, `y2`) mm, `thickness` points wide.
    pub fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, thickness: f32) {
        self.stroke(&[(x1, y1), (x2, y2)], false, thickness);
    }

    /// The outline of a rectangle whose top-left corner is (`x`, `y`) mm.
    pub fn rect(&mut self, x: f32, y: f32, width: f32, height: f32, thickness: f32) {
        self.stroke(
            &[
                (x, y),
                (x + width, y),
                (x + width, y + height),
                (x, y + height),
            ],
            true,
            thickness,
        );
    }

    fn stroke(&mut self, points: &[(f32, f32)], closed: bool, thickness: f32) {
        self.ops.push(Op::SetOutlineThickness { pt: Pt(thickness) });
        self.ops.push(Op::DrawLine {
            line: Line {
                points: points
                    .iter()
                    .map(|&(x, y)| LinePoint {
                        p: Point::new(Mm(x), Mm(PAGE_HEIGHT - y)),
                        bezier: false,
                    })
                    .collect(),
                is_closed: closed,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn metrics_follow_the_helvetica_afm() {
        // Helvetica AFM: space 278, 'a' 556, 'W' 944, 'à' 556; Helvetica-Bold 'm' 889.
        let w = |face: Face, c: char| face.width_mm(&c.to_string(), 1000.0 * PT_PER_MM);
        assert!(
            (w(Face::Regular, ' ') - 278.0).abs() < 2.0,
            "{}",
            w(Face::Regular, ' ')
        );
        assert!((w(Face::Regular, 'a') - 556.0).abs() < 2.0);
        assert!((w(Face::Regular, 'W') - 944.0).abs() < 2.0);
        assert!((w(Face::Regular, 'à') - 556.0).abs() < 2.0);
        assert!((w(Face::Bold, 'm') - 889.0).abs() < 2.0);
        assert!((w(Face::Regular, '~') - 584.0).abs() < 2.0);
        assert!((w(Face::Regular, '中') - 1000.0).abs() < 2.0);
    }

    #[test]
    fn wrap_keeps_lines_inside_and_marks_truncation() {
        let text = "parola ".repeat(60);
        let lines = wrap(&text, Face::Regular, 10.0, 50.0, 3);
        assert_eq!(lines.len(), 3);
        for line in &lines {
            assert!(Face::Regular.width_mm(line, 10.0) <= 50.0, "{line}");
        }
        assert!(lines[2].ends_with('…'));
        let long_word = "X".repeat(200);
        let lines = wrap(&long_word, Face::Bold, 10.0, 30.0, 100);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), long_word);
        assert!(wrap("", Face::Regular, 10.0, 30.0, 2).is_empty());
    }

    #[test]
    fn winansi_substitutes_only_what_it_cannot_show() {
        assert_eq!(
            winansi("identità – Niccolò d’Aosta €"),
            "identità – Niccolò d’Aosta €"
        );
        assert_eq!(winansi("Łukasz\u{0007}中"), "?ukasz ?");
    }
}
