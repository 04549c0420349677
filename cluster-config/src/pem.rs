//! What kind of public key a PEM text holds, so that `sluice validate` refuses a key
//! of the wrong kind (an EC key for RS256, a P-384 key for ES256, a 1024-bit RSA
//! key, a private key pasted into replicated config) instead of every token failing
//! at runtime.
//!
//! Only what telling keys apart needs is parsed: the PEM label, the base64 body, and
//! the DER of a `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7) down to its algorithm
//! and curve OIDs and an RSA modulus length. Nothing here verifies anything; the
//! runtime key loader (jsonwebtoken) parses the key fully.

/// A public key as far as JWT verification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// RSA, with its modulus length.
    Rsa { bits: usize },
    /// EC on a named curve (`P-256` …), or `None` for a curve not named here.
    Ec { curve: Option<&'static str> },
    /// Another algorithm (Ed25519, RSASSA-PSS-only …), by name when known.
    Other { algorithm: Option<&'static str> },
}

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// Named curves of id-ecPublicKey keys (RFC 5480 §2.1.1.1).
const CURVES: &[(&[u8], &str)] = &[
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], "P-256"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x22], "P-384"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
];
/// Other key algorithms an operator might plausibly hand us.
const OTHER_ALGORITHMS: &[(&[u8], &str)] = &[
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a],
        "RSASSA-PSS",
    ),
    (&[0x2b, 0x65, 0x70], "Ed25519"),
    (&[0x2b, 0x65, 0x71], "Ed448"),
    (&[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "DSA"),
];

/// The public key in the first PEM block of `text`. The error completes a sentence
/// whose subject is the key (`"is a private key …"`).
pub(crate) fn public_key(text: &str) -> Result<PublicKey, String> {
    let (label, body) = first_block(text)?;
    if label.contains("PRIVATE KEY") {
        return Err(format!(
            "is a private key (-----BEGIN {label}-----); configure the public key: this \
             config is replicated to every node and returned by the admin API"
        ));
    }
    let der = base64_decode(body).ok_or("has a PEM body that is not valid base64")?;
    let malformed = || format!("is not a well-formed {label} (its DER does not parse)");
    match label {
        // PKCS#1 RSAPublicKey: SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
        "RSA PUBLIC KEY" => rsa_bits(&der).map(|bits| PublicKey::Rsa { bits }),
        // SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { OID, params }, BIT STRING }.
        "PUBLIC KEY" => spki(&der),
        _ => {
            return Err(format!(
                "holds a {label}, not a public key (expected -----BEGIN PUBLIC KEY-----)"
            ))
        }
    }
    .ok_or_else(malformed)
}

/// The label and base64 body of the first `-----BEGIN X-----` … `-----END X-----`.
fn first_block(text: &str) -> Result<(&str, &str), String> {
    let start = text
        .find("-----BEGIN ")
        .ok_or("is not PEM text (no -----BEGIN line)")?;
    let after = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = after
        .split_once("-----")
        .ok_or("has a malformed -----BEGIN line")?;
    let end = format!("-----END {label}-----");
    let body_end = rest
        .find(&end)
        .ok_or_else(|| format!("has no {end} line"))?;
    Ok((label, &rest[..body_end]))
}

