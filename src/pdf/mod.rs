//! The printable form of the enablement: the **modulo di adesione**, one A4 page,
//! generated with printpdf. (The seeds' modulo di delega, for taking the signed form to a
//! school for the recognition, has no place once SPID, CIE or eIDAS identified the
//! person, and is not made.)
//!
//! Pure functions: no I/O and no clock (the dates come in [`FormData::date`] and
//! [`FormData::created_at`], the document's `CreationDate`/`ModDate`). The text
//! uses the PDF base-14 Helvetica faces with WinAnsiEncoding, which covers Italian
//! accented letters, so no font is embedded and each PDF is a few kilobytes. Characters
//! outside WinAnsi (e.g. `Ł`) are printed as `?`.

/// The issuing countries of eIDAS identifiers.
pub mod countries;
/// Fixed-layout drawing helpers (text, wrapping, lines, boxes).
pub mod layout;

use std::fmt;

use chrono::{DateTime, Utc};

use layout::{CONTENT_BOTTOM, Canvas, Face, MARGIN, PAGE_HEIGHT, PAGE_WIDTH};
use printpdf::{Mm, PdfDocument, PdfPage, PdfSaveOptions};

/// Why a form could not be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PdfError {
    /// A required field is empty (the field's name).
    #[error("missing required field: {0}")]
    MissingField(&'static str),
    /// `date` is not `dd/mm/yyyy`.
    #[error("date must be dd/mm/yyyy")]
    InvalidDate,
    /// The content did not fit on one page (a layout bug: inputs are truncated first).
    #[error("content does not fit on one page")]
    Overflow,
}

impl PdfError {
    /// Stable code for pages and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField(_) => "POLIS_PDF_MISSING_FIELD",
            Self::InvalidDate => "POLIS_PDF_INVALID_DATE",
            Self::Overflow => "POLIS_PDF_OVERFLOW",
        }
    }
}

/// The person's data printed on the forms.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FormData {
    /// Nome.
    pub given_name: String,
    /// Cognome.
    pub family_name: String,
    /// Codice fiscale (empty for an eIDAS user).
    pub fiscal_code: String,
    /// The eIDAS identifier (`ES/IT/02635542Y`) of a person without a codice fiscale:
    /// printed with its issuing country instead of the codice fiscale.
    pub eidas_identifier: Option<String>,
    /// Data di nascita, as it should be printed (e.g. `01/02/1980`).
    pub birth_date: Option<String>,
    /// Luogo di nascita.
    pub birth_place: Option<String>,
    /// Indirizzo e-mail.
    pub email: Option<String>,
    /// Domicilio (one line: street, postcode, town, province).
    pub domicile: Option<String>,
    /// Recapito telefonico.
    pub phone: Option<String>,
    /// Documento di identità (one line: type, number, issuer, dates).
    pub id_document: Option<String>,
    /// The reference code printed on the form and quoted at the school office.
    pub reference_code: String,
    /// The date of the form, `dd/mm/yyyy`.
    pub date: String,
    /// When the PDF is made: its `CreationDate` and `ModDate` (written in UTC,
    /// `D:YYYYMMDDHHmmSS+00'00'`).
    pub created_at: DateTime<Utc>,
    /// The POLIS username (`nome.cognome`), when assigned.
    pub username: Option<String>,
    /// «SPID», «CIE» or «eIDAS»: how the person was identified (empty: SPID).
    pub scheme: String,
    /// The version of the conditions of use and privacy notice the form accepts.
    pub terms_version: Option<String>,
}

impl fmt::Debug for FormData {
    /// Personal data stays out of logs: only the reference code is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormData")
            .field("reference_code", &self.reference_code)
            .finish_non_exhaustive()
    }
}

const MINISTRY: &str = "Ministero dell'Istruzione e del Merito";
const TITLE_ADESIONE: &str = "Istanze OnLine – Modulo di adesione";
/// Longest value kept from any input field, in characters.
const MAX_FIELD_CHARS: usize = 200;

