//! Client-side commands that talk to a running cluster's admin API:
//! `sluice apply` (push a config directory, like `deck sync`) and
//! `sluice cluster status`.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// An https admin API is verified with the CA in `$SLUICE_ADMIN_CA` (a PEM file;
/// else the public web roots), and a mutual-TLS one is given the client
/// certificate in `$SLUICE_ADMIN_CERT` and `$SLUICE_ADMIN_KEY`.
fn client() -> awc::Client {
    let builder = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .disable_redirects();
    match tls_from_env() {
        Ok(Some(tls)) => builder
            .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(tls)))
            .finish(),
        Ok(None) => builder.finish(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

fn tls_from_env() -> std::io::Result<Option<rustls::ClientConfig>> {
    let Some(ca) = std::env::var_os("SLUICE_ADMIN_CA") else {
        return Ok(None);
    };
    let cert = std::env::var_os("SLUICE_ADMIN_CERT");
    let key = std::env::var_os("SLUICE_ADMIN_KEY");
    let files = match (cert, key) {
        (Some(cert), Some(key)) => Some(cluster_config::TlsFiles {
            cert_file: cert.into(),
            key_file: key.into(),
        }),
        _ => None,
    };
    crate::tls::client_config(Path::new(&ca), files.as_ref()).map(Some)
}

fn base(admin: &str) -> String {
    let a = admin.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_owned()
    } else {
        format!("http://{a}")
    }
}

async fn get_json(url: &str, token: &str) -> Result<Value, String> {
    let mut r = client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let body = r.body().await.map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "{url}: HTTP {}: {}",
            r.status(),
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: bad JSON: {e}"))
}

/// `sluice apply`: validates the directory locally (every error printed), then
/// replaces the cluster's gateway config with it.
pub fn apply(dir: &Path, admin: &str, token: &str) -> Result<(), String> {
    let loaded = cluster_config::load_dir(dir).map_err(|errors| {
        let lines: Vec<String> = errors.0.iter().map(|e| format!("  {e}")).collect();
        format!("invalid config in {}:\n{}", dir.display(), lines.join("\n"))
    })?;
    let body = serde_json::to_vec(&loaded.gateway.spec).map_err(|e| e.to_string())?;
    let url = format!("{}/admin/config", base(admin));
    actix_rt::System::new().block_on(async move {
        let mut r = client()
            .put(&url)
            .bearer_auth(token)
            .content_type("application/json")
            .send_body(body)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let text = String::from_utf8_lossy(&r.body().await.unwrap_or_default()).into_owned();
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}: {text}", r.status()));
        }
        let version = r
            .headers()
            .get("x-sluice-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        println!(
            "applied {} ({} services, {} routes) at version {version}",
            dir.display(),
            loaded.gateway.services.len(),
            loaded.gateway.routes.routes().len()
        );
        Ok(())
    })
}

/// `sluice cluster status`: the cluster as one node sees it, plus each member's
/// own view (state, term, applied index), or `down` when it does not answer.
pub fn status(admin: &str, token: &str) -> Result<(), String> {
    actix_rt::System::new().block_on(async move {
        let url = format!("{}/admin/cluster", base(admin));
        let c = get_json(&url, token).await?;
        let leader = c["leader_id"]
            .as_u64()
            .map_or("none".to_owned(), |l| l.to_string());
        println!(
            "leader: {leader}  term: {}  voters: {}  learners: {}",
            c["term"], c["voters"], c["learners"]
        );
        println!(
            "{:<4} {:<24} {:<9} {:<10} {:>6} {:>9}",
            "id", "admin", "role", "state", "term", "applied"
        );
        for n in c["nodes"].as_array().cloned().unwrap_or_default() {
            let id = n["id"].as_u64().unwrap_or(0);
            let addr = n["addr"].as_str().unwrap_or("?").to_owned();
            let role = if n["voter"].as_bool().unwrap_or(false) {
                "voter"
            } else {
                "learner"
            };
            let scheme = if base(admin).starts_with("https://") {
                "https"
            } else {
                "http"
            };
            match get_json(&format!("{scheme}://{addr}/admin/cluster"), token).await {
                Ok(own) => println!(
                    "{id:<4} {addr:<24} {role:<9} {:<10} {:>6} {:>9}",
                    own["state"].as_str().unwrap_or("?"),
                    own["term"].to_string(),
                    own["applied_index"].to_string()
                ),
                Err(_) => println!(
                    "{id:<4} {addr:<24} {role:<9} {:<10} {:>6} {:>9}",
                    "down", "-", "-"
                ),
            }
        }
        Ok(())
    })
}
