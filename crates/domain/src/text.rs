//! Validated text fields. Each `parse` returns a [`FieldError`] naming the field, in the
//! words the API sends back (`"username can't be blank"`).

use std::fmt;

/// A validation failure of one field: the field's name and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    /// The field's name as the API spells it (`username`, `email`, `title`...).
    pub field: &'static str,
    /// What is wrong, phrased to follow the field name (`can't be blank`).
    pub problem: String,
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

fn required(field: &'static str, s: &str, max_chars: usize) -> Result<String, FieldError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(FieldError::new(field, "can't be blank"));
    }
    if t.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("is too long (maximum is {max_chars} characters)"),
        ));
    }
    Ok(t.to_string())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The text, consuming self.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// A username: 1–40 letters, digits, `_` or `-`. Unique regardless of case.
    Username
);
text_newtype!(
    /// An email address, stored lower-cased; unique.
    Email
);
text_newtype!(
    /// A tag: trimmed, 1–40 characters, no commas.
    Tag
);

impl Username {
    /// Validates a username.
    ///
    /// # Errors
    /// Blank, too long, or a character other than letters, digits, `_` and `-`.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = required("username", s, 40)?;
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(FieldError::new(
                "username",
                "may only contain letters, digits, _ and -",
            ));
        }
        Ok(Self(t))
    }
}

impl Email {
    /// Validates an email address: one `@` with text on both sides and a dot in the domain.
    ///
    /// # Errors
    /// Blank, too long or not shaped like an address.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = required("email", s, 254)?.to_lowercase();
        let ok = match t.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !t.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if !ok {
            return Err(FieldError::new("email", "is invalid"));
        }
        Ok(Self(t))
    }
}

impl Tag {
    /// Validates a tag.
    ///
    /// # Errors
    /// Blank, longer than 40 characters, or holding a comma.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = required("tagList", s, 40)?;
        if t.contains(',') {
            return Err(FieldError::new("tagList", "entries may not contain commas"));
        }
        Ok(Self(t))
    }
}

/// A password as typed: 8–256 characters. Never printed by `Debug`.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// Validates a new password.
    ///
    /// # Errors
    /// Blank, shorter than 8 or longer than 256 characters.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() {
            return Err(FieldError::new("password", "can't be blank"));
        }
        let n = s.chars().count();
        if n < 8 {
            return Err(FieldError::new(
                "password",
                "is too short (minimum is 8 characters)",
            ));
        }
        if n > 256 {
            return Err(FieldError::new(
                "password",
                "is too long (maximum is 256 characters)",
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// The password's text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Validated free text of an article or comment field: trimmed, non-blank, bounded.
pub struct Text;

impl Text {
    /// Validates a required field with at most `max_chars` characters.
    ///
    /// # Errors
    /// Blank or too long.
    pub fn required(field: &'static str, s: &str, max_chars: usize) -> Result<String, FieldError> {
        required(field, s, max_chars)
    }

    /// Validates an optional field that may be empty, with at most `max_chars` characters.
    ///
    /// # Errors
    /// Too long.
    pub fn optional(field: &'static str, s: &str, max_chars: usize) -> Result<String, FieldError> {
        if s.chars().count() > max_chars {
            return Err(FieldError::new(
                field,
                format!("is too long (maximum is {max_chars} characters)"),
            ));
        }
        Ok(s.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames_allow_letters_digits_underscore_and_dash() {
        assert_eq!(
            Username::parse(" celeb_u-1 ").unwrap().as_str(),
            "celeb_u-1"
        );
        assert_eq!(
            Username::parse("").unwrap_err().to_string(),
            "username can't be blank"
        );
        assert!(Username::parse("has space").is_err());
        assert!(Username::parse("slash/").is_err());
        assert!(Username::parse(&"a".repeat(41)).is_err());
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse("Jake@Example.COM").unwrap().as_str(),
            "jake@example.com"
        );
        for bad in [
            "",
            "jake",
            "jake@",
            "@x.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn passwords_hide_in_debug_output() {
        let p = Password::parse("correct horse").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
        assert!(Password::parse("short").is_err());
    }

    #[test]
    fn tags_reject_commas_and_blanks() {
        assert_eq!(Tag::parse(" dragons ").unwrap().as_str(), "dragons");
        assert!(Tag::parse("a,b").is_err());
        assert!(Tag::parse("  ").is_err());
    }

    proptest! {
        #[test]
        fn parsed_usernames_only_hold_allowed_characters(s in "\\PC{0,50}") {
            if let Ok(u) = Username::parse(&s) {
                prop_assert!(u.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                prop_assert!(!u.as_str().is_empty() && u.as_str().len() <= 40);
            }
        }
    }
}