/// The declaration of the modulo di adesione, naming the scheme that identified the
/// person and the version of the texts accepted.
fn adesione_declaration(data: &Clean) -> [String; 2] {
    let scheme = match data.scheme.as_str() {
        "CIE" => "la Carta d'identità elettronica (CIE)",
        "eIDAS" => "un'identità digitale europea notificata (eIDAS)",
        _ => "SPID (Sistema Pubblico di Identità Digitale)",
    };
    let version = data
        .terms_version
        .as_deref()
        .map(|v| format!(" (versione {v})"))
        .unwrap_or_default();
    [
        format!(
            "Il/La sottoscritto/a, i cui dati sono riportati sopra, chiede di essere abilitato/a al \
             servizio Istanze OnLine del Ministero dell'Istruzione e del Merito, per la \
             presentazione delle istanze in modalità telematica. L'identità del richiedente è \
             stata verificata tramite {scheme}: non è richiesto alcun riconoscimento presso una \
             scuola."
        ),
        format!(
            "Dichiara che i dati indicati sono veritieri, di aver preso visione delle condizioni \
             di utilizzo del servizio e dell'informativa sul trattamento dei dati personali{version} \
             e di accettarle. Si impegna a custodire con cura il Codice Personale, necessario per \
             l'inoltro delle istanze, e a non comunicarlo ad altri."
        ),
    ]
}

/// The modulo di adesione: the person's request to be enabled to Istanze OnLine via
/// SPID and acceptance of the conditions, with a signature box. One A4 page.
pub fn modulo_adesione(data: &FormData) -> Result<Vec<u8>, PdfError> {
    let data = Clean::new(data)?;
    let mut canvas = Canvas::default();
    let mut y = header(
        &mut canvas,
        TITLE_ADESIONE,
        &format!(
            "Richiesta di abilitazione al servizio tramite {}",
            data.scheme
        ),
        &data,
    );

    y = section(&mut canvas, y, "Dati del richiedente");
    let mut rows = identity_rows(&data);
    rows.extend([
        ("Indirizzo e-mail", data.email.as_deref()),
        ("Domicilio", data.domicile.as_deref()),
        ("Recapito telefonico", data.phone.as_deref()),
        ("Documento di identità", data.id_document.as_deref()),
        ("Nome utente", data.username.as_deref()),
    ]);
    y = data_rows(&mut canvas, y, &rows);

    y = section(&mut canvas, y + 4.0, "Dichiarazione");
    y = paragraphs(&mut canvas, y, &adesione_declaration(&data), 8);
    y = date_line(&mut canvas, y, &data);
    signature_box(&mut canvas, y - 4.0, "Firma del richiedente");
    render(canvas, y + 34.0, TITLE_ADESIONE, &data)
}

/// The rows both forms start with: who the person is.
fn identity_rows(data: &Clean) -> Vec<(&'static str, Option<&str>)> {
    let mut rows = vec![
        ("Cognome", Some(data.family_name.as_str())),
        ("Nome", Some(data.given_name.as_str())),
    ];
    match &data.person_code {
        PersonCode::FiscalCode(code) => rows.push(("Codice fiscale", Some(code.as_str()))),
        PersonCode::Eidas {
            identifier,
            country,
        } => rows.extend([
            ("Identificativo eIDAS", Some(identifier.as_str())),
            ("Paese di rilascio", Some(country.as_str())),
        ]),
    }
    rows.extend([
        ("Data di nascita", data.birth_date.as_deref()),
        ("Luogo di nascita", data.birth_place.as_deref()),
    ]);
    rows
}

/// What identifies the person on the form.
enum PersonCode {
    /// The codice fiscale, uppercase.
    FiscalCode(String),
    /// The eIDAS identifier and its issuing country, as printed.
    Eidas { identifier: String, country: String },
}

/// Body paragraphs across the page, at most `max_lines` each; returns the next `y`.
fn paragraphs(canvas: &mut Canvas, mut y: f32, texts: &[impl AsRef<str>], max_lines: usize) -> f32 {
    for text in texts {
        y = canvas.paragraph(
            MARGIN,
            y,
            PAGE_WIDTH - 2.0 * MARGIN,
            Face::Regular,
            10.0,
            5.0,
            max_lines,
            text.as_ref(),
        ) + 2.0;
    }
    y
}

