//! Place names for stored places of birth: SPID's `placeOfBirth` and the codice
//! fiscale give a cadastral (Belfiore) code (`F205`, `Z404`), which people read as
//! «Milano (MI)» or «Stati Uniti D'America (estero)».
//!
//! The table is `belfiore.tsv` beside this file, compiled in and parsed once: one row per
//! code (`code\tname\tprovince`, `EE` for a foreign state), the municipality active today
//! or else the one deleted last, so a code reused over time shows its current name
//! (`A089` is Agrigento, once Girgenti). Its source (python-codicefiscale, MIT, from
//! ANPR) and how to refresh it: `README.md` beside this file and
//! `scripts/refresh-belfiore.py`. Display only: the account keeps the stored value.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The shipped table (header lines start with `#`).
const TABLE: &str = include_str!("belfiore.tsv");

/// The marker of a foreign state in the table's third column.
const ABROAD: &str = "EE";

/// A place a code stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    name: &'static str,
    /// The province's sigla, or [`ABROAD`].
    marker: &'static str,
}

static PLACES: LazyLock<HashMap<&'static str, Place>> = LazyLock::new(|| parse(TABLE));

/// The rows of `table` that are well formed (a code, a name and a marker); others are
/// skipped (the unit tests check the shipped table has none).
fn parse(table: &'static str) -> HashMap<&'static str, Place> {
    table.lines().filter_map(row).collect()
}

fn row(line: &'static str) -> Option<(&'static str, Place)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let mut cells = line.split('\t');
    let (code, name, marker) = (cells.next()?, cells.next()?, cells.next()?);
    let well_formed =
        cells.next().is_none() && is_code(code) && !name.is_empty() && !marker.is_empty();
    well_formed.then_some((code, Place { name, marker }))
}

/// One ASCII uppercase letter and three digits.
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4
        && b.first().is_some_and(u8::is_ascii_uppercase)
        && b.iter().skip(1).all(u8::is_ascii_digit)
}

/// What to show for a stored place of birth: a known cadastral code (trimmed, any case)
/// as «Milano (MI)» or «Stati Uniti D'America (estero)»; anything else — free text
/// (an eIDAS person's «Madrid, Spagna»), an unknown code — as stored, trimmed.
pub fn birth_place_label(stored: &str) -> String {
    let trimmed = stored.trim();
    let code = trimmed.to_ascii_uppercase();
    if !is_code(&code) {
        return trimmed.to_owned();
    }
    match PLACES.get(code.as_str()) {
        Some(p) if p.marker == ABROAD => format!("{} (estero)", p.name),
        Some(p) => format!("{} ({})", p.name, p.marker),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn municipalities_show_name_and_province() {
        assert_eq!(birth_place_label("F205"), "Milano (MI)");
        assert_eq!(birth_place_label("H501"), "Roma (RM)");
        assert_eq!(birth_place_label("L219"), "Torino (TO)");
    }

    #[test]
    fn foreign_states_are_estero() {
        assert_eq!(birth_place_label("Z404"), "Stati Uniti D'America (estero)");
        assert_eq!(birth_place_label("Z131"), "Spagna (estero)");
        // A state that no longer exists keeps its name (deleted-countries.json).
        assert_eq!(birth_place_label("Z105"), "Cecoslovacchia (estero)");
    }

    #[test]
    fn case_and_spaces_do_not_matter() {
        assert_eq!(birth_place_label("  f205 "), "Milano (MI)");
        assert_eq!(
            birth_place_label("\tz404\n"),
            "Stati Uniti D'America (estero)"
        );
    }

    #[test]
    fn unknown_codes_and_free_text_are_shown_as_stored() {
        // Shaped like a code but in no table (ANPR has no Z999, nor a Q municipality).
        assert_eq!(birth_place_label("Z999"), "Z999");
        assert_eq!(birth_place_label(" q123 "), "q123");
        assert_eq!(birth_place_label("Madrid, Spagna"), "Madrid, Spagna");
        assert_eq!(birth_place_label("  Forlì (FC) "), "Forlì (FC)");
        assert_eq!(birth_place_label("F2055"), "F2055");
        assert_eq!(birth_place_label("F20"), "F20");
        assert_eq!(birth_place_label("ÀF205"), "ÀF205");
        assert_eq!(birth_place_label(""), "");
        assert_eq!(birth_place_label("   "), "");
    }

    #[test]
    fn a_code_reused_over_time_shows_the_municipality_of_today() {
        // A089 was Girgenti until 1927; A001 Abano until 1924; A056 Adernò until 1929.
        assert_eq!(birth_place_label("A089"), "Agrigento (AG)");
        assert_eq!(birth_place_label("A001"), "Abano Terme (PD)");
        assert_eq!(birth_place_label("A056"), "Adrano (CT)");
    }

    #[test]
    fn a_code_of_a_suppressed_municipality_shows_its_last_name() {
        // No active entry: the one deleted last. Abbiateguazzone was in the province of
        // Como until 1927, then of Varese until it was merged in 1928.
        assert_eq!(birth_place_label("A011"), "Abbiateguazzone (VA)");
        // Aidussina (Ajdovščina, now in Slovenia): Gorizia until 1947.
        assert_eq!(birth_place_label("A099"), "Aidussina (GO)");
    }

    #[test]
    fn the_shipped_table_parses_whole_with_one_row_per_code() {
        let rows: Vec<&str> = TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert!(rows.len() > 7_000, "{} rows", rows.len());
        for line in &rows {
            assert!(row(line).is_some(), "malformed row {line:?}");
        }
        assert_eq!(PLACES.len(), rows.len(), "a code appears twice");
        let abroad = PLACES.values().filter(|p| p.marker == ABROAD).count();
        assert!(abroad > 200, "{abroad} foreign states");
        assert!(
            PLACES
                .values()
                .all(|p| p.marker == ABROAD || p.marker.len() == 2),
            "a province is its two-letter sigla"
        );
        assert!(
            TABLE.starts_with("# Belfiore"),
            "the header names the table"
        );
        assert!(
            TABLE.contains("# licence: MIT"),
            "the header names the licence"
        );
    }
}
