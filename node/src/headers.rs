//! Which request headers an upstream could read as the identity the gateway sets.
//!
//! Pure and free of actix types. The gateway removes every such header a client
//! sent, on every route, before it sets its own: an upstream must be able to trust
//! `X-User-ID`, `X-User-Roles` and `X-Client-ID` as the gateway's word.

/// The identity headers the gateway sets for upstreams, in canonical spelling.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-user-id", "x-user-roles", "x-client-id"];

/// Whether an upstream framework could read the header `name` as one of
/// [`IDENTITY_HEADERS`]: the same name in any case, with any of its `-` written
/// as `_` (`X_User_ID`, `x-user_id`, `X_USER_ROLES`). CGI, WSGI, Rack and PHP put
/// headers in the environment as `HTTP_X_USER_ID`, upper-cased with `-` turned
/// into `_`, so a client's `X_User_ID` lands on the same variable as the
/// gateway's `X-User-ID`. Allocation-free.
pub fn is_identity_header(name: &str) -> bool {
    IDENTITY_HEADERS
        .iter()
        .any(|canonical| same_to_cgi(name.as_bytes(), canonical.as_bytes()))
}

/// `name` equals `canonical` (lower-case, `-`-separated) up to case and `_` for `-`.
fn same_to_cgi(name: &[u8], canonical: &[u8]) -> bool {
    name.len() == canonical.len()
        && name
            .iter()
            .zip(canonical)
            .all(|(&n, &c)| n.to_ascii_lowercase() == c || (n == b'_' && c == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_identity_header() {
        for name in [
            "x-user-id",
            "X-User-ID",
            "X-USER-ID",
            "X_User_ID",
            "x_user_id",
            "x-user_id",
            "x_user-id",
            "X_USER_ROLES",
            "x-user-roles",
            "X-User_Roles",
            "x-client-id",
            "X_Client_Id",
            "X-CLIENT_ID",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn other_headers() {
        for name in [
            "",
            "x-user",
            "x-user-ids",
            "x-user-id ",
            " x-user-id",
            "x-userid",
            "xuser-id",
            "x--user-id",
            "x.user.id",
            "x-user-role",
            "x-client",
            "x-client-secret",
            "x-request-id",
            "authorization",
            "x-api-key",
            // `_` may stand for `-`, not the other way round, nor for letters.
            "x-user-i_",
            "x-user-idx",
        ] {
            assert!(!is_identity_header(name), "{name:?}");
        }
    }

    #[test]
    fn canonical_names_are_lower_case_and_dashed() {
        for name in IDENTITY_HEADERS {
            assert_eq!(name, name.to_ascii_lowercase());
            assert!(!name.contains('_'));
            assert!(is_identity_header(name));
        }
    }
}