/// "Data: dd/mm/yyyy" after a gap; returns its baseline.
fn date_line(canvas: &mut Canvas, y: f32, data: &Clean) -> f32 {
    let y = y + 6.0;
    canvas.text(
        MARGIN,
        y,
        Face::Regular,
        10.0,
        &format!("Data: {}", data.date),
    );
    y
}

/// The input, validated, truncated and mapped to what the fonts can show.
struct Clean {
    given_name: String,
    family_name: String,
    person_code: PersonCode,
    birth_date: Option<String>,
    birth_place: Option<String>,
    email: Option<String>,
    domicile: Option<String>,
    phone: Option<String>,
    id_document: Option<String>,
    reference_code: String,
    date: String,
    created_at: DateTime<Utc>,
    username: Option<String>,
    scheme: String,
    terms_version: Option<String>,
}

impl Clean {
    fn new(data: &FormData) -> Result<Self, PdfError> {
        let required = |value: &str, name: &'static str| {
            let value = clean(value);
            if value.is_empty() {
                Err(PdfError::MissingField(name))
            } else {
                Ok(value)
            }
        };
        let optional = |value: &Option<String>| {
            value
                .as_deref()
                .map(clean)
                .filter(|value| !value.is_empty())
        };
        let date = required(&data.date, "date")?;
        if !is_dd_mm_yyyy(&date) {
            return Err(PdfError::InvalidDate);
        }
        let person_code = match optional(&data.eidas_identifier) {
            Some(identifier) => PersonCode::Eidas {
                country: clean(&countries::issuing_country(&identifier)),
                identifier,
            },
            None => {
                PersonCode::FiscalCode(required(&data.fiscal_code, "fiscal_code")?.to_uppercase())
            }
        };
        Ok(Self {
            given_name: required(&data.given_name, "given_name")?,
            family_name: required(&data.family_name, "family_name")?,
            person_code,
            birth_date: optional(&data.birth_date),
            birth_place: optional(&data.birth_place),
            email: optional(&data.email),
            domicile: optional(&data.domicile),
            phone: optional(&data.phone),
            id_document: optional(&data.id_document),
            reference_code: required(&data.reference_code, "reference_code")?,
            date,
            created_at: data.created_at,
            username: optional(&data.username),
            scheme: match clean(&data.scheme).as_str() {
                "" => "SPID".to_owned(),
                other => other.to_owned(),
            },
            terms_version: optional(&data.terms_version),
        })
    }
}

/// Trimmed, whitespace collapsed, at most [`MAX_FIELD_CHARS`], WinAnsi only.
fn clean(value: &str) -> String {
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    layout::winansi(&collapsed.chars().take(MAX_FIELD_CHARS).collect::<String>())
}

fn is_dd_mm_yyyy(date: &str) -> bool {
    let parts: Vec<&str> = date.split('/').collect();
    matches!(parts.as_slice(), [d, m, y]
        if d.len() == 2 && m.len() == 2 && y.len() == 4
            && [d, m, y].iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && (1..=31).contains(&d.parse::<u8>().unwrap_or(0))
            && (1..=12).contains(&m.parse::<u8>().unwrap_or(0)))
}

/// Ministry line, title, subtitle, reference code and date; returns the next baseline.
fn header(canvas: &mut Canvas, title: &str, subtitle: &str, data: &Clean) -> f32 {
    let right = PAGE_WIDTH - MARGIN;
    canvas.text(MARGIN, 20.0, Face::Bold, 12.0, MINISTRY);
    canvas.text_right(right, 20.0, Face::Regular, 9.0, "Istanze OnLine");
    canvas.line(MARGIN, 23.5, right, 23.5, 1.0);
    canvas.text(MARGIN, 36.0, Face::Bold, 17.0, title);
    let y = canvas.paragraph(
        MARGIN,
        43.0,
        PAGE_WIDTH - 2.0 * MARGIN,
        Face::Italic,
        10.5,
        5.0,
        2,
        subtitle,
    );
    let y = y + 4.0;
    canvas.text(MARGIN, y, Face::Regular, 10.0, "Codice di riferimento:");
    canvas.text(
        MARGIN + Face::Regular.width_mm("Codice di riferimento: ", 10.0),
        y,
        Face::Bold,
        10.0,
        &data.reference_code,
    );
    canvas.text_right(
        right,
        y,
        Face::Regular,
        10.0,
        &format!("Data: {}", data.date),
    );
    y + 11.0
}

