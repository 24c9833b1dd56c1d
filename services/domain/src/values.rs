//! Ids and values that validate on construction.

use std::fmt;

use uuid::Uuid;

use crate::DomainError;

macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUID v7).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(OrgId, "An organisation's id: the tenant boundary.");
id_type!(AdminId, "An administrator's id.");

/// An email address, trimmed and lower-cased so that one mailbox is one admin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, DomainError> {
        let s = raw.trim().to_lowercase();
        let invalid = |why: &str| DomainError::invalid("email", why);
        if s.is_empty() || s.len() > 254 {
            return Err(invalid(
                "must be an email address of at most 254 characters",
            ));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(invalid("must be an email address like name@example.com"));
        };
        let ok_chars = |p: &str| {
            p.chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '@')
        };
        if local.is_empty()
            || local.len() > 64
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || !ok_chars(local)
            || !ok_chars(domain)
            || s.contains(['<', '>', ',', ';', '"', '\\'])
        {
            return Err(invalid("must be an email address like name@example.com"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn text(field: &'static str, raw: &str, max: usize) -> Result<String, DomainError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            &format!("must be at most {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// A first or last name: 1 to 100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(field: &'static str, raw: &str) -> Result<PersonName, DomainError> {
        text(field, raw, 100).map(PersonName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organisation's name: 1 to 200 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(raw: &str) -> Result<OrgName, DomainError> {
        text("name", raw, 200).map(OrgName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_validated() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").expect("valid").as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@example",
            "a@b@c.com",
            "x<y@z.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("first_name", " Ada ")
                .expect("valid")
                .as_str(),
            "Ada"
        );
        assert!(PersonName::parse("first_name", "  ").is_err());
        assert!(PersonName::parse("first_name", &"x".repeat(101)).is_err());
        assert!(OrgName::parse("Acme\u{7}").is_err());
    }
}
