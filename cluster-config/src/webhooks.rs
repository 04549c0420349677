//! `webhooks:` settings, compiled: the payload limit and whether private
//! subscriber targets are allowed. Read by the admin API when it validates a
//! subscription or an event; the delivery defaults live with the dispatcher.

use crate::schema::WebhooksSpec;

/// Default `webhooks.max_payload`: 256 KiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;
/// Largest `webhooks.max_payload` accepted: every event is replicated through
/// Raft and kept until its retention ends, so events stay small.
pub const MAX_MAX_PAYLOAD: usize = 4 * 1024 * 1024;

/// The compiled `webhooks:` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    pub allow_private_targets: bool,
    pub max_payload: usize,
}

impl WebhookSettings {
    /// The settings of `spec`; a `max_payload` that does not parse (the compiler
    /// refuses such a spec, so only a hand-built one has it) falls back to the default.
    pub fn of(spec: &WebhooksSpec) -> WebhookSettings {
        WebhookSettings {
            allow_private_targets: spec.allow_private_targets.unwrap_or(false),
            max_payload: spec
                .max_payload
                .as_deref()
                .and_then(|t| parse_size(t).ok())
                .unwrap_or(DEFAULT_MAX_PAYLOAD),
        }
    }
}

/// Parses a size: `262144`, `512B`, `256KiB`, `1MiB` (also `KB`/`MB`, read as
/// binary units), between 1 byte and [`MAX_MAX_PAYLOAD`].
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?} (expected e.g. 256KiB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" | "k" | "kb" => 1024,
        "MiB" | "MB" | "M" | "mb" => 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?} (use B, KiB or MiB)")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))?;
    if bytes == 0 || bytes > MAX_MAX_PAYLOAD {
        return Err(format!(
            "size {text:?} must be between 1 byte and {} MiB",
            MAX_MAX_PAYLOAD / (1024 * 1024)
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_bounded() {
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5GiB").is_err());
        assert!(parse_size("64MiB").is_err());
        assert!(parse_size("lots").is_err());
        let s = WebhookSettings::of(&WebhooksSpec::default());
        assert_eq!(s.max_payload, DEFAULT_MAX_PAYLOAD);
        assert!(!s.allow_private_targets);
    }

    #[test]
    fn the_section_parses_and_max_payload_is_checked() {
        use crate::{parse_gateway_json, Gateway, Origins};
        let spec = parse_gateway_json(
            br#"{"webhooks": {"allow_private_targets": true, "max_payload": "1MiB"}}"#,
        )
        .expect("parses");
        let s = WebhookSettings::of(&spec.webhooks);
        assert!(s.allow_private_targets);
        assert_eq!(s.max_payload, 1024 * 1024);
        assert!(Gateway::compile(spec, &Origins::default(), None).is_ok());
        let bad = parse_gateway_json(br#"{"webhooks": {"max_payload": "lots"}}"#).expect("parses");
        let e = Gateway::compile(bad, &Origins::default(), None).expect_err("bad size");
        assert!(e.0.iter().any(|e| e.path == "webhooks.max_payload"), "{e}");
        assert!(parse_gateway_json(br#"{"webhooks": {"colour": 1}}"#).is_err());
    }
}