/// A section heading with a rule under it; returns the first baseline below it.
fn section(canvas: &mut Canvas, y: f32, heading: &str) -> f32 {
    canvas.text(MARGIN, y, Face::Bold, 11.0, heading);
    canvas.grey(0.55);
    canvas.line(MARGIN, y + 1.8, PAGE_WIDTH - MARGIN, y + 1.8, 0.4);
    canvas.grey(0.0);
    y + 7.5
}

/// Label/value rows (values wrap on at most two lines; absent ones print `—`).
fn data_rows(canvas: &mut Canvas, y: f32, rows: &[(&str, Option<&str>)]) -> f32 {
    const VALUE_X: f32 = MARGIN + 48.0;
    let width = PAGE_WIDTH - MARGIN - VALUE_X;
    let mut y = y;
    for (label, value) in rows {
        canvas.text(MARGIN, y, Face::Regular, 9.5, label);
        let value = value.unwrap_or("—");
        y = canvas.paragraph(VALUE_X, y, width, Face::Bold, 10.0, 4.6, 2, value) + 1.8;
    }
    y
}

/// The drawn signature box at the right, its caption on `y` (the box below it).
fn signature_box(canvas: &mut Canvas, y: f32, caption: &str) {
    let width = 80.0;
    let x = PAGE_WIDTH - MARGIN - width;
    canvas.text(x, y + 4.0, Face::Regular, 9.0, caption);
    canvas.rect(x, y + 6.0, width, 26.0, 0.8);
}

