//! The compiled route table: exact paths in a hash map, `:param` paths and `*`
//! wildcard paths each in their own `matchit` router, so priority is always
//! exact > param > wildcard, then method. Lookup allocates nothing on a hit and
//! never locks.

use crate::gateway::Route;
use http::Method;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// Paths without parameters, looked up by the request path as is. The keys
    /// are the operator's, so a fast hasher does (SipHash was 160 instructions of
    /// every request).
    exact: HashMap<String, Vec<Arc<Route>>, foldhash::fast::RandomState>,
    param: Tier,
    wildcard: Tier,
}

/// One `matchit` router plus the patterns it holds. `matchit` returns only its most
/// specific match; the pattern list lets a method miss fall through to a less
/// specific pattern of the same tier (`/static/*` GET-only, `/*` any method), and
/// lets a 405 list every method of every route whose path matched.
#[derive(Debug, Clone, Default)]
struct Tier {
    router: matchit::Router<Vec<Arc<Route>>>,
    /// Most specific first; each entry holds the routes sharing one path shape.
    patterns: Vec<(Template, Vec<Arc<Route>>)>,
}

#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found(&'a Arc<Route>),
    /// The path matched but no route on it takes this method; the `Allow` value.
    MethodNotAllowed(String),
    NotFound,
}

impl RouteTable {
    /// Builds the table. Errors are `(index into routes, message)`.
    pub fn build(routes: Vec<Route>) -> Result<RouteTable, Vec<(usize, String)>> {
        let routes: Vec<Arc<Route>> = routes.into_iter().map(Arc::new).collect();
        let mut errors = Vec::new();
        let mut exact: HashMap<String, Vec<Arc<Route>>, _> = HashMap::default();
        // Routes of one shape share a router entry: matchit would reject the second
        // insert, and param names do not matter to lookup.
        let mut groups: [Vec<Group>; 2] = [Vec::new(), Vec::new()];
        let mut group_of: HashMap<String, (usize, usize)> = HashMap::new();

        for (i, route) in routes.iter().enumerate() {
            let template = match parse_template(&route.template) {
                Ok(t) => t,
                Err(msg) => {
                    errors.push((i, msg));
                    continue;
                }
            };
            let tier = match template.kind {
                TemplateKind::Exact => {
                    exact
                        .entry(route.template.clone())
                        .or_default()
                        .push(route.clone());
                    continue;
                }
                TemplateKind::Param => 0,
                TemplateKind::Wildcard => 1,
            };
            let pattern = template.matchit_pattern();
            match group_of.get(&pattern) {
                Some(&(t, g)) => groups[t][g].routes.push(route.clone()),
                None => {
                    group_of.insert(pattern.clone(), (tier, groups[tier].len()));
                    groups[tier].push(Group {
                        first: i,
                        pattern,
                        template,
                        routes: vec![route.clone()],
                    });
                }
            }
        }

        let [param_groups, wildcard_groups] = groups;
        let param = Tier::build(param_groups, &mut errors);
        let wildcard = Tier::build(wildcard_groups, &mut errors);
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.0);
            return Err(errors);
        }
        Ok(RouteTable {
            routes,
            exact,
            param,
            wildcard,
        })
    }

    /// The route for `method` and `path`; `path` is matched as given, so the caller
    /// normalises it first. HEAD finds a route that takes GET.
    pub fn lookup(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let mut path_matched = false;
        if let Some(routes) = self.exact.get(path) {
            path_matched = true;
            if let Some(route) = first_allowing(routes, method) {
                return RouteMatch::Found(route);
            }
        }
        for tier in [&self.param, &self.wildcard] {
            if let Ok(hit) = tier.router.at(path) {
                path_matched = true;
                if let Some(route) = first_allowing(hit.value, method) {
                    return RouteMatch::Found(route);
                }
                // Slow path, only on a method miss: other patterns of this tier
                // that also match the path.
                if let Some(route) = tier.scan(method, path) {
                    return RouteMatch::Found(route);
                }
            }
        }
        if !path_matched {
            return RouteMatch::NotFound;
        }
        RouteMatch::MethodNotAllowed(self.allow(path))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The `Allow` value for `path`: every method of every route whose path matches,
    /// sorted and de-duplicated.
    fn allow(&self, path: &str) -> String {
        let mut methods = BTreeSet::new();
        let matching = self.exact.get(path).into_iter().flatten().chain(
            [&self.param, &self.wildcard]
                .into_iter()
                .flat_map(|tier| tier.patterns.iter())
                .filter(|(template, _)| template.matches(path))
                .flat_map(|(_, routes)| routes.iter()),
        );
        for route in matching {
            methods.extend(route.allow_list());
        }
        methods.into_iter().collect::<Vec<_>>().join(", ")
    }
}

