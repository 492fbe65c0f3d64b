//! The countries an eIDAS identifier can come from (the EU and EEA states that notify
//! eIDAS schemes), by the two-letter code that starts the identifier
//! (`ES/IT/02635542Y` → Spain), with their Italian and English names.

/// `(code, Italian name, English name)`; eIDAS uses `EL` for Greece (ISO `GR`).
const COUNTRIES: [(&str, &str, &str); 31] = [
    ("AT", "Austria", "Austria"),
    ("BE", "Belgio", "Belgium"),
    ("BG", "Bulgaria", "Bulgaria"),
    ("CY", "Cipro", "Cyprus"),
    ("CZ", "Cechia", "Czechia"),
    ("DE", "Germania", "Germany"),
    ("DK", "Danimarca", "Denmark"),
    ("EE", "Estonia", "Estonia"),
    ("EL", "Grecia", "Greece"),
    ("ES", "Spagna", "Spain"),
    ("FI", "Finlandia", "Finland"),
    ("FR", "Francia", "France"),
    ("HR", "Croazia", "Croatia"),
    ("HU", "Ungheria", "Hungary"),
    ("IE", "Irlanda", "Ireland"),
    ("IS", "Islanda", "Iceland"),
    ("IT", "Italia", "Italy"),
    ("LI", "Liechtenstein", "Liechtenstein"),
    ("LT", "Lituania", "Lithuania"),
    ("LU", "Lussemburgo", "Luxembourg"),
    ("LV", "Lettonia", "Latvia"),
    ("MT", "Malta", "Malta"),
    ("NL", "Paesi Bassi", "Netherlands"),
    ("NO", "Norvegia", "Norway"),
    ("PL", "Polonia", "Poland"),
    ("PT", "Portogallo", "Portugal"),
    ("RO", "Romania", "Romania"),
    ("SE", "Svezia", "Sweden"),
    ("SI", "Slovenia", "Slovenia"),
    ("SK", "Slovacchia", "Slovakia"),
    ("GR", "Grecia", "Greece"),
];

/// The issuing country of an eIDAS identifier as printed: `Spagna / Spain (ES)`, or
/// the bare code when it is not in the table.
pub fn issuing_country(identifier: &str) -> String {
    let code: String = identifier
        .chars()
        .take_while(|c| *c != '/')
        .collect::<String>()
        .to_uppercase();
    COUNTRIES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(code.clone(), |(c, it, en)| {
            if it == en {
                format!("{it} ({c})")
            } else {
                format!("{it} / {en} ({c})")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_two_letters() {
        assert_eq!(issuing_country("ES/IT/02635542Y"), "Spagna / Spain (ES)");
        assert_eq!(issuing_country("de/IT/X"), "Germania / Germany (DE)");
        assert_eq!(issuing_country("MT/IT/1"), "Malta (MT)");
        assert_eq!(issuing_country("ZZ/IT/1"), "ZZ");
    }
}
