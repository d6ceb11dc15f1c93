//! [`Redacted`]: a value that `Debug` does not show.

/// A value that `Debug` prints as `<redacted>` (a signing key, a secret), so that a type
/// holding one can derive `Debug` without leaking it into logs.
#[derive(Clone)]
pub struct Redacted<T>(pub T);

impl<T> std::fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let shown = format!("{:?}", Redacted("hunter2"));
        assert_eq!(shown, "<redacted>");
    }
}