fn first_allowing<'a>(routes: &'a [Arc<Route>], method: &Method) -> Option<&'a Arc<Route>> {
    routes.iter().find(|r| r.allows(method))
}

struct Group {
    /// Index of the first route of this shape (where build errors are reported).
    first: usize,
    pattern: String,
    template: Template,
    routes: Vec<Arc<Route>>,
}

impl Tier {
    fn build(groups: Vec<Group>, errors: &mut Vec<(usize, String)>) -> Tier {
        let mut tier = Tier::default();
        // Inserted matchit pattern -> configured path, to name the other side of a
        // conflict as the operator wrote it.
        let mut owners: HashMap<String, String> = HashMap::new();
        for group in groups {
            let configured = group.routes[0].template.clone();
            for pattern in group.template.matchit_inserts(&group.pattern) {
                if let Err(e) = tier.router.insert(pattern.clone(), group.routes.clone()) {
                    let msg = match &e {
                        matchit::InsertError::Conflict { with } => {
                            let other = owners.get(with).unwrap_or(with);
                            format!(
                                "path {configured:?} conflicts with route path {other:?}: \
                                 a parameter and a wildcard (or two different ones) \
                                 at the same position cannot be told apart"
                            )
                        }
                        other => format!("path {configured:?} cannot be routed: {other}"),
                    };
                    errors.push((group.first, msg));
                    break;
                }
                owners.insert(pattern, configured.clone());
            }
            tier.patterns.push((group.template, group.routes));
        }
        tier.patterns.sort_by_cached_key(|(t, _)| t.specificity());
        tier
    }

    fn scan(&self, method: &Method, path: &str) -> Option<&Arc<Route>> {
        self.patterns
            .iter()
            .filter(|(template, _)| template.matches(path))
            .find_map(|(_, routes)| first_allowing(routes, method))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TemplateKind {
    Exact,
    Param,
    Wildcard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Param,
}

/// A route path split into segments (the part before a trailing `*` for wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub segments: Vec<Segment>,
    pub kind: TemplateKind,
}

impl Template {
    /// The path with parameter names erased: two routes with the same shape match
    /// exactly the same requests.
    pub(crate) fn shape(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Literal(lit) => out.push_str(lit),
                Segment::Param => out.push(':'),
            }
        }
        match self.kind {
            TemplateKind::Wildcard => out.push_str("/*"),
            _ if out.is_empty() => out.push('/'),
            _ => {}
        }
        out
    }

    /// matchit 0.8 syntax with positional param names, so shapes that differ only in
    /// param names become the same pattern.
    fn matchit_pattern(&self) -> String {
        let mut out = self.prefix_pattern();
        if self.kind == TemplateKind::Wildcard {
            out.push_str("/{*rest}");
        }
        out
    }

    /// `/a/{p0}` for `/a/:id/*`; empty for `/*`.
    fn prefix_pattern(&self) -> String {
        let mut out = String::new();
        let mut params = 0;
        for seg in &self.segments {
            out.push('/');
            match seg {
                Segment::Literal(lit) => out.push_str(lit),
                Segment::Param => {
                    out.push_str(&format!("{{p{params}}}"));
                    params += 1;
                }
            }
        }
        out
    }

    /// Everything to insert: a wildcard `/static/*` also matches `/static/` and
    /// `/static`, which matchit's catch-all (non-empty) does not.
    fn matchit_inserts(&self, pattern: &str) -> Vec<String> {
        let mut inserts = vec![pattern.to_owned()];
        if self.kind == TemplateKind::Wildcard {
            let prefix = self.prefix_pattern();
            inserts.push(format!("{prefix}/"));
            if !prefix.is_empty() {
                inserts.push(prefix);
            }
        }
        inserts
    }

    /// Sort key, most specific first: longer paths, then literals before params
    /// from the left (the order matchit itself prefers).
    fn specificity(&self) -> (Reverse<usize>, Vec<u8>) {
        let kinds = self
            .segments
            .iter()
            .map(|s| u8::from(*s == Segment::Param))
            .collect();
        (Reverse(self.segments.len()), kinds)
    }

    /// Whether `path` matches, without allocating.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for seg in &self.segments {
            match (seg, parts.next()) {
                (Segment::Literal(lit), Some(part)) if lit == part => {}
                (Segment::Param, Some(part)) if !part.is_empty() => {}
                _ => return false,
            }
        }
        match self.kind {
            TemplateKind::Wildcard => true,
            // `/` has no segments but splits into one empty part.
            _ if self.segments.is_empty() => rest.is_empty(),
            _ => parts.next().is_none(),
        }
    }
}

