//! Request-path normalisation: the one path the gateway routes on, rate-limits on
//! and forwards, so that no spelling of a path reaches a route its canonical form
//! would not match (`/static/../api/v1/users/1` must not ride the public
//! `/static/*` route to the protected `/api/v1/users/:id`).
//!
//! Pure and free of actix types (the hyper listener for gRPC will reuse it). The
//! input is the request path as received, without the query (the caller strips
//! everything from the first `?`; a `?` that reaches this module is an ordinary
//! character).
//!
//! # Rules (the contract)
//!
//! 1. **Shape.** The path must start with `/`; the empty path is refused too.
//!    A raw backslash anywhere is refused (Windows servers and some frameworks
//!    treat it as `/`). Both are [`PathError::Malformed`].
//! 2. **Percent-escapes.** Every `%` must start an escape of two hex digits, else
//!    [`PathError::Malformed`] (`%zz`, `%4`, `%` at the end). Escapes of
//!    unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) are decoded
//!    (`%41` → `A`, `%7e` → `~`, `%2e` → `.`); every other escape is kept, with
//!    its hex digits upper-cased (`%3a` → `%3A`), as RFC 3986 §6.2.2 does. Nothing
//!    is decoded twice: `%252e` stays `%252e`.
//! 3. **Encoded slashes.** A path containing `%2F` or `%5C` (any case) is
//!    [`PathError::EncodedSlash`], which the caller answers with 400 unless the
//!    route sets `allow_encoded_slashes` (Envoy's
//!    `path_with_escaped_slashes_action: REJECT_REQUEST`). Such an escape is never
//!    decoded, so it never splits or joins segments: for a route that allows
//!    them, [`normalize_keeping_encoded_slashes`] gives the path to route on
//!    (`/static/..%2Fapi` stays one segment, `..%2Fapi`).
//! 4. **Segments.** After decoding, the path is read segment by segment (between
//!    `/`s), like a POSIX path and nginx's `merge_slashes`:
//!    an empty segment (`//`) is dropped; `.` is dropped; `..` drops the segment
//!    before it and never climbs above the root (`/..` → `/`). This is RFC 3986
//!    §5.2.4 dot-segment removal on the path with its repeated slashes merged
//!    first, so `/a//../b` is `/b` (merging after dot removal would give `/a/b`).
//!    A path ending in `/`, `/.` or `/..` ends in `/` (`/a/b/..` → `/a/`, as in
//!    RFC 3986 §5.4.1 and Envoy; `/a/` → `/a/`), except the root, which is `/`.
//! 5. **Path parameters.** A segment that is `.` or `..` followed by `;`
//!    (`/..;/admin`, also when the dots were escaped) is
//!    [`PathError::Malformed`]: Tomcat and Spring strip `;params` and then treat it
//!    as `..`, a known way around path-based rules. Other `;` are ordinary
//!    characters.
//!
//! Malformed wins over an encoded slash: a path that is both is `Malformed`. The
//! result is a fixed point: normalising it again changes nothing.
//!
//! A path with no `%`, no `.`/`..` segment and no `//` (what clients send almost
//! always) is returned as [`Cow::Borrowed`] after one allocation-free scan; so is a
//! path whose only escapes are already canonical (upper-case, not unreserved).

use std::borrow::Cow;
use std::fmt;

/// Why a request path is refused. Both are 400 for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%2F` or `%5C` (any case): refused unless the route allows encoded slashes.
    EncodedSlash,
    /// Not a path the gateway can give one meaning: no leading `/`, a raw `\`, a
    /// bad percent-escape, or a dot segment with `;` parameters.
    Malformed,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::EncodedSlash => {
                "the path contains an encoded slash or backslash (%2F or %5C)"
            }
            PathError::Malformed => {
                "the path is malformed (it must start with \"/\", every \"%\" must start \
                 a two-digit hex escape, and it must not contain \"\\\" or a \"..;\" segment)"
            }
        })
    }
}

impl std::error::Error for PathError {}

/// The canonical form of `raw` (see the module docs for the rules), or why it is
/// refused. Borrows `raw` when it is already canonical.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let (path, encoded_slash) = normalize_inner(raw)?;
    if encoded_slash {
        return Err(PathError::EncodedSlash);
    }
    Ok(path)
}

/// Like [`normalize`], but a path with `%2F`/`%5C` is normalised rather than
/// refused (those escapes stay as they are, upper-cased). For the caller that got
/// [`PathError::EncodedSlash`]: route on this path, and answer 400 unless the
/// route allows encoded slashes.
pub fn normalize_keeping_encoded_slashes(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalize_inner(raw).map(|(path, _)| path)
}

