//! Config text → validation: a gateway file as YAML (what `sluice run` and
//! `sluice validate` read) and the same bytes as the admin API's JSON body. Either
//! may be refused with errors; neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("sluice-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("fuzz dir");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = cluster_config::load::parse_gateway_json(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = dir();
    std::fs::write(dir.join("gateway.yaml"), text).expect("write");
    // A fixed node file, so the fuzzed one is read as the gateway part.
    std::fs::write(
        dir.join("0-node.yaml"),
        "node:\n  id: 1\n  listen: 127.0.0.1:1\n  admin_listen: 127.0.0.1:2\n  data_dir: /nonexistent\n",
    )
    .expect("write");
    let _ = cluster_config::load::load_dir_with_env(dir, &|name: &str| {
        (name == "FUZZ").then(|| "value".to_owned())
    });
});
