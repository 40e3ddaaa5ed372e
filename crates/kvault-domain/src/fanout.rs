//! Keeping the root cause when tasks run side by side: once one fails, the others are told
//! to stop and end with `Cancelled`; the error worth reporting is the first real one, not
//! those cancellations (and not a user's cancel that raced with a real failure).

use crate::error::{DomainError, DomainResult};

/// The error to report out of several tasks' outcomes.
#[derive(Debug, Default)]
pub struct RootCause(Option<DomainError>);

impl RootCause {
    /// Takes `error` if it is the first, or the first real one after cancellations.
    pub fn record(&mut self, error: DomainError) {
        let replace = match &self.0 {
            None => true,
            Some(DomainError::Cancelled) => !matches!(error, DomainError::Cancelled),
            Some(_) => false,
        };
        if replace {
            self.0 = Some(error);
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The error kept, if any.
    pub fn into_error(self) -> Option<DomainError> {
        self.0
    }
}

/// Every task's value, or the root cause when any failed.
pub fn all_or_root_cause<T>(outcomes: Vec<DomainResult<T>>) -> DomainResult<Vec<T>> {
    let mut values = Vec::with_capacity(outcomes.len());
    let mut cause = RootCause::default();
    for outcome in outcomes {
        match outcome {
            Ok(value) => values.push(value),
            Err(e) => cause.record(e),
        }
    }
    match cause.into_error() {
        Some(e) => Err(e),
        None => Ok(values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_error_wins_over_the_cancellations_it_caused_in_any_order() {
        for order in [[0, 1, 2], [1, 0, 2], [1, 2, 0]] {
            let outcomes: Vec<DomainResult<i32>> = order
                .iter()
                .map(|i| match i {
                    0 => Err(DomainError::kafka("broker said no")),
                    _ => Err(DomainError::Cancelled),
                })
                .collect();
            let err = all_or_root_cause(outcomes).expect_err("failed");
            assert!(
                err.to_string().contains("broker said no"),
                "{order:?}: {err}"
            );
        }
        let only_cancelled: Vec<DomainResult<i32>> = vec![Ok(1), Err(DomainError::Cancelled)];
        assert!(matches!(
            all_or_root_cause(only_cancelled),
            Err(DomainError::Cancelled)
        ));
        assert_eq!(
            all_or_root_cause::<i32>(vec![Ok(1), Ok(2)]).unwrap(),
            vec![1, 2]
        );
    }
}
