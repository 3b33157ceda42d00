//! Every API route the CLI calls, declared once: method, the path template exactly as the
//! daemon's [`api!`](crate::api) table writes it, and the query parameters sent. The client
//! takes only a [`Call`] built from one of these, never a hand-made URL, and a test checks
//! each route against the daemon's table (method, path and query names).

use hyper::Method;
use std::fmt::Display;

/// One route of the daemon's API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    method: &'static str,
    template: &'static str,
    query: &'static [&'static str],
}

macro_rules! routes {
    ($( $name:ident = $m:ident $t:literal $([$($q:literal),*])?; )*) => {
        $( #[doc = concat!("`", stringify!($m), " ", $t, "`")]
        pub const $name: Route = Route {
            method: stringify!($m),
            template: $t,
            query: &[$($($q),*)?],
        }; )*
        /// Every route above, for the check against the daemon's table.
        #[cfg(test)]
        const ALL: &[(&str, Route)] = &[$((stringify!($name), $name)),*];
    };
}

routes! {
    INFO = get "/v1/info";
    METRICS = get "/v1/metrics";
    REPL = post "/v1/repl";
    SPEC_EXPORT = get "/v1/spec/export";
    PLAN = post "/v1/plan";
    APPLY = post "/v1/apply";
    WORKLOADS = get "/v1/workloads";
    WORKLOAD = get "/v1/workloads/{name}";
    WORKLOAD_DELETE = delete "/v1/workloads/{name}" ["purge"];
    WORKLOAD_START = post "/v1/workloads/{name}/start";
    WORKLOAD_STOP = post "/v1/workloads/{name}/stop";
    WORKLOAD_RESTART = post "/v1/workloads/{name}/restart";
    WORKLOAD_LOGS = get "/v1/workloads/{name}/logs" ["follow", "tail"];
    WORKLOAD_EXEC = get "/v1/workloads/{name}/exec";
    WORKLOAD_ARCHIVE_GET = get "/v1/workloads/{name}/archive" ["path"];
    WORKLOAD_ARCHIVE_PUT = put "/v1/workloads/{name}/archive" ["path", "archive", "contents", "directory"];
    WORKLOAD_CONSOLE = get "/v1/workloads/{name}/console";
    RUN = get "/v1/run";
    WORKLOAD_SNAPSHOTS = get "/v1/workloads/{name}/snapshots";
    WORKLOAD_SNAPSHOT = post "/v1/workloads/{name}/snapshots";
    WORKLOAD_SNAPSHOT_RM = delete "/v1/workloads/{name}/snapshots/{label}";
    WORKLOAD_ROLLBACK = post "/v1/workloads/{name}/rollback";
    WORKLOAD_CLONE = post "/v1/workloads/{name}/clone";
    WORKLOAD_EXPORT = get "/v1/workloads/{name}/export" ["since"];
    IMPORT = post "/v1/import" ["name"];
    VOLUMES = get "/v1/volumes";
    VOLUME_RM = delete "/v1/volumes/{name}";
    VOLUME_SNAPSHOTS = get "/v1/volumes/{name}/snapshots";
    VOLUME_SNAPSHOT = post "/v1/volumes/{name}/snapshots";
    VOLUME_SNAPSHOT_RM = delete "/v1/volumes/{name}/snapshots/{label}";
    VOLUME_ROLLBACK = post "/v1/volumes/{name}/rollback";
    VOLUME_EXPORT = get "/v1/volumes/{name}/export" ["since"];
    WORLDS = get "/v1/worlds";
    WORLD_CREATE = post "/v1/worlds/{name}" ["mirror"];
    WORLD_RM = delete "/v1/worlds/{name}";
    WORLD_IMPORT = post "/v1/worlds/{name}/import" ["command"];
    WORLD_EXPORT = get "/v1/worlds/{name}/export";
    IMAGES = get "/v1/images";
    IMAGE_RM = delete "/v1/images" ["reference"];
    IMAGE_IMPORT = post "/v1/images/import" ["tag"];
    IMAGE_GC = post "/v1/images/gc";
    IMAGE_PULL = post "/v1/images/pull";
    BUILD = post "/v1/build" ["version"];
    RECIPES = get "/v1/recipes";
    EVENTS = get "/v1/events" ["limit", "workload"];
    EVENTS_STREAM = get "/v1/events/stream" ["after", "workload"];
    CA = get "/v1/ca";
    AUTH_INFO = get "/v1/auth/info";
    AUTH_ENROLL = post "/v1/auth/enroll";
    KEYS = get "/v1/auth/keys";
    KEY_ADD = post "/v1/auth/keys";
    KEY_REVOKE = delete "/v1/auth/keys/{fingerprint}";
    CLAIM_CODE = get "/v1/auth/claim-code";
    AUTH_RESET = post "/v1/auth/reset";
}