/// Standard base64 (RFC 4648 §4) with padding optional and whitespace ignored, as
/// PEM bodies are written. `None` on any other character or a truncated group.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data_len = symbols
        .iter()
        .position(|&c| c == b'=')
        .unwrap_or(symbols.len());
    let (data, padding) = symbols.split_at(data_len);
    if padding.len() > 2 || padding.iter().any(|&c| c != b'=') || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for group in data.chunks(4) {
        let mut acc = 0u32;
        for &c in group {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * (4 - group.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

/// One DER TLV: `(tag, contents, rest)`. Definite lengths only, as DER requires.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// The key of a DER `SubjectPublicKeyInfo`.
fn spki(der: &[u8]) -> Option<PublicKey> {
    let (SEQUENCE, info, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, algorithm, rest) = tlv(info)? else {
        return None;
    };
    let (OID, oid, params) = tlv(algorithm)? else {
        return None;
    };
    if oid == OID_RSA {
        let (BIT_STRING, key, _) = tlv(rest)? else {
            return None;
        };
        // The first byte counts unused bits; a key is whole bytes.
        let (0, key) = key.split_first()? else {
            return None;
        };
        return rsa_bits(key).map(|bits| PublicKey::Rsa { bits });
    }
    if oid == OID_EC {
        let curve = match tlv(params)? {
            (OID, curve, _) => CURVES.iter().find(|(c, _)| *c == curve).map(|(_, n)| *n),
            _ => None,
        };
        return Some(PublicKey::Ec { curve });
    }
    let algorithm = OTHER_ALGORITHMS
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| *n);
    Some(PublicKey::Other { algorithm })
}

/// The modulus length of a DER PKCS#1 `RSAPublicKey`.
fn rsa_bits(der: &[u8]) -> Option<usize> {
    let (SEQUENCE, key, _) = tlv(der)? else {
        return None;
    };
    let (INTEGER, modulus, _) = tlv(key)? else {
        return None;
    };
    // A positive INTEGER has a leading zero byte when its top bit is set.
    let digits = match modulus.iter().position(|&b| b != 0) {
        Some(i) => &modulus[i..],
        None => return None,
    };
    Some(digits.len() * 8 - digits[0].leading_zeros() as usize)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2048-bit RSA public key, SPKI.
    pub(crate) const RSA_2048: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1MkVC/WRlQveLDxSrUF9
ng4kFFSoQf+gjDevcNyFLnrHn1C/2zjymPq8u5ISgaZ0P7XCaTtnKopRJpgDqDZ1
jIbIPxLOwAy8KnknSXjvvPc+Qjbm8J8XfyfU7dvTuvGcYP49wHvpERwh0b1GdfJa
IeaHw/65Dp0TOQMhu+6mgQ+yl1HhrdWsT2K5BfRovHk9693GRaQf+59+QxMHFGrg
NlXeqc061nTBgZqWCkiu4c91iSoZQgFUX4mnd5CK/Ju84/AZKHDgzQEssPS+4X2U
a7QiK04XLNm3qXdgz4UROuaAGXkOrabKjj5uPYrsn34ca/SpfZmI1L9kUAXz+wtA
2wIDAQAB
-----END PUBLIC KEY-----
";
    /// A 1024-bit RSA public key, SPKI.
    pub(crate) const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDX3h7b4pkNZujDLfsZwmrPfF03
B6lMcjHepzufhDi3wceqZcr4wHSaY+jEJBmpri95JT4YwIgV8+QaeEF+SK8Zi5qQ
LXMMYMeaoesCWdxu+loxtrBXHF0ysTtbzS6JNUAiMnFo+4DMNQPRZEvgUx3BS3As
Snmngn6yyA9MnqJMkwIDAQAB
-----END PUBLIC KEY-----
";
    /// The same 1024-bit key as PKCS#1.
    pub(crate) const RSA_1024_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----
MIGJAoGBANfeHtvimQ1m6MMt+xnCas98XTcHqUxyMd6nO5+EOLfBx6plyvjAdJpj
6MQkGamuL3klPhjAiBXz5Bp4QX5IrxmLmpAtcwxgx5qh6wJZ3G76WjG2sFccXTKx
O1vNLok1QCIycWj7gMw1A9FkS+BTHcFLcCxKeaeCfrLID0yeokyTAgMBAAE=
-----END RSA PUBLIC KEY-----
";
    /// An EC P-256 public key, SPKI.
    pub(crate) const EC_P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsFsUaRnqD8HnAWPNf20D14L/vbfY
BbP/Qf7Zv2AhAKMz9ayf1G+XU+Ye2olz86pfuT/8MWBnWHKNdazgzCuP0A==
-----END PUBLIC KEY-----
";
    /// An EC P-384 public key, SPKI.
    pub(crate) const EC_P384: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE0qnTPHRSVxNUL4+SulkG0/Lq+9m9oaYj
o3b5Eu3pxgO6wUeCmIVvDoITIeiMcjXAvV9emTYA+NyZTlmR/M8BVeefBEDj6BLN
EDOvJ1Hz7OKA1VRH/KRQenC/GyumB74x
-----END PUBLIC KEY-----
";
    /// An Ed25519 public key, SPKI.
    pub(crate) const ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAZXT3ApucVBkbzLU54YgZoxd2iN+JI0Ft8un1KN6YlJ0=
-----END PUBLIC KEY-----
";

    #[test]
    fn kinds_of_public_keys() {
        assert_eq!(public_key(RSA_2048), Ok(PublicKey::Rsa { bits: 2048 }));
        assert_eq!(public_key(RSA_1024), Ok(PublicKey::Rsa { bits: 1024 }));
        assert_eq!(
            public_key(RSA_1024_PKCS1),
            Ok(PublicKey::Rsa { bits: 1024 })
        );
        assert_eq!(
            public_key(EC_P256),
            Ok(PublicKey::Ec {
                curve: Some("P-256")
            })
        );
        assert_eq!(
            public_key(EC_P384),
            Ok(PublicKey::Ec {
                curve: Some("P-384")
            })
        );
        assert_eq!(
            public_key(ED25519),
            Ok(PublicKey::Other {
                algorithm: Some("Ed25519")
            })
        );
        // Text around the block (comments, a second block) is ignored.
        let framed = format!("# issuer key\n{EC_P256}\n{RSA_2048}");
        assert_eq!(
            public_key(&framed),
            Ok(PublicKey::Ec {
                curve: Some("P-256")
            })
        );
        // CRLF line ends.
        assert_eq!(
            public_key(&RSA_2048.replace('\n', "\r\n")),
            Ok(PublicKey::Rsa { bits: 2048 })
        );
    }

    #[track_caller]
    fn refused(text: &str, fragment: &str) {
        match public_key(text) {
            Ok(k) => panic!("accepted as {k:?}:\n{text}"),
            Err(e) => assert!(e.contains(fragment), "{e:?} lacks {fragment:?}"),
        }
    }

    #[test]
    fn what_is_not_a_public_key() {
        refused("MIIB...", "is not PEM text (no -----BEGIN line)");
        refused("-----BEGIN PUBLIC KEY", "malformed -----BEGIN line");
        refused(
            "-----BEGIN PUBLIC KEY-----\nMIIB\n",
            "has no -----END PUBLIC KEY----- line",
        );
        refused(
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            "is a private key (-----BEGIN PRIVATE KEY-----)",
        );
        refused(
            "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n",
            "is a private key",
        );
        refused(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "holds a CERTIFICATE, not a public key",
        );
        refused(
            "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n",
            "not valid base64",
        );
        refused(
            "-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----\n",
            "is not a well-formed PUBLIC KEY",
        );
        // The first 40 base64 characters of a real key: its DER lengths overrun.
        refused(
            &format!("{}\n-----END PUBLIC KEY-----", &RSA_2048[..67]),
            "well-formed",
        );
        refused(
            "-----BEGIN RSA PUBLIC KEY-----\nMAA=\n-----END RSA PUBLIC KEY-----\n",
            "is not a well-formed RSA PUBLIC KEY",
        );
    }

    #[test]
    fn base64_as_pem_writes_it() {
        assert_eq!(base64_decode(""), Some(vec![]));
        assert_eq!(base64_decode("TWFu"), Some(b"Man".to_vec()));
        assert_eq!(base64_decode("TWE="), Some(b"Ma".to_vec()));
        assert_eq!(base64_decode("TWE"), Some(b"Ma".to_vec()));
        assert_eq!(base64_decode("TQ=="), Some(b"M".to_vec()));
        assert_eq!(base64_decode("TW\r\nFu\n"), Some(b"Man".to_vec()));
        assert_eq!(base64_decode("T"), None);
        assert_eq!(base64_decode("TQ==="), None);
        assert_eq!(base64_decode("TQ=a"), None);
        assert_eq!(base64_decode("TW-u"), None);
    }

    #[test]
    fn der_lengths() {
        assert_eq!(
            tlv(&[0x30, 0x01, 0xaa, 0xbb]),
            Some((0x30, &[0xaa][..], &[0xbb][..]))
        );
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xcc]),
            Some((0x04, &[0xcc][..], &[][..]))
        );
        assert_eq!(tlv(&[0x04, 0x02, 0xcc]), None, "content overruns");
        assert_eq!(
            tlv(&[0x04, 0x80]),
            None,
            "indefinite length is BER, not DER"
        );
        assert_eq!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]), None, "absurd length");
        assert_eq!(tlv(&[0x04]), None);
    }
}
