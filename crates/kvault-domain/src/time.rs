//! How instants appear in responses and job records: RFC 3339 in UTC with whole seconds
//! (`2024-01-15T10:30:00Z`), as the API documentation shows them, the same in every response.
//! Reading accepts any RFC 3339 precision, so stored records and older clients still parse.
//! Archive manifests on disk keep their full precision (they are a file format, not a
//! response).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The response form of `instant`.
pub fn format(instant: &DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `#[serde(with = "kvault_domain::time::rfc3339_seconds")]`
pub mod rfc3339_seconds {
    use super::*;

    pub fn serialize<S: Serializer>(instant: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(instant))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

/// The same for an optional instant (`null` when absent).
pub mod rfc3339_seconds_option {
    use super::*;

    pub fn serialize<S: Serializer>(
        instant: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match instant {
            Some(instant) => s.serialize_str(&format(instant)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct At {
        #[serde(with = "rfc3339_seconds")]
        at: DateTime<Utc>,
        #[serde(with = "rfc3339_seconds_option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn responses_show_whole_seconds_and_reading_takes_any_precision() {
        let at: DateTime<Utc> = "2026-11-28T10:00:00.123456789Z".parse().unwrap();
        let json = serde_json::to_value(At {
            at,
            maybe: Some(at),
        })
        .unwrap();
        assert_eq!(json["at"], "2026-11-28T10:00:00Z");
        assert_eq!(json["maybe"], "2026-11-28T10:00:00Z");
        let back: At =
            serde_json::from_str(r#"{"at":"2026-11-28T10:00:00.123456789Z","maybe":null}"#)
                .unwrap();
        assert_eq!(back.at, at);
        assert!(back.maybe.is_none());
    }
}