/// The normalised path and whether it holds an encoded slash.
fn normalize_inner(raw: &str) -> Result<(Cow<'_, str>, bool), PathError> {
    let scan = scan(raw)?;
    let path = if scan.rewrite {
        Cow::Owned(rewrite(raw)?)
    } else {
        Cow::Borrowed(raw)
    };
    Ok((path, scan.encoded_slash))
}

#[derive(Default)]
struct Scan {
    /// Something must change: a decodable or lower-case escape, `//`, a dot segment.
    rewrite: bool,
    encoded_slash: bool,
}

/// One pass over `raw` without allocating: finds every error that does not need
/// decoding to be seen, and whether the path needs rewriting.
fn scan(raw: &str) -> Result<Scan, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::Malformed);
    }
    let mut scan = Scan::default();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Malformed),
            b'%' => {
                let (hi, lo) = escape_at(bytes, i)?;
                if is_slash_escape(hi, lo) {
                    scan.encoded_slash = true;
                }
                if is_unreserved(hex_value(hi) << 4 | hex_value(lo))
                    || hi.is_ascii_lowercase()
                    || lo.is_ascii_lowercase()
                {
                    scan.rewrite = true;
                }
                i += 3;
                continue;
            }
            b'/' => match dot_segment(&bytes[i + 1..]) {
                Dot::Param => return Err(PathError::Malformed),
                Dot::Empty | Dot::One | Dot::Two => scan.rewrite = true,
                Dot::None => {}
            },
            _ => {}
        }
        i += 1;
    }
    Ok(scan)
}

/// What the segment at the start of `rest` (up to the next `/`) is, as written.
enum Dot {
    /// Empty and followed by another `/` (`//`).
    Empty,
    /// `.`
    One,
    /// `..`
    Two,
    /// `.;…` or `..;…`
    Param,
    /// Anything else, including the empty last segment of a path ending in `/`.
    None,
}

fn dot_segment(rest: &[u8]) -> Dot {
    let end = |at: usize| matches!(rest.get(at), None | Some(b'/'));
    match rest {
        [b'/', ..] => Dot::Empty,
        [b'.', b'.', ..] if end(2) => Dot::Two,
        [b'.', b'.', b';', ..] | [b'.', b';', ..] => Dot::Param,
        [b'.', ..] if end(1) => Dot::One,
        _ => Dot::None,
    }
}

