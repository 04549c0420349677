//! Why a request was refused. Its own file so the JWT fuzz target
//! (`fuzz/fuzz_targets/jwt.rs`) can compile `jwt.rs` beside it.

/// Why a request was refused, as the `reason` label of
/// `gateway_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKey,
    BadClaims,
    Revoked,
    Forbidden,
    Malformed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::BadClaims => "bad_claims",
            Reason::Revoked => "revoked",
            Reason::Forbidden => "forbidden",
            Reason::Malformed => "malformed",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Reason::Missing => "this route needs a credential (Authorization: Bearer or X-API-Key)",
            Reason::Expired => "the token has expired",
            Reason::NotYetValid => "the token is not valid yet",
            Reason::BadSignature => "the token's signature does not verify",
            Reason::UnknownKey => "the credential names no key this gateway knows",
            Reason::BadClaims => "the token's claims are not accepted here",
            Reason::Revoked => "the credential has been revoked",
            Reason::Forbidden => "the caller lacks a role this route requires",
            Reason::Malformed => "the credential is malformed",
        }
    }
}