/// A route with its path parameters and query filled in: what the client sends.
#[derive(Debug, Clone)]
pub struct Call {
    route: Route,
    path: String,
    queried: bool,
}

impl Route {
    /// The call of a route with no path parameters.
    pub fn call(self) -> Call {
        self.at(&[])
    }

    /// The call with `params` in the template's `{...}` segments, in order, percent-encoded.
    /// The count must match the template's (a programming error otherwise).
    pub fn at(self, params: &[&str]) -> Call {
        let mut path = String::new();
        let mut given = params.iter();
        for seg in self.template.split('/').skip(1) {
            path.push('/');
            if seg.starts_with('{') && seg.ends_with('}') {
                let value = given
                    .next()
                    .unwrap_or_else(|| panic!("{}: missing {seg}", self.template));
                path.push_str(&percent_encode(value));
            } else {
                path.push_str(seg);
            }
        }
        assert!(
            given.next().is_none(),
            "{}: too many path parameters",
            self.template
        );
        Call {
            route: self,
            path,
            queried: false,
        }
    }
}

impl Call {
    /// Adds `key=value` (the value percent-encoded); `key` must be one the route declares.
    pub fn query(mut self, key: &str, value: impl Display) -> Call {
        assert!(
            self.route.query.contains(&key),
            "{} takes no query parameter {key:?}",
            self.route.template
        );
        self.path.push(if self.queried { '&' } else { '?' });
        self.path.push_str(key);
        self.path.push('=');
        self.path.push_str(&percent_encode(&value.to_string()));
        self.queried = true;
        self
    }

    /// [`Call::query`] when there is a value.
    pub fn query_opt(self, key: &str, value: Option<impl Display>) -> Call {
        match value {
            Some(v) => self.query(key, v),
            None => self,
        }
    }

    /// The route's method.
    pub fn method(&self) -> Method {
        Method::from_bytes(self.route.method.to_ascii_uppercase().as_bytes())
            .expect("a route's method is a valid method")
    }

    /// The path and query.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_the_cli_calls_is_in_the_daemons_table() {
        let ops = crate::daemon::openapi::all_ops();
        for (name, r) in ALL {
            let op = ops
                .iter()
                .find(|o| o.path == r.template && o.method == r.method)
                .unwrap_or_else(|| panic!("{name}: {} {} is not served", r.method, r.template));
            for q in r.query {
                assert!(
                    op.query.iter().any(|(k, _)| k == q),
                    "{name}: {} takes no query parameter {q:?}",
                    r.template
                );
            }
        }
    }

    #[test]
    fn calls_fill_parameters_and_encode_values() {
        assert_eq!(WORKLOADS.call().path(), "/v1/workloads");
        assert_eq!(WORKLOADS.call().method(), Method::GET);
        let c = WORKLOAD_SNAPSHOT_RM.at(&["web", "pre upgrade"]);
        assert_eq!(c.path(), "/v1/workloads/web/snapshots/pre%20upgrade");
        assert_eq!(c.method(), Method::DELETE);
        let c = WORKLOAD_LOGS
            .at(&["web"])
            .query("follow", true)
            .query_opt("tail", Some(5))
            .query_opt("tail", None::<usize>);
        assert_eq!(c.path(), "/v1/workloads/web/logs?follow=true&tail=5");
        let c = IMAGE_RM.call().query("reference", "reg:5000/app:v1&x");
        assert_eq!(c.path(), "/v1/images?reference=reg%3A5000%2Fapp%3Av1%26x");
    }

    #[test]
    #[should_panic(expected = "takes no query parameter")]
    fn an_undeclared_query_parameter_is_refused() {
        let _ = WORKLOADS.call().query("limit", 1);
    }

    #[test]
    #[should_panic(expected = "missing {label}")]
    fn a_missing_path_parameter_is_refused() {
        let _ = WORKLOAD_SNAPSHOT_RM.at(&["web"]);
    }
}