/// The canonical path, built segment by segment (the slow path).
fn rewrite(raw: &str) -> Result<String, PathError> {
    // `out` holds "/seg" per kept segment; "" is the root.
    let mut out = String::with_capacity(raw.len());
    let mut segment = String::new();
    let mut trailing_slash = false;
    let mut segments = raw[1..].split('/').peekable();
    while let Some(written) = segments.next() {
        let last = segments.peek().is_none();
        segment.clear();
        decode_into(written, &mut segment)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => out.truncate(out.rfind('/').unwrap_or(0)),
            s if s.starts_with(".;") || s.starts_with("..;") => return Err(PathError::Malformed),
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
        if last {
            trailing_slash = matches!(segment.as_str(), "" | "." | "..");
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Appends `written` to `out` with unreserved escapes decoded and the others
/// upper-cased.
fn decode_into(written: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = written.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        out.push_str(&written[copied..i]);
        let (hi, lo) = escape_at(bytes, i)?;
        let value = hex_value(hi) << 4 | hex_value(lo);
        if is_unreserved(value) {
            out.push(char::from(value));
        } else {
            out.push('%');
            out.push(char::from(hi.to_ascii_uppercase()));
            out.push(char::from(lo.to_ascii_uppercase()));
        }
        i += 3;
        copied = i;
    }
    out.push_str(&written[copied..]);
    Ok(())
}

/// The two hex digits of the escape whose `%` is at `i`.
fn escape_at(bytes: &[u8], i: usize) -> Result<(u8, u8), PathError> {
    match (bytes.get(i + 1), bytes.get(i + 2)) {
        (Some(&hi), Some(&lo)) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => Ok((hi, lo)),
        _ => Err(PathError::Malformed),
    }
}

/// The value of an ASCII hex digit (callers have checked it is one).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// `%2F`/`%5C` in any case.
fn is_slash_escape(hi: u8, lo: u8) -> bool {
    matches!((hi, lo.to_ascii_uppercase()), (b'2', b'F') | (b'5', b'C'))
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `raw` contains `%2F` or `%5C`, in any case (the tests' oracle for
/// what [`normalize`] must refuse).
#[cfg(test)]
fn has_encoded_slash(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && is_slash_escape(w[1], w[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn normal(raw: &str, want: &str) {
        match normalize(raw) {
            Ok(got) => assert_eq!(got, want, "normalize({raw:?})"),
            Err(e) => panic!("normalize({raw:?}) refused: {e:?}"),
        }
    }

    #[track_caller]
    fn refused(raw: &str, want: PathError) {
        assert_eq!(normalize(raw), Err(want), "normalize({raw:?})");
    }

    #[track_caller]
    fn borrowed(raw: &str) {
        match normalize(raw) {
            Ok(Cow::Borrowed(p)) => assert_eq!(p, raw),
            other => panic!("normalize({raw:?}) = {other:?}, expected it borrowed"),
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for raw in [
            "/",
            "/api/v1/users/1",
            "/api/v1/users/",
            "/a.b/c..d/...",
            "/.well-known/jwks.json",
            "/a/.hidden/..x/x..",
            "/%20/%3A%C3%A9",
            "/a;b/c;d=1",
            "/café",
        ] {
            borrowed(raw);
        }
    }

    #[test]
    fn dot_segments() {
        normal("/static/../api/v1/users/1", "/api/v1/users/1");
        normal("/a/./b", "/a/b");
        normal("/a/b/../c", "/a/c");
        normal("/a/b/c/../../d", "/a/d");
        normal("/..", "/");
        normal("/../..", "/");
        normal("/../a", "/a");
        normal("/a/../../b", "/b");
        normal("/.", "/");
        normal("/./", "/");
        // A final `.`/`..` leaves the directory it names: a trailing slash (RFC 3986
        // §5.2.4, as Envoy and nginx do).
        normal("/api/v1/users/..", "/api/v1/");
        normal("/a/.", "/a/");
        normal("/a/b/./", "/a/b/");
        normal("/a/b/../", "/a/");
        // Not dot segments.
        borrowed("/a/.../b");
        borrowed("/a/..b/.c/c./b..");
    }

    #[test]
    fn encoded_dots_are_dots() {
        for dots in ["%2e%2e", "%2E%2E", ".%2e", "%2e.", ".%2E", "%2E."] {
            normal(&format!("/static/{dots}/api/v1/users/1"), "/api/v1/users/1");
            normal(&format!("/api/v1/users/{dots}"), "/api/v1/");
        }
        for dot in ["%2e", "%2E"] {
            normal(&format!("/a/{dot}/b"), "/a/b");
            normal(&format!("/a/{dot}"), "/a/");
        }
        normal("/static/%2e%2e/api", "/api");
        // `%2e%2e%2e` is `...`: an ordinary segment, decoded.
        normal("/a/%2e%2e%2e", "/a/...");
        // Decoded once only: `%252e` is a `%25` escape and the text `2e`.
        borrowed("/static/%252e%252e/api");
    }

    #[test]
    fn repeated_slashes_merge() {
        normal("/a//b", "/a/b");
        normal("//a", "/a");
        normal("/a///b//", "/a/b/");
        normal("//", "/");
        normal("///", "/");
        // Merged before dots are resolved, as a POSIX path: `..` climbs over `a`.
        normal("/a//../b", "/b");
        normal("/a/.//b", "/a/b");
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        normal("/%41", "/A");
        normal("/%7e", "/~");
        normal("/%7E", "/~");
        normal("/u%73ers/%31", "/users/1");
        normal("/%2D%5f%2E%30%7A%5A", "/-_.0zZ");
    }

    #[test]
    fn other_escapes_are_kept_upper_cased() {
        normal("/a%3ab", "/a%3Ab");
        normal("/%c3%a9", "/%C3%A9");
        normal("/%20%3f%23", "/%20%3F%23");
        borrowed("/%25");
        normal("/%41%3a%42", "/A%3AB");
    }

    #[test]
    fn encoded_slashes_are_refused() {
        for raw in [
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a%5Cb",
            "/static/..%2Fapi/v1/users/1",
            "/static/%2e%2e%2fapi",
            "/%2F",
        ] {
            refused(raw, PathError::EncodedSlash);
            assert!(has_encoded_slash(raw), "{raw}");
        }
        assert!(!has_encoded_slash("/a/b%2"));
        assert!(!has_encoded_slash("/a%252Fb"), "%25 then the text 2F");
        normal("/a%252Fb/../c", "/c");
    }

    /// The route that allows encoded slashes still gets a canonical path, with the
    /// escape inside its segment: `..%2F` never climbs.
    #[test]
    fn encoded_slashes_kept_for_routes_that_allow_them() {
        let keep = |raw| normalize_keeping_encoded_slashes(raw).map(|p| p.into_owned());
        assert_eq!(keep("/a%2fb"), Ok("/a%2Fb".to_owned()));
        assert_eq!(
            keep("/static/..%2Fapi/v1/users/1"),
            Ok("/static/..%2Fapi/v1/users/1".to_owned())
        );
        assert_eq!(keep("/x/%5c/../y"), Ok("/x/y".to_owned()));
        assert_eq!(keep("/a//%2F"), Ok("/a/%2F".to_owned()));
        assert_eq!(keep("/a%2Fb"), Ok("/a%2Fb".to_owned()));
        assert!(matches!(
            normalize_keeping_encoded_slashes("/a%2Fb"),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(keep("/a%2f%zz"), Err(PathError::Malformed));
    }

    #[test]
    fn malformed_paths() {
        for raw in [
            "",
            "a/b",
            "*",
            "?a=1",
            "/%zz",
            "/%",
            "/a%",
            "/a%4",
            "/a%4g",
            "/%%41",
            "/a\\b",
            "\\a",
            "/..\\a",
            "/..;/admin",
            "/.;/admin",
            "/static/..;jsessionid=1/api",
            "/%2e%2e;/admin",
            "/.%2e;x",
            "/a/..;",
        ] {
            refused(raw, PathError::Malformed);
            assert_eq!(
                normalize_keeping_encoded_slashes(raw),
                Err(PathError::Malformed),
                "{raw:?}"
            );
        }
        // Malformed wins over an encoded slash, wherever each is.
        refused("/a%2F/%zz", PathError::Malformed);
        refused("/%zz/a%2F", PathError::Malformed);
        refused("/a%2F/..;/b", PathError::Malformed);
        refused("/a%2F/%2e%2e;/b", PathError::Malformed);
        // `;` elsewhere is an ordinary character.
        borrowed("/a/..x;/b;c/;");
    }

    /// The caller strips the query; a `?` that gets here is just a character.
    #[test]
    fn question_mark_is_ordinary() {
        borrowed("/a?b=1");
        // Which is why the caller must strip the query first: here `b?c=` is a
        // segment, and the `..` after it removes it.
        normal("/a/../b?c=/../d", "/d");
    }

    #[test]
    fn errors_read_as_messages() {
        assert!(PathError::EncodedSlash.to_string().contains("%2F"));
        assert!(PathError::Malformed.to_string().contains("malformed"));
    }

    /// Every path over a small alphabet of troublesome pieces, up to four pieces:
    /// the result is canonical, a fixed point, and borrowed exactly when unchanged.
    #[test]
    fn results_are_canonical_fixed_points() {
        const PIECES: &[&str] = &[
            "/", ".", "..", "%2e", "%2E", "a", "%41", "%3a", "%2F", "%5c", ";", "%", "\\", "~",
        ];
        let mut paths = vec![String::from("/")];
        let mut start = 0;
        for _ in 0..4 {
            let end = paths.len();
            for i in start..end {
                for piece in PIECES {
                    let next = format!("{}{piece}", paths[i]);
                    paths.push(next);
                }
            }
            start = end;
        }
        let mut checked = 0;
        for raw in &paths {
            let Ok(out) = normalize_keeping_encoded_slashes(raw) else {
                assert_eq!(normalize(raw), Err(PathError::Malformed), "{raw:?}");
                continue;
            };
            checked += 1;
            let canonical = out.as_ref();
            assert!(canonical.starts_with('/'), "{raw:?} -> {canonical:?}");
            assert!(!canonical.contains("//"), "{raw:?} -> {canonical:?}");
            assert!(
                !canonical.split('/').any(|s| s == "." || s == ".."),
                "{raw:?} -> {canonical:?}"
            );
            assert_eq!(
                normalize_keeping_encoded_slashes(canonical).as_deref(),
                Ok(canonical),
                "not a fixed point: {raw:?} -> {canonical:?}"
            );
            assert!(
                matches!(
                    normalize_keeping_encoded_slashes(canonical),
                    Ok(Cow::Borrowed(_))
                ),
                "canonical {canonical:?} was rewritten"
            );
            if let Cow::Owned(o) = &out {
                assert_ne!(o, raw, "allocated for an unchanged path");
            }
            match normalize(raw) {
                Ok(p) => {
                    assert!(!has_encoded_slash(raw));
                    assert_eq!(p, canonical);
                }
                Err(e) => {
                    assert_eq!(e, PathError::EncodedSlash, "{raw:?}");
                    assert!(has_encoded_slash(raw), "{raw:?}");
                }
            }
        }
        assert!(checked > 1000, "only {checked} paths were valid");
    }
}
