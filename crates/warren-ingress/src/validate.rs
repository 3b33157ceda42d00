//! Validation of everything that reaches the rendered configuration.
//!
//! [`validate`] checks a route set and [`validate_options`] the proxy-wide options before
//! [`crate::render`] turns them into nginx syntax. Every string that lands in the file is
//! checked against a strict character set here (hostnames, path prefixes, file paths, workload
//! names), so the renderer never needs to quote or escape: no value can end a directive (`;`),
//! open or close a block (`{`, `}`), start a quoted string or comment, or expand a variable
//! (`$`). Route sets are also checked for conflicts: two routes for the same domain and path,
//! and one domain with two TLS choices.

use std::path::Path;

use crate::render::location_path;
use crate::route::{IngressOptions, Route, Target, Tls};

/// Why a route set or the options cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("workload name {name:?} is invalid: {reason}")]
    Workload { name: String, reason: String },
    #[error("workload {workload}: domain {domain:?} is invalid: {reason}")]
    Domain {
        workload: String,
        domain: String,
        reason: String,
    },
    #[error("workload {workload}: path prefix {path:?} of {domain} is invalid: {reason}")]
    PathPrefix {
        workload: String,
        domain: String,
        path: String,
        reason: String,
    },
    #[error("workload {workload}: {field} {path:?} is invalid: {reason}")]
    File {
        workload: String,
        field: &'static str,
        path: String,
        reason: String,
    },
    #[error("workload {workload}: upstream port of {domain}{path} must not be 0")]
    UpstreamPort {
        workload: String,
        domain: String,
        path: String,
    },
    #[error("route {domain}{path} is claimed twice: by workload {first} and by workload {second}")]
    Duplicate {
        domain: String,
        path: String,
        first: String,
        second: String,
    },
    #[error(
        "domain {domain}: workload {first} and workload {second} ask for different tls settings"
    )]
    TlsConflict {
        domain: String,
        first: String,
        second: String,
    },
    #[error("ingress option {field} is invalid: {reason}")]
    Option { field: &'static str, reason: String },
}

/// Routes in the order the renderer emits them: by domain, then path prefix, then the rest of
/// the route (so equal domain and path still sort deterministically).
pub(crate) fn sorted(routes: &[Route]) -> Vec<&Route> {
    let mut v: Vec<&Route> = routes.iter().collect();
    v.sort_by(|a, b| {
        (&a.domain, &a.path_prefix)
            .cmp(&(&b.domain, &b.path_prefix))
            .then_with(|| a.cmp(b))
    });
    v
}

/// Checks a route set: every field well-formed, no domain and path claimed twice, one TLS choice
/// per domain. Reports the first problem in render order.
pub fn validate(routes: &[Route]) -> Result<(), ValidationError> {
    let routes = sorted(routes);
    for r in &routes {
        validate_route(r)?;
    }
    // Compare the locations the routes render to: a static `/files` claims `/files/`.
    let mut claimed: Vec<(&str, String, &str)> = routes
        .iter()
        .map(|r| (r.domain.as_str(), location_path(r), r.workload.as_str()))
        .collect();
    claimed.sort();
    for pair in claimed.windows(2) {
        let ((d1, p1, w1), (d2, p2, w2)) = (&pair[0], &pair[1]);
        if d1 == d2 && p1 == p2 {
            return Err(ValidationError::Duplicate {
                domain: d1.to_string(),
                path: p1.clone(),
                first: w1.to_string(),
                second: w2.to_string(),
            });
        }
    }
    let mut i = 0;
    while i < routes.len() {
        let first = routes[i];
        let mut j = i + 1;
        while j < routes.len() && routes[j].domain == first.domain {
            if routes[j].tls != first.tls {
                return Err(ValidationError::TlsConflict {
                    domain: first.domain.clone(),
                    first: first.workload.clone(),
                    second: routes[j].workload.clone(),
                });
            }
            j += 1;
        }
        i = j;
    }
    Ok(())
}

/// Checks the proxy-wide options: ports non-zero and distinct, prefix an acceptable path.
pub fn validate_options(opts: &IngressOptions) -> Result<(), ValidationError> {
    let opt = |field, reason: &str| ValidationError::Option {
        field,
        reason: reason.to_string(),
    };
    if opts.http_port == 0 {
        return Err(opt("http_port", "port 0 is not a port"));
    }
    if opts.https_port == 0 {
        return Err(opt("https_port", "port 0 is not a port"));
    }
    if opts.http_port == opts.https_port {
        return Err(opt(
            "https_port",
            &format!("the same as http_port ({})", opts.http_port),
        ));
    }
    if opts.worker_processes == Some(0) {
        return Err(opt("worker_processes", "must be at least 1"));
    }
    check_file_path(&opts.prefix).map_err(|reason| ValidationError::Option {
        field: "prefix",
        reason: format!("{}: {reason}", opts.prefix.display()),
    })
}

