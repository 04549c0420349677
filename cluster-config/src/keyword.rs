//! Settings written as one of a fixed set of words (`auth: jwt`, `scope: ip`,
//! `alg: RS256`, `log.format: json`).
//!
//! The schema keeps them as text so a bad word is reported by validation together
//! with every other error of its entry (a serde enum would fail the whole entry at
//! the first bad word). The compiled config holds enums defined with
//! [`keywords!`], whose one table of `Variant = "word"` pairs gives both directions,
//! so `parse` and `as_str` can never drift apart.

/// Defines a fieldless enum of config words. Generates `ALL` (in the order the
/// accepted words are listed in errors), `parse` (exact, case-sensitive),
/// `as_str`, `Display`, and the crate-internal `expected()` used in error messages.
macro_rules! keywords {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in the order errors list the accepted words.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant written as `word` (exact match; callers trim).
            pub fn parse(word: &str) -> Option<$name> {
                match word {
                    $( $word => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The word config uses for this variant (`parse(v.as_str()) == Some(v)`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }

            /// The accepted words for an error message: `a, b or c`.
            pub(crate) fn expected() -> String {
                $crate::keyword::one_of(Self::ALL.iter().map(|v| v.as_str()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// `a`, `a or b`, `a, b or c`.
pub(crate) fn one_of<'a>(words: impl Iterator<Item = &'a str>) -> String {
    let words: Vec<&str> = words.collect();
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The error for a word that is not one of `expected` (from `T::expected()`):
/// `unknown auth mode "oauth" (expected none, jwt, api_key or any)`.
pub(crate) fn unknown(what: &str, word: &str, expected: &str) -> String {
    format!("unknown {what} {word:?} (expected {expected})")
}

#[cfg(test)]
mod tests {
    use super::one_of;
    use crate::{AuthMode, JwtAlg, LogFormat, RateLimitAlgorithm, RateLimitScope};

    #[test]
    fn lists_read_as_english() {
        assert_eq!(one_of([].into_iter()), "");
        assert_eq!(one_of(["a"].into_iter()), "a");
        assert_eq!(one_of(["a", "b"].into_iter()), "a or b");
        assert_eq!(one_of(["a", "b", "c"].into_iter()), "a, b or c");
    }

    /// Every word parses back to its variant, and nothing else parses.
    #[test]
    fn words_round_trip() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            parse: fn(&str) -> Option<T>,
            as_str: fn(T) -> &'static str,
        ) {
            for &v in all {
                assert_eq!(parse(as_str(v)), Some(v));
                assert_eq!(
                    parse(&as_str(v).to_ascii_uppercase().replace('_', "-")),
                    None
                );
            }
            assert_eq!(parse(""), None);
        }
        check(AuthMode::ALL, AuthMode::parse, AuthMode::as_str);
        check(
            RateLimitScope::ALL,
            RateLimitScope::parse,
            RateLimitScope::as_str,
        );
        check(
            RateLimitAlgorithm::ALL,
            RateLimitAlgorithm::parse,
            RateLimitAlgorithm::as_str,
        );
        check(LogFormat::ALL, LogFormat::parse, LogFormat::as_str);
        for &alg in JwtAlg::ALL {
            assert_eq!(JwtAlg::parse(alg.as_str()), Some(alg));
            assert_eq!(JwtAlg::parse(&alg.as_str().to_ascii_lowercase()), None);
        }
        assert_eq!(AuthMode::expected(), "none, jwt, api_key or any");
        assert_eq!(
            JwtAlg::expected(),
            "RS256, RS384, RS512, ES256, HS256, HS384 or HS512"
        );
        assert!(JwtAlg::ALL
            .iter()
            .all(|a| [a.is_hmac(), a.is_rsa(), a.is_ec()]
                .iter()
                .filter(|&&f| f)
                .count()
                == 1));
        assert_eq!(LogFormat::expected(), "json or pretty");
        assert_eq!(RateLimitScope::Client.to_string(), "client");
    }
}
