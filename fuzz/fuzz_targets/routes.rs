//! Route templates and the path matcher: the first lines of the input are route
//! templates (what an admin may `PUT`), the rest request paths as a client sends
//! them. Templates are accepted or refused with a message; every path is
//! normalised (node/src/path.rs, compiled here as it is in the node) and looked
//! up. Nothing may panic, and a path the normaliser accepts normalises to itself.
#![no_main]

#[allow(dead_code)]
#[path = "../../node/src/path.rs"]
mod path;

use cluster_config::{AuthMode, Method, Route, RouteMatch, RouteTable};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::DELETE, Method::HEAD];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let routes: Vec<Route> = lines
        .by_ref()
        .take_while(|l| !l.is_empty())
        .take(16)
        .enumerate()
        .map(|(i, template)| Route {
            id: format!("r{i}"),
            template: template.to_owned(),
            methods: if i % 3 == 0 {
                Vec::new()
            } else {
                vec![METHODS[i % METHODS.len()].clone()]
            },
            service: "s".into(),
            timeout: Duration::from_secs(1),
            auth: AuthMode::None,
            roles: Vec::new(),
            forward_credentials: false,
            allow_encoded_slashes: i % 2 == 0,
        })
        .collect();
    let table = RouteTable::build(routes).unwrap_or_default();
    for (i, raw) in lines.enumerate() {
        let method = &METHODS[i % METHODS.len()];
        for normalised in [path::normalize(raw), path::normalize_keeping_encoded_slashes(raw)] {
            let Ok(p) = normalised else {
                continue;
            };
            let again = path::normalize_keeping_encoded_slashes(&p).expect("normal form is accepted");
            assert_eq!(again, p, "normalising twice changed {raw:?}");
            match table.lookup(method, &p) {
                RouteMatch::Found(r) => assert!(r.allows(method)),
                RouteMatch::MethodNotAllowed(allow) => assert!(!allow.is_empty()),
                RouteMatch::NotFound => {}
            }
        }
    }
});