/// Footer, overflow check and serialization.
fn render(mut canvas: Canvas, lowest: f32, title: &str, data: &Clean) -> Result<Vec<u8>, PdfError> {
    if lowest > CONTENT_BOTTOM {
        return Err(PdfError::Overflow);
    }
    canvas.grey(0.4);
    canvas.line(
        MARGIN,
        PAGE_HEIGHT - 14.0,
        PAGE_WIDTH - MARGIN,
        PAGE_HEIGHT - 14.0,
        0.4,
    );
    canvas.text(
        MARGIN,
        PAGE_HEIGHT - 10.0,
        Face::Regular,
        8.0,
        &format!("{title} – codice di riferimento {}", data.reference_code),
    );
    canvas.text_right(
        PAGE_WIDTH - MARGIN,
        PAGE_HEIGHT - 10.0,
        Face::Regular,
        8.0,
        MINISTRY,
    );
    let page = PdfPage::new(Mm(PAGE_WIDTH), Mm(PAGE_HEIGHT), canvas.into_ops());
    let mut doc = PdfDocument::new(title);
    doc.metadata.info.author = MINISTRY.to_owned();
    doc.metadata.info.subject = format!("Codice di riferimento {}", data.reference_code);
    // printpdf writes the fields of its date as they are, followed by `+00'00'`: the
    // instant goes in as UTC, so the zone written is the right one.
    let created = printpdf::OffsetDateTime::from_unix_timestamp(data.created_at.timestamp())
        .map_err(|_| PdfError::InvalidDate)?;
    doc.metadata.info.creation_date = created;
    doc.metadata.info.modification_date = created;
    doc.metadata.info.metadata_date = created;
    let mut warnings = Vec::new();
    Ok(doc
        .with_pages(vec![page])
        .save(&PdfSaveOptions::default(), &mut warnings))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    fn sample() -> FormData {
        FormData {
            given_name: "Niccolò".to_owned(),
            family_name: "D'Alessandro Sàrrà".to_owned(),
            fiscal_code: "dlsncc80a01h501u".to_owned(),
            eidas_identifier: None,
            birth_date: Some("01/01/1980".to_owned()),
            birth_place: Some("Forlì (FC)".to_owned()),
            email: Some("niccolo.dalessandro@example.it".to_owned()),
            domicile: Some("Via della Libertà 12, 47121 Forlì (FC)".to_owned()),
            phone: Some("+39 333 1234567".to_owned()),
            id_document: Some(
                "Carta d'identità elettronica CA12345AB, Comune di Forlì, 02/03/2020 – 02/03/2031"
                    .to_owned(),
            ),
            reference_code: "ADS-2026-7F3K9Q".to_owned(),
            date: "23/11/2026".to_owned(),
            created_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 23, 20, 5, 9).unwrap(),
            username: Some("niccolo.dalessandro".to_owned()),
            scheme: String::new(),
            terms_version: None,
        }
    }

    /// A date string of the document information dictionary (`CreationDate`, `ModDate`).
    fn info_date(pdf: &[u8], key: &[u8]) -> String {
        let doc = lopdf::Document::load_mem(pdf).unwrap();
        let info = doc.trailer.get(b"Info").unwrap().as_reference().unwrap();
        let dict = doc.get_dictionary(info).unwrap();
        String::from_utf8(dict.get(key).unwrap().as_str().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn the_form_carries_the_time_it_was_made() {
        {
            let pdf = modulo_adesione(&sample()).unwrap();
            // 20:05:09 UTC (21:05:09 in Rome), written with its zone.
            assert_eq!(info_date(&pdf, b"CreationDate"), "D:20261123200509+00'00'");
            assert_eq!(info_date(&pdf, b"ModDate"), "D:20261123200509+00'00'");
        }
    }

    fn poppler(tool: &str, pdf: &[u8], args: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("form.pdf");
        std::fs::write(&path, pdf).unwrap();
        let out = std::process::Command::new(tool)
            .args(args)
            .arg(&path)
            .arg("-")
            .output()
            .unwrap_or_else(|e| panic!("{tool} (poppler-utils) must be installed: {e}"));
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn pdfinfo(pdf: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("form.pdf");
        std::fs::write(&path, pdf).unwrap();
        let out = std::process::Command::new("pdfinfo")
            .arg(&path)
            .output()
            .expect("pdfinfo (poppler-utils) must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// One A4 page, parsed by lopdf (structure) and poppler (metrics, text).
    fn check_one_a4_page(pdf: &[u8]) {
        let doc = lopdf::Document::load_mem(pdf).unwrap();
        assert_eq!(doc.get_pages().len(), 1);
        let info = pdfinfo(pdf);
        let field = |key: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(field("Pages:"), "1", "{info}");
        // 210×297 mm = 595.276×841.89 pt.
        assert_eq!(field("Page size:"), "595.276 x 841.89 pts (A4)", "{info}");
    }

    fn text_of(pdf: &[u8]) -> String {
        poppler("pdftotext", pdf, &["-layout", "-enc", "UTF-8"])
    }

    fn assert_person(text: &str) {
        for needle in [
            "Niccolò",
            "D'Alessandro Sàrrà",
            "DLSNCC80A01H501U",
            "ADS-2026-7F3K9Q",
            "23/11/2026",
            "identità",
            "Ministero dell'Istruzione e del Merito",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn adesione_is_one_a4_page_with_the_data() {
        let pdf = modulo_adesione(&sample()).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        check_one_a4_page(&pdf);
        let text = text_of(&pdf);
        assert_person(&text);
        for needle in [
            "Istanze OnLine – Modulo di adesione",
            "Forlì (FC)",
            "niccolo.dalessandro@example.it",
            "SPID",
            "Firma del richiedente",
            "modalità telematica",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn adesione_of_an_eidas_user_prints_the_identifier_and_country() {
        let mut data = sample();
        data.fiscal_code = String::new();
        data.eidas_identifier = Some("ES/IT/02635542Y".to_owned());
        data.scheme = "eIDAS".to_owned();
        {
            let pdf = modulo_adesione(&data).unwrap();
            check_one_a4_page(&pdf);
            let text = text_of(&pdf);
            for needle in [
                "tramite eIDAS",
                "identità digitale europea notificata (eIDAS)",
                "Identificativo eIDAS",
                "ES/IT/02635542Y",
                "Paese di rilascio",
                "Spagna / Spain (ES)",
            ] {
                assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
            }
            assert!(!text.contains("Codice fiscale"), "{text}");
        }
        data.eidas_identifier = Some("  ".to_owned());
        assert_eq!(
            modulo_adesione(&data),
            Err(PdfError::MissingField("fiscal_code"))
        );
    }

    #[test]
    fn the_declaration_names_the_scheme_and_the_terms_version() {
        let mut data = sample();
        let text = text_of(&modulo_adesione(&data).unwrap());
        assert!(text.contains("tramite SPID"), "{text}");
        assert!(!text.contains("versione"), "{text}");
        data.scheme = "CIE".to_owned();
        data.terms_version = Some("2026-12".to_owned());
        let text = text_of(&modulo_adesione(&data).unwrap());
        assert!(text.contains("tramite CIE"), "{text}");
        assert!(
            text.contains("Carta d'identità elettronica (CIE)"),
            "{text}"
        );
        assert!(text.contains("(versione 2026-12)"), "{text}");
        assert!(
            text.contains("presso una") && text.contains("scuola"),
            "{text}"
        );
    }

    #[test]
    fn long_values_stay_on_the_page() {
        let mut data = sample();
        let long = "Molto lunga parola e ancora testo ".repeat(20);
        data.given_name = long.clone();
        data.family_name = "W".repeat(300);
        data.birth_place = Some(long.clone());
        data.email = Some(long.clone());
        data.domicile = Some(long.clone());
        data.phone = Some(long.clone());
        data.id_document = Some(long.clone());
        data.username = Some(long.clone());
        data.reference_code = "R".repeat(40);
        {
            let pdf = modulo_adesione(&data).unwrap();
            check_one_a4_page(&pdf);
            // Every glyph inside the page: pdftotext's bounding boxes.
            let html = poppler("pdftotext", &pdf, &["-bbox"]);
            for word in html.split("<word ").skip(1) {
                let attr = |name: &str| -> f32 {
                    let start = word.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                    let rest = &word[start..];
                    rest[..rest.find('"').unwrap()].parse().unwrap()
                };
                assert!(
                    attr("xMin") >= 56.0 && attr("xMax") <= 595.3 - 56.0,
                    "{word}"
                );
                assert!(attr("yMin") >= 0.0 && attr("yMax") <= 841.9, "{word}");
            }
        }
    }

    #[test]
    fn minimal_data_and_bad_input() {
        let minimal = FormData {
            given_name: "Anna".to_owned(),
            family_name: "Bianchi".to_owned(),
            fiscal_code: "BNCNNA90M41F205X".to_owned(),
            eidas_identifier: None,
            reference_code: "R1".to_owned(),
            date: "01/12/2026".to_owned(),
            ..FormData::default()
        };
        let text = text_of(&modulo_adesione(&minimal).unwrap());
        assert!(text.contains("BNCNNA90M41F205X"));
        assert!(text.contains('—'));

        let mut bad = minimal.clone();
        bad.fiscal_code = "  ".to_owned();
        assert_eq!(
            modulo_adesione(&bad),
            Err(PdfError::MissingField("fiscal_code"))
        );
        for date in [
            "2026-12-01",
            "1/12/2026",
            "32/01/2026",
            "01/13/2026",
            "aa/bb/cccc",
        ] {
            let mut bad = minimal.clone();
            bad.date = date.to_owned();
            assert_eq!(modulo_adesione(&bad), Err(PdfError::InvalidDate), "{date}");
        }
        assert!(!format!("{minimal:?}").contains("BNCNNA90M41F205X"));
    }
}