fn validate_route(r: &Route) -> Result<(), ValidationError> {
    check_workload(&r.workload)?;
    check_domain(&r.domain).map_err(|reason| ValidationError::Domain {
        workload: r.workload.clone(),
        domain: r.domain.clone(),
        reason,
    })?;
    check_path_prefix(&r.path_prefix).map_err(|reason| ValidationError::PathPrefix {
        workload: r.workload.clone(),
        domain: r.domain.clone(),
        path: r.path_prefix.clone(),
        reason,
    })?;
    let file = |field: &'static str, p: &Path| {
        check_file_path(p).map_err(|reason| ValidationError::File {
            workload: r.workload.clone(),
            field,
            path: p.display().to_string(),
            reason,
        })
    };
    match &r.target {
        Target::Upstream { port, .. } => {
            if *port == 0 {
                return Err(ValidationError::UpstreamPort {
                    workload: r.workload.clone(),
                    domain: r.domain.clone(),
                    path: r.path_prefix.clone(),
                });
            }
        }
        Target::Static { root, .. } => file("static root", root)?,
        Target::Unavailable { workload } => check_workload(workload)?,
    }
    match &r.tls {
        Tls::None => {}
        Tls::Local { cert, key } | Tls::Operator { cert, key } => {
            file("tls certificate", cert)?;
            file("tls key", key)?;
        }
    }
    Ok(())
}

/// Workload names are DNS labels: 1–63 of `a-z`, `0-9`, `-`, starting with a letter, not ending
/// with `-`.
fn check_workload(name: &str) -> Result<(), ValidationError> {
    let err = |reason: &str| {
        Err(ValidationError::Workload {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return err("it is empty");
    }
    if name.len() > 63 {
        return err("longer than 63 characters");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return err("it must start with a lowercase letter");
    }
    if name.ends_with('-') {
        return err("it must not end with '-'");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return err("only lowercase letters, digits and '-' are allowed");
    }
    Ok(())
}

/// A hostname of lowercase dot-separated labels (1–63 of `a-z`, `0-9`, `-`, not starting or
/// ending with `-`), at most 253 characters; the first label may be `*` for a wildcard, which
/// needs at least two labels after it.
pub fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("it is empty".into());
    }
    if domain.len() > 253 {
        return Err(format!(
            "it is {} characters long; the limit is 253",
            domain.len()
        ));
    }
    let (wildcard, rest) = match domain.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, domain),
    };
    let labels: Vec<&str> = rest.split('.').collect();
    if wildcard && labels.len() < 2 {
        return Err("a wildcard needs at least two labels after '*.'".into());
    }
    for label in labels {
        if label.is_empty() {
            return Err("it has an empty label".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if label == "*" {
            return Err("'*' is only allowed as the whole first label".into());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "it has {c:?}; only lowercase letters, digits, '-' and '.' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with '-'"));
        }
    }
    Ok(())
}

/// Characters that could end a token or change its meaning in nginx syntax.
const FORBIDDEN: &[char] = &[';', '{', '}', '"', '\'', '$', '#', '\\'];

fn check_chars(s: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(c))
    {
        return Err(format!(
            "it contains {c:?}; whitespace, control characters and ; {{ }} \" ' $ # \\ are not allowed"
        ));
    }
    Ok(())
}

/// A path prefix: starts with `/`, at most 1024 characters, none of them whitespace, control
/// characters or `; { } " ' $ # \`.
pub fn check_path_prefix(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("it must start with '/'".into());
    }
    if path.len() > 1024 {
        return Err("longer than 1024 characters".into());
    }
    check_chars(path)
}

