//! `[database]`: the account database's URL (default: the SQLite file under
//! `data_dir`), its password file and pool size. Kept here: `app` reads the password
//! file and hands the URL and the pool size to `accounts`.

use std::path::PathBuf;

use serde::Deserialize;

use super::checks::{in_range, invalid};
use super::{ConfigError, Context};

/// `[database]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`; default: the SQLite
    /// file `polis.db` under `data_dir`. Put a PostgreSQL password in `password_file`,
    /// not in the URL.
    #[serde(default)]
    url: Option<String>,
    /// File holding the PostgreSQL password (first line), added to the URL at start.
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// Connection-pool size.
    #[serde(default = "default_max_connections")]
    max_connections: u32,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: None,
            password_file: None,
            max_connections: default_max_connections(),
        }
    }
}

fn default_max_connections() -> u32 {
    8
}

/// Where the accounts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// Used as written (`database.url`, or the SQLite file under `data_dir`).
    Plain(String),
    /// `database.url` with the first line of `password_file` added as its password at
    /// start (checked here to be a URL that can carry one).
    WithPasswordFile {
        /// The URL without the password.
        url: url::Url,
        /// The file holding the password.
        password_file: PathBuf,
    },
}

/// `[database]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// The connection URL.
    pub url: DatabaseUrl,
    /// Connection-pool size (1..=200).
    pub max_connections: u32,
}

/// Checks `[database]`.
pub(super) fn validate(
    raw: RawDatabase,
    ctx: &Context<'_>,
) -> Result<DatabaseSettings, ConfigError> {
    if let Some(url) = &raw.url
        && !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
    {
        return Err(invalid(
            "database.url",
            "must start with sqlite: or postgres://",
        ));
    }
    let max_connections = in_range("database.max_connections", raw.max_connections, 1, 200)?;
    let url = raw
        .url
        .unwrap_or_else(|| format!("sqlite://{}", ctx.data_dir.join("polis.db").display()));
    if ctx.prod && url.starts_with("sqlite:") {
        return Err(invalid(
            "database.url",
            "production needs PostgreSQL (the SQLite file is one replica's)",
        ));
    }
    let url = match raw.password_file {
        None => DatabaseUrl::Plain(url),
        Some(password_file) => DatabaseUrl::WithPasswordFile {
            url: password_carrier(&url)?,
            password_file,
        },
    };
    Ok(DatabaseSettings {
        url,
        max_connections,
    })
}

/// `url` parsed, if a password can be added to it.
fn password_carrier(url: &str) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(url).map_err(|_| invalid("database.url", "not a URL"))?;
    if parsed.clone().set_password(Some("x")).is_err() {
        return Err(invalid(
            "database.url",
            "cannot carry a password (database.password_file is set)",
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{err, load};
    use super::DatabaseUrl;

    #[test]
    fn the_url_defaults_to_the_sqlite_file_under_data_dir() {
        let d = load("data_dir = \"/var/lib/polis\"\n", &[])
            .unwrap()
            .database;
        assert_eq!(
            d.url,
            DatabaseUrl::Plain("sqlite:///var/lib/polis/polis.db".to_owned())
        );
        assert_eq!(d.max_connections, 8);
    }

    #[test]
    fn a_password_file_needs_a_url_that_can_carry_it() {
        let d = load(
            "[database]\nurl = \"postgres://polis@db.internal:5432/polis\"\npassword_file = \"/run/secrets/db\"\nmax_connections = 20\n",
            &[],
        )
        .unwrap()
        .database;
        let DatabaseUrl::WithPasswordFile { url, password_file } = d.url else {
            panic!("a password file expected");
        };
        assert_eq!(url.host_str(), Some("db.internal"));
        assert_eq!(password_file, PathBuf::from("/run/secrets/db"));
        assert_eq!(d.max_connections, 20);
        let e = err(
            "[database]\nurl = \"sqlite::memory:\"\npassword_file = \"p\"\n",
            &[],
        );
        assert!(e.contains("database.url"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            (
                "[database]\nmax_connections = 0\n",
                "database.max_connections",
            ),
            (
                "[database]\nmax_connections = 201\n",
                "database.max_connections",
            ),
        ] {
            let e = err(toml, &[]);
            assert!(e.contains(key), "{toml} -> {e}");
        }
    }
}
