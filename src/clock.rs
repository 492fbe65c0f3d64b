//! The clock port. Services read the time only through a [`Clock`], so tests can
//! move it ([`ManualClock`]) instead of shrinking TTLs or editing stored rows. The
//! pure `saml` core takes `now` as a parameter and reads no clock at all.
//! [`SystemClock`] is the only place that reads the system's wall clock
//! (`make lint` checks it).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// Where services get the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock as services hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock tests control: either stopped at an instant ([`ManualClock::at`]) or
/// following the system clock with an offset ([`ManualClock::following_system`], for a
/// whole gateway and mock IdP in a test, whose messages must keep plausible times);
/// [`advance`](Self::advance) moves either kind, so a test sees a timeout, an expiry
/// or a deadline pass without waiting for it.
#[derive(Debug)]
pub struct ManualClock {
    mode: Mutex<Mode>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Stopped(DateTime<Utc>),
    Following(Duration),
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            mode: Mutex::new(Mode::Stopped(start)),
        })
    }

    /// A clock that runs with the system clock, offset by what [`Self::advance`] adds.
    pub fn following_system() -> Arc<Self> {
        Arc::new(Self {
            mode: Mutex::new(Mode::Following(Duration::zero())),
        })
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut mode = self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        *mode = match *mode {
            Mode::Stopped(t) => Mode::Stopped(t + by),
            Mode::Following(offset) => Mode::Following(offset + by),
        };
    }

    /// Stops the clock at `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = Mode::Stopped(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        match *self.mode.lock().unwrap_or_else(PoisonError::into_inner) {
            Mode::Stopped(t) => t,
            Mode::Following(offset) => SystemClock.now() + offset,
        }
    }
}

/// The Italian months, for dates shown to people.
const MONTHS: [&str; 12] = [
    "gennaio",
    "febbraio",
    "marzo",
    "aprile",
    "maggio",
    "giugno",
    "luglio",
    "agosto",
    "settembre",
    "ottobre",
    "novembre",
    "dicembre",
];

/// `t` in Italian civil time (Europe/Rome: CET or CEST, from the tz database).
pub fn rome(t: DateTime<Utc>) -> DateTime<chrono_tz::Tz> {
    t.with_timezone(&chrono_tz::Europe::Rome)
}

/// A calendar date as people in Italy read it: «11 dicembre 2026».
pub fn italian_date(date: chrono::NaiveDate) -> String {
    use chrono::Datelike as _;
    let month = usize::try_from(date.month0())
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or("");
    format!("{} {month} {}", date.day(), date.year())
}

/// Today's date in Italian civil time at `t`.
pub fn rome_today(t: DateTime<Utc>) -> chrono::NaiveDate {
    rome(t).date_naive()
}

/// The first instant of `date` in Italian civil time.
pub fn rome_midnight(date: chrono::NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone as _;
    let naive = date.and_time(chrono::NaiveTime::MIN);
    match chrono_tz::Europe::Rome.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&Utc)
        }
        // Italy never skips midnight; read a gap as UTC midnight rather than fail.
        chrono::LocalResult::None => naive.and_utc(),
    }
}

/// `t` as people in Italy read it: «2 dicembre 2026, 21:05 (ora italiana)».
pub fn italian_date_time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike as _, Timelike as _};
    let local = rome(t);
    let month = usize::try_from(local.month0())
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or("");
    format!(
        "{} {month} {}, {:02}:{:02} (ora italiana)",
        local.day(),
        local.year(),
        local.hour(),
        local.minute()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = ManualClock::at(start);
        assert_eq!(c.now(), start);
        assert_eq!(c.now(), start);
        c.advance(Duration::minutes(31));
        assert_eq!(c.now(), start + Duration::minutes(31));
        c.set(start);
        assert_eq!(c.now(), start);
    }

    #[test]
    fn following_clock_adds_its_offset() {
        let c = ManualClock::following_system();
        let before = Utc::now();
        c.advance(Duration::hours(2));
        let now = c.now();
        assert!(now >= before + Duration::hours(2));
        assert!(now <= Utc::now() + Duration::hours(2));
    }

    #[test]
    fn system_clock_follows_the_wall_clock() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(now >= before);
        assert!(now <= Utc::now());
    }

    #[test]
    fn italian_time_follows_rome_summer_and_winter_time() {
        use chrono::TimeZone as _;
        let winter = Utc.with_ymd_and_hms(2026, 12, 2, 20, 5, 0).unwrap();
        assert_eq!(
            italian_date_time(winter),
            "2 dicembre 2026, 21:05 (ora italiana)"
        );
        let summer = Utc.with_ymd_and_hms(2026, 7, 14, 22, 30, 0).unwrap();
        assert_eq!(
            italian_date_time(summer),
            "15 luglio 2026, 00:30 (ora italiana)"
        );
        // The last Sunday of March 2026: 01:00 UTC is 03:00 CEST.
        let switch = Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap();
        assert_eq!(
            italian_date_time(switch),
            "29 marzo 2026, 03:00 (ora italiana)"
        );
        assert_eq!(rome(winter).date_naive().to_string(), "2026-12-02");
    }
}