/// A file path written into the configuration: absolute, UTF-8, with the same character rules
/// as a path prefix.
pub fn check_file_path(path: &Path) -> Result<(), String> {
    let Some(s) = path.to_str() else {
        return Err("it is not valid UTF-8".into());
    };
    if !path.is_absolute() {
        return Err("it must be an absolute path".into());
    }
    check_chars(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

    fn up(workload: &str, domain: &str) -> Route {
        Route::new(
            workload,
            domain,
            Target::Upstream {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                port: 80,
            },
        )
    }

    #[test]
    fn domains() {
        for ok in [
            "git.home.arpa",
            "localhost",
            "*.home.arpa",
            "a-b.c9",
            "x.y.z",
        ] {
            assert_eq!(check_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Git.home.arpa",
            "git..home",
            "-git.home",
            "git-.home",
            "*.arpa",
            "a.*.b",
            "*foo.bar.baz",
            "git.home.arpa.",
            "git home",
            "git;home",
            "git.home{",
            "_",
        ] {
            assert!(check_domain(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_domain(&"a".repeat(64)).is_err());
        let long = vec!["a".repeat(60); 5].join(".");
        assert!(check_domain(&long).unwrap_err().contains("253"));
    }

    #[test]
    fn path_prefixes() {
        for ok in ["/", "/api", "/api/", "/a-b_c.d/~e%20"] {
            assert_eq!(check_path_prefix(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "api", "/a b", "/a;", "/a{", "/a}", "/a\"", "/a'", "/$uri", "/a\tb", "/a#b",
            "/a\\b", "/a\nb",
        ] {
            assert!(check_path_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn file_paths() {
        assert!(check_file_path(Path::new("/srv/site")).is_ok());
        assert!(check_file_path(Path::new("srv/site")).is_err());
        assert!(check_file_path(Path::new("/srv/my site")).is_err());
        assert!(check_file_path(Path::new("/srv/x;y")).is_err());
    }

    #[test]
    fn valid_set() {
        let routes = vec![
            up("web", "a.home.arpa"),
            up("api", "a.home.arpa").with_path("/api"),
            up("git", "git.home.arpa"),
        ];
        assert_eq!(validate(&routes), Ok(()));
        assert_eq!(validate(&[]), Ok(()));
    }

    #[test]
    fn duplicate_names_both_workloads() {
        let routes = vec![up("web", "a.home.arpa"), up("blog", "a.home.arpa")];
        let err = validate(&routes).unwrap_err();
        assert_eq!(
            err,
            ValidationError::Duplicate {
                domain: "a.home.arpa".into(),
                path: "/".into(),
                first: "blog".into(),
                second: "web".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "route a.home.arpa/ is claimed twice: by workload blog and by workload web"
        );
    }

    #[test]
    fn static_directory_prefix_collides_with_its_slash_form() {
        let site = Route::new(
            "site",
            "a.home.arpa",
            Target::Static {
                root: PathBuf::from("/srv/site"),
                autoindex: true,
            },
        );
        let routes = vec![
            site.with_path("/files"),
            up("api", "a.home.arpa").with_path("/files/"),
        ];
        let err = validate(&routes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "route a.home.arpa/files/ is claimed twice: by workload api and by workload site"
        );
        // An upstream `/files` next to an upstream `/files/` is two distinct locations.
        let routes = vec![
            up("a", "a.home.arpa").with_path("/files"),
            up("b", "a.home.arpa").with_path("/files/"),
        ];
        assert_eq!(validate(&routes), Ok(()));
    }

    #[test]
    fn tls_conflict() {
        let tls = Tls::Operator {
            cert: PathBuf::from("/c.pem"),
            key: PathBuf::from("/k.pem"),
        };
        let routes = vec![
            up("web", "a.home.arpa").with_tls(tls),
            up("api", "a.home.arpa").with_path("/api"),
        ];
        let err = validate(&routes).unwrap_err();
        assert!(matches!(err, ValidationError::TlsConflict { .. }), "{err}");
        assert!(err.to_string().contains("workload web"), "{err}");
        assert!(err.to_string().contains("workload api"), "{err}");
    }

    #[test]
    fn bad_fields_name_the_workload() {
        let err = validate(&[up("web", "a.home.arpa").with_path("/x;y")]).unwrap_err();
        assert!(
            err.to_string().starts_with("workload web: path prefix"),
            "{err}"
        );

        let err = validate(&[up("web", "A.home.arpa")]).unwrap_err();
        assert!(err.to_string().starts_with("workload web: domain"), "{err}");

        let mut r = up("web", "a.home.arpa");
        r.target = Target::Upstream {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
        };
        let err = validate(&[r]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload web: upstream port of a.home.arpa/ must not be 0"
        );

        let r = Route::new(
            "site",
            "a.home.arpa",
            Target::Static {
                root: PathBuf::from("relative/dir"),
                autoindex: false,
            },
        );
        let err = validate(&[r]).unwrap_err();
        assert!(err.to_string().contains("static root"), "{err}");

        let r = up("web", "a.home.arpa").with_tls(Tls::Local {
            cert: PathBuf::from("/c.pem"),
            key: PathBuf::from("/k $x.pem"),
        });
        let err = validate(&[r]).unwrap_err();
        assert!(err.to_string().contains("tls key"), "{err}");

        let err = validate(&[up("Web", "a.home.arpa")]).unwrap_err();
        assert!(matches!(err, ValidationError::Workload { .. }), "{err}");

        let r = Route::new(
            "web",
            "a.home.arpa",
            Target::Unavailable {
                workload: "x\"y".into(),
            },
        );
        assert!(validate(&[r]).is_err());
    }

    #[test]
    fn options() {
        let o = IngressOptions::default();
        assert_eq!(validate_options(&o), Ok(()));
        let mut bad = o.clone();
        bad.https_port = bad.http_port;
        assert!(validate_options(&bad).is_err());
        let mut bad = o.clone();
        bad.prefix = PathBuf::from("/var/lib/my ingress");
        let err = validate_options(&bad).unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
        let mut bad = o;
        bad.worker_processes = Some(0);
        assert!(validate_options(&bad).is_err());
    }
}
