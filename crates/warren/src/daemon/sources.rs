//! Where a workload's root filesystem comes from, as the engine needs to know it: an image
//! reference in its canonical form, the stored image's config and the run defaults it gives,
//! the newest recipe build matching a reference, and the drift hash that covers the image id
//! or recipe build key (so a moved reference or a newer build provisions the workload again).
//!
//! This is the engine's layer: it reads the store and never imports, pulls or builds. Those
//! services (`images`, `recipes`) sit above and re-export these names.

use anyhow::{anyhow, bail, Context, Result};
use warren_image::ImageConfig;
use warren_model::recipe;
use warren_model::{Source, WorkloadSpec};
use warren_store::{ImageRecord, RecipeBuild, Store};

/// The canonical form of an image reference: `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`, `:latest`
/// added when neither a tag nor a digest is given. The grammar is warren-registry's
/// ([`warren_registry::Reference`]), the one image-reference parser; the error names the part
/// at fault.
pub fn normalize_reference(reference: &str) -> Result<String, String> {
    warren_registry::Reference::parse(reference)
        .map(|r| r.to_string())
        .map_err(|e| e.to_string())
}

/// The config stored with an image record.
pub fn record_config(record: &ImageRecord) -> Result<ImageConfig> {
    serde_json::from_value(record.config.clone())
        .with_context(|| format!("stored config of image {} is invalid", record.reference))
}

/// What a workload runs with when its source is an image: the image's defaults under the
/// spec's own fields, the way Docker applies them. `command` replaces Cmd and follows the
/// entrypoint; `entrypoint` replaces Entrypoint; env entries of the spec win over the image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDefaults {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: Option<String>,
}

/// See [`RunDefaults`].
pub fn run_defaults(spec: &WorkloadSpec, config: &ImageConfig) -> Result<RunDefaults, String> {
    let entrypoint = spec.entrypoint.clone().unwrap_or(config.entrypoint.clone());
    let cmd = if spec.command.is_empty() {
        // An explicit entrypoint drops the image's Cmd, as `docker run --entrypoint` does.
        if spec.entrypoint.is_some() {
            Vec::new()
        } else {
            config.cmd.clone()
        }
    } else {
        spec.command.clone()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(format!(
            "workload {}: the image has neither Entrypoint nor Cmd; give `command`",
            spec.name
        ));
    }
    let mut env: Vec<String> = config
        .env
        .iter()
        .filter(|e| {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            !spec.env.contains_key(key)
        })
        .cloned()
        .collect();
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    Ok(RunDefaults {
        args,
        env,
        cwd: spec
            .workdir
            .clone()
            .or_else(|| config.working_dir.clone())
            .unwrap_or_else(|| "/".into()),
        user: spec.user.clone().or_else(|| config.user.clone()),
    })
}

/// The drift hash of a workload: its spec's, plus the image id for image workloads, so a
/// reference that moved to another image provisions the workload again.
pub fn image_hash(store: &Store, spec: &WorkloadSpec) -> Result<String> {
    let hash = spec.hash();
    let Source::Image(r) = &spec.source else {
        return Ok(hash);
    };
    let Ok(reference) = normalize_reference(r) else {
        return Ok(hash);
    };
    Ok(match store.image(&reference)? {
        Some(img) => {
            let id = img.id.split_once(':').map_or(img.id.as_str(), |(_, h)| h);
            format!("{hash}-{}", &id[..id.len().min(12)])
        }
        None => hash,
    })
}