/// Parses a route path: `/exact`, `/users/:id` (whole-segment params) and an
/// optional trailing `*` segment (`/static/*`). The error is a message for the
/// `path` key.
pub(crate) fn parse_template(path: &str) -> Result<Template, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with \"/\""));
    }
    if path.contains(['{', '}']) {
        return Err(format!(
            "{path:?} must not contain \"{{\" or \"}}\" (write parameters as :name)"
        ));
    }
    if path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return Err(format!(
            "{path:?} must not contain whitespace, \"?\" or \"#\""
        ));
    }
    let mut segments = Vec::new();
    let mut kind = TemplateKind::Exact;
    let mut names = BTreeSet::new();
    if path == "/" {
        return Ok(Template { segments, kind });
    }
    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() && i != last {
            return Err(format!(
                "{path:?} must not contain an empty segment (\"//\")"
            ));
        }
        if *part == "*" {
            if i != last {
                return Err(format!(
                    "{path:?}: \"*\" is only allowed as the last segment"
                ));
            }
            kind = TemplateKind::Wildcard;
        } else if part.contains('*') {
            return Err(format!(
                "{path:?}: \"*\" must be a whole segment, as in \"/static/*\""
            ));
        } else if let Some(name) = part.strip_prefix(':') {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "{path:?}: invalid parameter {part:?} (expected :name of letters, digits or _)"
                ));
            }
            if !names.insert(name) {
                return Err(format!("{path:?}: parameter {part:?} appears twice"));
            }
            segments.push(Segment::Param);
            if kind == TemplateKind::Exact {
                kind = TemplateKind::Param;
            }
        } else if part.contains(':') {
            return Err(format!(
                "{path:?}: \":\" must start a whole segment, as in \"/users/:id\""
            ));
        } else {
            segments.push(Segment::Literal((*part).to_owned()));
        }
    }
    Ok(Template { segments, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::AuthMode;
    use std::time::Duration;

    fn method(text: &str) -> Method {
        Method::from_bytes(text.as_bytes()).expect("test method")
    }

    fn route(id: &str, path: &str, methods: &[&str]) -> Route {
        Route {
            id: id.to_owned(),
            template: path.to_owned(),
            methods: methods.iter().map(|m| method(m)).collect(),
            service: "svc".to_owned(),
            timeout: Duration::from_secs(30),
            auth: AuthMode::Any,
            roles: Vec::new(),
            forward_credentials: false,
            allow_encoded_slashes: false,
        }
    }

    fn table(routes: Vec<Route>) -> RouteTable {
        match RouteTable::build(routes) {
            Ok(t) => t,
            Err(e) => panic!("build failed: {e:?}"),
        }
    }

    #[track_caller]
    fn found(t: &RouteTable, m: &str, path: &str) -> String {
        match t.lookup(&method(m), path) {
            RouteMatch::Found(r) => r.id.clone(),
            other => panic!("{m} {path}: expected a route, got {other:?}"),
        }
    }

    #[track_caller]
    fn not_allowed(t: &RouteTable, m: &str, path: &str) -> String {
        match t.lookup(&method(m), path) {
            RouteMatch::MethodNotAllowed(allow) => allow,
            other => panic!("{m} {path}: expected 405, got {other:?}"),
        }
    }

    #[track_caller]
    fn not_found(t: &RouteTable, m: &str, path: &str) {
        match t.lookup(&method(m), path) {
            RouteMatch::NotFound => {}
            other => panic!("{m} {path}: expected 404, got {other:?}"),
        }
    }

    #[test]
    fn exact_beats_param_beats_wildcard() {
        let t = table(vec![
            route("wild", "/users/*", &[]),
            route("param", "/users/:id", &[]),
            route("exact", "/users/me", &[]),
        ]);
        assert_eq!(found(&t, "GET", "/users/me"), "exact");
        assert_eq!(found(&t, "GET", "/users/42"), "param");
        assert_eq!(found(&t, "GET", "/users/42/posts"), "wild");
        assert_eq!(t.routes().len(), 3);
    }

    #[test]
    fn param_beats_wildcard() {
        let t = table(vec![
            route("wild", "/*", &[]),
            route("param", "/a/:x/c", &[]),
        ]);
        assert_eq!(found(&t, "GET", "/a/b/c"), "param");
        assert_eq!(found(&t, "GET", "/a/b/d"), "wild");
    }

    #[test]
    fn method_falls_through_to_lower_tiers() {
        let t = table(vec![
            route("exact", "/users/me", &["GET"]),
            route("param", "/users/:id", &["PUT"]),
            route("wild", "/users/*", &["DELETE"]),
        ]);
        assert_eq!(found(&t, "GET", "/users/me"), "exact");
        assert_eq!(found(&t, "PUT", "/users/me"), "param");
        assert_eq!(found(&t, "DELETE", "/users/me"), "wild");
        assert_eq!(
            not_allowed(&t, "POST", "/users/me"),
            "DELETE, GET, HEAD, PUT"
        );
        // The exact route does not match /users/7, so GET is not in its Allow list.
        assert_eq!(not_allowed(&t, "POST", "/users/7"), "DELETE, PUT");
    }

    #[test]
    fn method_falls_through_within_a_tier() {
        let t = table(vec![
            route("all", "/*", &[]),
            route("static", "/static/*", &["GET"]),
            route("users-new", "/u/new/:x", &["GET"]),
            route("users", "/u/:id/:x", &["POST"]),
        ]);
        assert_eq!(found(&t, "GET", "/static/app.js"), "static");
        assert_eq!(found(&t, "POST", "/static/app.js"), "all");
        assert_eq!(found(&t, "GET", "/u/new/1"), "users-new");
        assert_eq!(found(&t, "POST", "/u/new/1"), "users");
    }

    #[test]
    fn first_route_allowing_the_method_wins_on_one_path() {
        let t = table(vec![
            route("read", "/items/:id", &["GET", "HEAD"]),
            route("write", "/items/:key", &["PUT", "GET"]),
        ]);
        assert_eq!(found(&t, "GET", "/items/1"), "read");
        assert_eq!(found(&t, "PUT", "/items/1"), "write");
        assert_eq!(not_allowed(&t, "POST", "/items/1"), "GET, HEAD, PUT");
    }

    #[test]
    fn allow_list_is_sorted_and_deduplicated() {
        let t = table(vec![
            route("a", "/x", &["POST", "GET"]),
            route("b", "/x", &["GET", "DELETE"]),
        ]);
        assert_eq!(not_allowed(&t, "PATCH", "/x"), "DELETE, GET, HEAD, POST");
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let t = table(vec![
            route("exact", "/a", &["GET"]),
            route("param", "/b/:id", &["GET"]),
            route("wild", "/c/*", &["GET"]),
        ]);
        not_found(&t, "GET", "/");
        not_found(&t, "GET", "/a/");
        not_found(&t, "GET", "/ab");
        not_found(&t, "GET", "/b");
        not_found(&t, "GET", "/b/");
        not_found(&t, "GET", "/b/1/2");
        not_found(&t, "GET", "/cd");
        not_found(&t, "GET", "");
        not_found(&RouteTable::default(), "GET", "/");
    }

    #[test]
    fn wildcard_matches_its_own_prefix() {
        let t = table(vec![route("static", "/static/*", &["GET"])]);
        for path in ["/static", "/static/", "/static/a", "/static/a/b"] {
            assert_eq!(found(&t, "GET", path), "static", "{path}");
        }
        assert_eq!(not_allowed(&t, "POST", "/static"), "GET, HEAD");
        not_found(&t, "GET", "/staticx");
        not_found(&t, "GET", "/");
    }

    #[test]
    fn root_wildcard_matches_everything() {
        let t = table(vec![route("all", "/*", &[])]);
        for path in ["/", "/a", "/a/b/c", "/a/"] {
            assert_eq!(found(&t, "GET", path), "all", "{path}");
        }
    }

    #[test]
    fn wildcard_after_a_param() {
        let t = table(vec![route("tenant", "/t/:tenant/*", &[])]);
        for path in ["/t/acme", "/t/acme/", "/t/acme/x/y"] {
            assert_eq!(found(&t, "GET", path), "tenant", "{path}");
        }
        not_found(&t, "GET", "/t");
        not_found(&t, "GET", "/t/");
    }

    #[test]
    fn param_names_do_not_conflict() {
        let t = table(vec![
            route("get", "/u/:id", &["GET"]),
            route("del", "/u/:uid", &["DELETE"]),
        ]);
        assert_eq!(found(&t, "DELETE", "/u/1"), "del");
    }

    #[test]
    fn root_exact_route() {
        let t = table(vec![route("root", "/", &["GET"])]);
        assert_eq!(found(&t, "GET", "/"), "root");
        not_found(&t, "GET", "/x");
    }

    #[test]
    fn router_conflicts_are_build_errors() {
        let errors = match RouteTable::build(vec![
            route("ok", "/a", &[]),
            route("all", "/*", &[]),
            route("tenant", "/:tenant/*", &[]),
        ]) {
            Ok(_) => panic!("expected a conflict"),
            Err(e) => e,
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 2);
        assert!(
            errors[0].1.contains("conflicts with route path \"/*\""),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_templates_are_build_errors() {
        let errors = match RouteTable::build(vec![
            route("a", "/ok", &[]),
            route("b", "/x/{id}", &[]),
            route("c", "nope", &[]),
        ]) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        };
        let idx: Vec<usize> = errors.iter().map(|e| e.0).collect();
        assert_eq!(idx, [1, 2]);
    }

    #[test]
    fn template_syntax() {
        for ok in [
            "/",
            "/a",
            "/a/",
            "/a/:id",
            "/a/:id/b/:x_2",
            "/*",
            "/a/*",
            "/a/:id/*",
        ] {
            assert!(parse_template(ok).is_ok(), "{ok}");
        }
        for (bad, fragment) in [
            ("a", "must start with \"/\""),
            ("", "must start with \"/\""),
            ("/a/{id}", "must not contain \"{\""),
            ("/a b", "whitespace"),
            ("/a?x=1", "\"?\""),
            ("/a//b", "empty segment"),
            ("/*/a", "only allowed as the last segment"),
            ("/a*", "whole segment"),
            ("/a/:", "invalid parameter"),
            ("/a/:i-d", "invalid parameter"),
            ("/a/x:id", "must start a whole segment"),
            ("/a/:id/:id", "appears twice"),
        ] {
            match parse_template(bad) {
                Ok(t) => panic!("{bad:?} parsed as {t:?}"),
                Err(msg) => assert!(msg.contains(fragment), "{bad:?}: {msg}"),
            }
        }
    }

    #[test]
    fn shapes_ignore_param_names() {
        let shape = |p: &str| match parse_template(p) {
            Ok(t) => t.shape(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(shape("/u/:id"), shape("/u/:uid"));
        assert_ne!(shape("/u/:id"), shape("/u/id"));
        assert_eq!(shape("/static/*"), "/static/*");
        assert_eq!(shape("/*"), "/*");
        assert_eq!(shape("/"), "/");
    }

    #[test]
    fn get_routes_also_answer_head() {
        let table = RouteTable::build(vec![route("r", "/r", &["GET"])]).expect("builds");
        assert!(matches!(
            table.lookup(&Method::HEAD, "/r"),
            RouteMatch::Found(_)
        ));
        match table.lookup(&Method::POST, "/r") {
            RouteMatch::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD"),
            other => panic!("{other:?}"),
        }
    }
}
