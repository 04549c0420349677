//! Key pairs for signing test tokens, made by the `openssl` CLI (the integration
//! tests already need it; `.ci/run` installs it), so no test ships a fixed key.

use std::io::Write;
use std::process::{Command, Stdio};

/// A freshly generated key pair, both halves PEM text: the private key as PKCS#8
/// (`BEGIN PRIVATE KEY`, what JWT libraries sign with), the public key as SPKI
/// (`BEGIN PUBLIC KEY`, what a gateway's `public_key_file` holds).
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

impl KeyPair {
    /// RSA 2048 (for RS256).
    pub fn rsa2048() -> KeyPair {
        KeyPair::generate(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    }

    /// EC on P-256 (for ES256).
    pub fn ec_p256() -> KeyPair {
        KeyPair::generate(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    /// `openssl genpkey <args>`, then `openssl pkey -pubout` on its output.
    fn generate(args: &[&str]) -> KeyPair {
        let private_pem = openssl(&[&["genpkey"], args].concat(), None);
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem));
        KeyPair {
            private_pem,
            public_pem,
        }
    }
}

/// Runs `openssl <args>` with `stdin` piped in; its stdout, or a panic saying what
/// failed (and that openssl must be installed).
fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run `openssl {}`: {e} (install openssl)", args.join(" ")));
    {
        let mut pipe = child.stdin.take().expect("openssl stdin");
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).expect("write to openssl");
        }
    }
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(
        out.status.success(),
        "`openssl {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("openssl writes PEM text")
}

#[cfg(test)]
mod tests {
    use super::KeyPair;

    #[test]
    fn an_ec_pair_is_pkcs8_and_spki_pem() {
        let k = KeyPair::ec_p256();
        assert!(
            k.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{}",
            k.private_pem
        );
        assert!(
            k.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{}",
            k.public_pem
        );
    }
}