/// The newest build of `name` whose version matches `prefix`.
pub fn resolve(store: &Store, name: &str, prefix: Option<&str>) -> Result<RecipeBuild> {
    let builds: Vec<RecipeBuild> = store
        .recipe_builds()?
        .into_iter()
        .filter(|b| b.name == name)
        .collect();
    if builds.is_empty() {
        bail!("recipe {name} has no builds: build it with `warren build DIR`");
    }
    let version = recipe::resolve_version(prefix, builds.iter().map(|b| b.version.as_str()))
        .ok_or_else(|| {
            anyhow!(
                "recipe {name} has no build matching version {} (built: {})",
                prefix.unwrap_or("*"),
                builds
                    .iter()
                    .map(|b| b.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?
        .to_string();
    Ok(builds
        .into_iter()
        .find(|b| b.version == version)
        .expect("resolved from these"))
}

/// The build a `recipe = "..."` reference names.
pub fn resolve_ref(store: &Store, reference: &str) -> Result<RecipeBuild> {
    let r = recipe::parse_recipe_ref(reference).map_err(|e| anyhow!(e))?;
    resolve(store, &r.name, r.prefix.as_deref())
}

/// The drift hash of a recipe workload: its spec's plus the build key it resolves to.
pub fn recipe_hash(store: &Store, spec: &WorkloadSpec) -> Result<String> {
    let hash = spec.hash();
    let Source::Recipe(r) = &spec.source else {
        return Ok(hash);
    };
    Ok(match resolve_ref(store, r) {
        Ok(b) => format!("{hash}-{}", &b.key[..12]),
        Err(_) => hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked_and_get_latest() {
        assert_eq!(normalize_reference("app").unwrap(), "app:latest");
        assert_eq!(normalize_reference("app:v1").unwrap(), "app:v1");
        assert_eq!(
            normalize_reference("127.0.0.1:5000/team/app").unwrap(),
            "127.0.0.1:5000/team/app:latest"
        );
        assert_eq!(
            normalize_reference("localhost/app:1.2").unwrap(),
            "localhost/app:1.2"
        );
        assert_eq!(
            normalize_reference("[::1]:5000/app").unwrap(),
            "[::1]:5000/app:latest"
        );
        let d = format!("app@sha256:{}", "a".repeat(64));
        assert_eq!(normalize_reference(&d).unwrap(), d);
        let td = format!("reg.example/team/app:v2@sha256:{}", "b".repeat(64));
        assert_eq!(normalize_reference(&td).unwrap(), td);
        for bad in [
            "",
            "App:v1",
            "app:",
            "app:-x",
            "a//b",
            "app@sha256:123",
            "-app",
            "app:v 1",
            "../app",
            "..:5000/app",
            "reg.example:99999/app",
            "app:v1 ",
            "[::1]/",
        ] {
            let e = normalize_reference(bad).unwrap_err();
            assert!(e.contains("invalid image reference"), "{bad}: {e}");
        }
    }

    fn config() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            env: vec!["PATH=/opt/bin:/bin".into(), "MODE=prod".into()],
            working_dir: Some("/app".into()),
            user: Some("1000:1000".into()),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn image_defaults_sit_under_the_spec() {
        let mut spec = WorkloadSpec::new("web", Source::Image("app:v1".into()));
        let d = run_defaults(&spec, &config()).unwrap();
        assert_eq!(d.args, ["/entry", "serve", "--port=80"]);
        assert_eq!(d.env, ["PATH=/opt/bin:/bin", "MODE=prod"]);
        assert_eq!(d.cwd, "/app");
        assert_eq!(d.user.as_deref(), Some("1000:1000"));

        spec.command = vec!["check".into()];
        spec.env.insert("MODE".into(), "dev".into());
        spec.workdir = Some("/srv".into());
        spec.user = Some("root".into());
        let d = run_defaults(&spec, &config()).unwrap();
        assert_eq!(d.args, ["/entry", "check"]);
        assert_eq!(d.env, ["PATH=/opt/bin:/bin", "MODE=dev"]);
        assert_eq!((d.cwd.as_str(), d.user.as_deref()), ("/srv", Some("root")));

        spec.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        spec.command = Vec::new();
        assert_eq!(
            run_defaults(&spec, &config()).unwrap().args,
            ["/bin/sh", "-c"]
        );

        let bare = ImageConfig::default();
        let spec = WorkloadSpec::new("web", Source::Image("app:v1".into()));
        let e = run_defaults(&spec, &bare).unwrap_err();
        assert!(e.contains("neither Entrypoint nor Cmd"), "{e}");
        let mut spec = spec;
        spec.command = vec!["/bin/true".into()];
        let d = run_defaults(&spec, &bare).unwrap();
        assert!(d.env[0].starts_with("PATH="), "a PATH is always set");
        assert_eq!(d.cwd, "/");
    }
}
