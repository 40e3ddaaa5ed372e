//! [`HeaderNames`]: the header names of one block, as text, each distinct name kept once as
//! long as the names repeat (they do: a topic's records mostly carry the same few headers).
//! A name is checked to be UTF-8 once, when it is first seen; lending it out as `&str` later
//! costs no check (before, every read of a header name re-checked it: ~3% of a restore's CPU).

use super::Span;

/// Names recently added, looked up before a name is checked and stored again.
const RECENT: usize = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct HeaderNames {
    text: String,
    /// Spans of the last few distinct names added, oldest first.
    recent: Vec<Span>,
}

impl HeaderNames {
    /// The span of `name` (bytes that must be UTF-8) in the text, adding it if it is new.
    pub(super) fn intern_bytes(&mut self, name: &[u8]) -> Result<Span, std::str::Utf8Error> {
        if let Some(span) = self.find(name) {
            return Ok(span);
        }
        Ok(self.add(std::str::from_utf8(name)?))
    }

    /// The span of `name` in the text, adding it if it is new.
    pub(super) fn intern(&mut self, name: &str) -> Span {
        match self.find(name.as_bytes()) {
            Some(span) => span,
            None => self.add(name),
        }
    }

    /// The name at `span` ("" for a span this text never handed out, which cannot happen).
    pub(super) fn get(&self, span: Span) -> &str {
        self.text
            .get(span.start as usize..(span.start + span.len) as usize)
            .unwrap_or_default()
    }

    fn find(&self, name: &[u8]) -> Option<Span> {
        self.recent
            .iter()
            .rev()
            .copied()
            .find(|span| self.get(*span).as_bytes() == name)
    }

    fn add(&mut self, name: &str) -> Span {
        // Names come from records below 2 GiB each, in blocks far below 4 GiB.
        let span = Span {
            start: self.text.len() as u32,
            len: name.len() as u32,
        };
        self.text.push_str(name);
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push(span);
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_are_stored_once_and_read_back_as_given() {
        let mut names = HeaderNames::default();
        let a = names.intern_bytes(b"tenant").unwrap();
        let b = names.intern("trace-id");
        assert_eq!(names.intern_bytes(b"tenant").unwrap(), a);
        assert_eq!(names.intern("trace-id"), b);
        let empty = names.intern("");
        assert_eq!(
            (names.get(a), names.get(b), names.get(empty)),
            ("tenant", "trace-id", "")
        );
        assert_eq!(names.text.len(), "tenant".len() + "trace-id".len());
    }

    #[test]
    fn many_distinct_names_all_survive_and_bad_utf8_is_refused() {
        let mut names = HeaderNames::default();
        let spans: Vec<(String, Span)> = (0..50)
            .map(|i| {
                let name = format!("h-{i}-\u{e9}");
                let span = names.intern_bytes(name.as_bytes()).unwrap();
                (name, span)
            })
            .collect();
        for (name, span) in &spans {
            assert_eq!(names.get(*span), name);
        }
        assert!(names.intern_bytes(b"bad\xff").is_err());
        assert!(names.recent.len() <= RECENT);
    }
}
