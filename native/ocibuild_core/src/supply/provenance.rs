//! SLSA Provenance v1 in an in-toto Statement v1: what a release image was built from, how,
//! and by which builder. One statement per pushed platform manifest (its subject), signed as
//! a DSSE envelope (`supply::dsse`) and attached by `registry::attach`.
//!
//! The meaning of each field is `docs/buildtype/v1.md` (the URI in [`BUILD_TYPE`]): change
//! what a field means and the build type gets a new version. The statement is canonical JSON
//! (sorted keys, no spaces), so the same build gives the same bytes; with `SOURCE_DATE_EPOCH`
//! set, `startedOn` and `finishedOn` are that time and the whole statement is reproducible.
//!
//! ```
//! use ocibuild_core::digest::Digest;
//! use ocibuild_core::supply::provenance::{statement, ProvenanceInput, RunEnvironment};
//!
//! let input = ProvenanceInput {
//!     release_name: "hello".into(),
//!     release_version: "1.0.0".into(),
//!     source_date_epoch: Some(0),
//!     run: RunEnvironment::detect(|_| None),
//!     ..Default::default()
//! };
//! let json = statement(&input, 0, "ghcr.io/acme/hello", &Digest::of(b"manifest")).unwrap();
//! assert!(json.starts_with(br#"{"_type":"https://in-toto.io/Statement/v1""#));
//! ```

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use crate::digest::Digest;
use crate::image::json::canonical;
use crate::reproducible::rfc3339;
use crate::supply::sbom::{self, BaseImage, Dependency};
use crate::Result;

/// The statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type: SLSA Provenance v1 (what `cosign verify-attestation --type
/// slsaprovenance1` looks for).
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a build of ours means, field by field, version 1.
pub const BUILD_TYPE: &str = "https://github.com/ocibuild/ocibuild/blob/main/docs/buildtype/v1.md";
/// The builder outside any CI we recognize: ocibuild on someone's machine.
pub const LOCAL_BUILDER: &str =
    "https://github.com/ocibuild/ocibuild/blob/main/docs/buildtype/v1.md#local-builder";

/// A lock-file dependency and, when the lock gives one, the sha256 of the package it locks
/// (Hex's outer checksum: the hash of the tarball hex.pm serves).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockedDependency {
    pub name: String,
    pub version: String,
    pub source: String,
    pub sha256: Option<String>,
}

/// What differs between the platform images of one build.
#[derive(Clone, Debug, Default)]
pub struct ImageFacts {
    /// `os/arch[/variant]`.
    pub platform: Option<String>,
    /// The base image as pulled, by the digest the registry served (none for scratch).
    pub base: Option<BaseImage>,
}

/// Which platform ran the build, from the CI's own variables: `runDetails.builder.id` and
/// `runDetails.metadata.invocationId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEnvironment {
    pub builder_id: String,
    pub invocation_id: Option<String>,
}

impl Default for RunEnvironment {
    fn default() -> Self {
        RunEnvironment {
            builder_id: LOCAL_BUILDER.into(),
            invocation_id: None,
        }
    }
}

impl RunEnvironment {
    /// The CI running this build, read through `var` (the process environment in the NIF,
    /// a map in tests): GitHub Actions, GitLab CI, Azure Pipelines, else a local build.
    /// builder ids follow what each platform's own provenance uses.
    pub fn detect(var: impl Fn(&str) -> Option<String>) -> RunEnvironment {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if get("GITHUB_ACTIONS").as_deref() == Some("true") {
            // actions/attest-build-provenance's builder ids and invocation id.
            let hosting = match get("RUNNER_ENVIRONMENT").as_deref() {
                Some("self-hosted") => "self-hosted",
                _ => "github-hosted",
            };
            let invocation_id = match (
                get("GITHUB_SERVER_URL"),
                get("GITHUB_REPOSITORY"),
                get("GITHUB_RUN_ID"),
            ) {
                (Some(server), Some(repo), Some(run)) => Some(format!(
                    "{}/{repo}/actions/runs/{run}/attempts/{}",
                    server.trim_end_matches('/'),
                    get("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into())
                )),
                _ => None,
            };
            return RunEnvironment {
                builder_id: format!("https://github.com/actions/runner/{hosting}"),
                invocation_id,
            };
        }
        if get("GITLAB_CI").as_deref() == Some("true") {
            // GitLab's own SLSA provenance names the runner under the project.
            let builder_id = match (
                get("CI_SERVER_URL"),
                get("CI_PROJECT_PATH"),
                get("CI_RUNNER_ID"),
            ) {
                (Some(server), Some(project), Some(runner)) => format!(
                    "{}/{project}/-/runners/{runner}",
                    server.trim_end_matches('/')
                ),
                _ => "https://gitlab.com/gitlab-org/gitlab-runner".into(),
            };
            let invocation_id = get("CI_JOB_URL").or_else(|| {
                Some(format!(
                    "{}/-/jobs/{}",
                    get("CI_PROJECT_URL")?.trim_end_matches('/'),
                    get("CI_JOB_ID")?
                ))
            });
            return RunEnvironment {
                builder_id,
                invocation_id,
            };
        }
        if get("TF_BUILD").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            let invocation_id = (|| {
                let collection = get("SYSTEM_COLLECTIONURI")?;
                let project = get("SYSTEM_TEAMPROJECT")?;
                Some(format!(
                    "{}/{}/_build/results?buildId={}",
                    collection.trim_end_matches('/'),
                    utf8_percent_encode(&project, NON_ALPHANUMERIC),
                    utf8_percent_encode(&get("BUILD_BUILDID")?, NON_ALPHANUMERIC)
                ))
            })();
            return RunEnvironment {
                builder_id: "https://github.com/microsoft/azure-pipelines-agent".into(),
                invocation_id,
            };
        }
        RunEnvironment::default()
    }
}

/// Everything a statement says except its subject, gathered once per build.
#[derive(Clone, Debug, Default)]
pub struct ProvenanceInput {
    pub release_name: String,
    pub release_version: String,
    /// The tags as the user gave them.
    pub tags: Vec<String>,
    /// The platforms asked for (empty: the host's).
    pub platforms: Vec<String>,
    /// The base image as the user named it (`debian:stable-slim`, `scratch`, `tar://...`).
    pub base: String,
    pub compression: String,
    /// ocibuild's version: `runDetails.builder.version.ocibuild`.
    pub builder_version: String,
    /// Settings of the build the user did not pass for this build: `internalParameters`.
    pub internal: BTreeMap<String, String>,
    pub dependencies: Vec<LockedDependency>,
    pub erts_version: Option<String>,
    pub otp_version: Option<String>,
    /// The repository the source annotation names, and its revision.
    pub source: Option<String>,
    pub revision: Option<String>,
    /// One per pushed image, in push order.
    pub images: Vec<ImageFacts>,
    /// When the build started (epoch seconds).
    pub started_on: u64,
    /// `SOURCE_DATE_EPOCH`: both times of a reproducible build.
    pub source_date_epoch: Option<u64>,
    pub run: RunEnvironment,
}

impl ProvenanceInput {
    /// `startedOn`: `SOURCE_DATE_EPOCH` when set, so the statement is reproducible.
    pub fn started_on(&self) -> u64 {
        self.source_date_epoch.unwrap_or(self.started_on)
    }

    /// `finishedOn`: `SOURCE_DATE_EPOCH` when set, else now (the push is done when the
    /// statement is made: it names the pushed manifest).
    pub fn finished_on(&self) -> u64 {
        self.source_date_epoch.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .max(self.started_on)
        })
    }
}

/// The statement for the image `image` (its index in `input.images`), pushed as
/// `subject_name` (`registry/repository`) with manifest digest `subject`. Canonical JSON.
pub fn statement(
    input: &ProvenanceInput,
    image: usize,
    subject_name: &str,
    subject: &Digest,
) -> Result<Vec<u8>> {
    let facts = input.images.get(image).cloned().unwrap_or_default();
    let mut internal: Map<String, Value> = input
        .internal
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if let Some(platform) = &facts.platform {
        internal.insert("platform".into(), json!(platform));
    }
    let mut build_definition = json!({
        "buildType": BUILD_TYPE,
        "externalParameters": {
            "release": {"name": input.release_name, "version": input.release_version},
            "tags": input.tags,
            "platforms": input.platforms,
            "base": input.base,
            "compression": input.compression,
        },
        "resolvedDependencies": resolved_dependencies(input, &facts)?,
    });
    if !internal.is_empty() {
        build_definition["internalParameters"] = Value::Object(internal);
    }
    let mut metadata = json!({
        "startedOn": rfc3339(input.started_on()),
        "finishedOn": rfc3339(input.finished_on()),
    });
    if let Some(id) = &input.run.invocation_id {
        metadata["invocationId"] = json!(id);
    }
    let mut builder = json!({"id": input.run.builder_id});
    if !input.builder_version.is_empty() {
        builder["version"] = json!({"ocibuild": input.builder_version});
    }
    Ok(canonical(&json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": subject.hex()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": build_definition,
            "runDetails": {"builder": builder, "metadata": metadata},
        },
    })))
}

/// The base image by digest, the source at its revision, the lock file's dependencies, ERTS
/// and OTP, as in-toto ResourceDescriptors (each has a `uri`; a `digest` where one is known).
fn resolved_dependencies(input: &ProvenanceInput, facts: &ImageFacts) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    if let Some(base) = &facts.base {
        out.push(json!({
            "uri": sbom::base_image_purl(base, facts.platform.as_deref()),
            "name": base.reference,
            "digest": {"sha256": base.digest.hex()},
        }));
    }
    if let Some(source) = &input.source {
        out.push(source_descriptor(source, input.revision.as_deref()));
    }
    for dep in &input.dependencies {
        let purl = sbom::dependency_purl(&Dependency {
            name: dep.name.clone(),
            version: dep.version.clone(),
            source: dep.source.clone(),
        })?;
        let mut descriptor = json!({"uri": purl, "name": dep.name});
        let digest = match &dep.sha256 {
            Some(hash) if is_hex(hash, &[64]) => Some(("sha256", hash.to_ascii_lowercase())),
            // A git dependency is locked at a commit: its version is the commit id.
            _ if dep.source != "hex" && is_hex(&dep.version, &[40, 64]) => {
                Some(("gitCommit", dep.version.to_ascii_lowercase()))
            }
            _ => None,
        };
        if let Some((algorithm, hex)) = digest {
            descriptor["digest"] = json!({algorithm: hex});
        }
        out.push(descriptor);
    }
    if let Some(erts) = &input.erts_version {
        out.push(json!({"uri": sbom::erts_purl(erts), "name": "erts"}));
    }
    if let Some(otp) = &input.otp_version {
        out.push(json!({"uri": sbom::otp_purl(otp), "name": "erlang-otp"}));
    }
    Ok(out)
}

/// The repository at its revision: SLSA's `git+<url>` with the commit as `gitCommit`; a
/// revision that is not a commit id (a tag name from a CI variable) stays in the URI.
fn source_descriptor(source: &str, revision: Option<&str>) -> Value {
    let uri = format!("git+{source}");
    match revision {
        Some(rev) if is_hex(rev, &[40, 64]) => {
            json!({"uri": uri, "name": "source", "digest": {"gitCommit": rev.to_ascii_lowercase()}})
        }
        Some(rev) => json!({"uri": format!("{uri}@{rev}"), "name": "source"}),
        None => json!({"uri": uri, "name": "source"}),
    }
}

fn is_hex(s: &str, lengths: &[usize]) -> bool {
    lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn input() -> ProvenanceInput {
        ProvenanceInput {
            release_name: "hello".into(),
            release_version: "1.2.3".into(),
            tags: vec!["hello:1.2.3".into(), "hello:latest".into()],
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            base: "debian:stable-slim".into(),
            compression: "zstd".into(),
            builder_version: "0.11.0".into(),
            internal: BTreeMap::from([("workdir".to_string(), "/app".to_string())]),
            dependencies: vec![
                LockedDependency {
                    name: "jason".into(),
                    version: "1.4.1".into(),
                    source: "hex".into(),
                    sha256: Some(
                        "FBB01ECDFD565B56261302F7E1FCC27C4FB8F32D56EAB74DB621FC154604A7A1".into(),
                    ),
                },
                LockedDependency {
                    name: "tiny_dep".into(),
                    version: "0123456789abcdef0123456789abcdef01234567".into(),
                    source: "https://github.com/acme/tiny_dep.git".into(),
                    sha256: None,
                },
                LockedDependency {
                    name: "plain".into(),
                    version: "2.0.0".into(),
                    source: "hex".into(),
                    sha256: Some("not-a-hash".into()),
                },
            ],
            erts_version: Some("14.2.5".into()),
            otp_version: Some("26.2.5".into()),
            source: Some("https://github.com/acme/hello".into()),
            revision: Some("89ABCDEF0123456789abcdef0123456789abcdef".into()),
            images: vec![
                ImageFacts {
                    platform: Some("linux/amd64".into()),
                    base: Some(BaseImage {
                        reference: "debian:stable-slim".into(),
                        digest: Digest::of(b"base-amd64"),
                    }),
                },
                ImageFacts {
                    platform: Some("linux/arm64".into()),
                    base: Some(BaseImage {
                        reference: "debian:stable-slim".into(),
                        digest: Digest::of(b"base-arm64"),
                    }),
                },
            ],
            started_on: 1_700_000_000,
            source_date_epoch: None,
            run: RunEnvironment::default(),
        }
    }

    fn parsed(input: &ProvenanceInput, image: usize) -> Value {
        let bytes = statement(input, image, "localhost:5000/hello", &Digest::of(b"m")).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn statement_has_the_golden_fields() {
        let s = parsed(&input(), 0);
        assert_eq!(s["_type"], STATEMENT_TYPE);
        assert_eq!(s["predicateType"], PREDICATE_TYPE);
        assert_eq!(
            s["subject"],
            json!([{"name": "localhost:5000/hello", "digest": {"sha256": Digest::of(b"m").hex()}}])
        );
        let def = &s["predicate"]["buildDefinition"];
        assert_eq!(def["buildType"], BUILD_TYPE);
        assert_eq!(
            def["externalParameters"],
            json!({
                "release": {"name": "hello", "version": "1.2.3"},
                "tags": ["hello:1.2.3", "hello:latest"],
                "platforms": ["linux/amd64", "linux/arm64"],
                "base": "debian:stable-slim",
                "compression": "zstd",
            })
        );
        assert_eq!(
            def["internalParameters"],
            json!({"workdir": "/app", "platform": "linux/amd64"})
        );
        let run = &s["predicate"]["runDetails"];
        assert_eq!(run["builder"]["id"], LOCAL_BUILDER);
        assert_eq!(run["builder"]["version"]["ocibuild"], "0.11.0");
        assert!(run["metadata"].get("invocationId").is_none());
        assert_eq!(run["metadata"]["startedOn"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn resolved_dependencies_name_base_source_lock_and_runtime() {
        let deps =
            parsed(&input(), 1)["predicate"]["buildDefinition"]["resolvedDependencies"].clone();
        let deps = deps.as_array().unwrap();
        assert_eq!(deps.len(), 7);
        // The arm64 image's own base, by digest.
        assert_eq!(deps[0]["name"], "debian:stable-slim");
        assert_eq!(deps[0]["digest"]["sha256"], Digest::of(b"base-arm64").hex());
        assert!(deps[0]["uri"]
            .as_str()
            .unwrap()
            .starts_with("pkg:oci/debian@sha256%3A"));
        assert!(deps[0]["uri"].as_str().unwrap().contains("arch=arm64"));
        assert_eq!(
            deps[1],
            json!({"uri": "git+https://github.com/acme/hello", "name": "source",
                   "digest": {"gitCommit": "89abcdef0123456789abcdef0123456789abcdef"}})
        );
        assert_eq!(
            deps[2],
            json!({"uri": "pkg:hex/jason@1.4.1", "name": "jason", "digest": {"sha256":
                   "fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1"}})
        );
        assert_eq!(
            deps[3]["digest"],
            json!({"gitCommit": "0123456789abcdef0123456789abcdef01234567"})
        );
        assert_eq!(
            deps[3]["uri"],
            "pkg:github/acme/tiny_dep@0123456789abcdef0123456789abcdef01234567"
        );
        // A malformed lock checksum is no hash: the dependency is named without one.
        assert_eq!(
            deps[4],
            json!({"uri": "pkg:hex/plain@2.0.0", "name": "plain"})
        );
        assert_eq!(
            deps[5],
            json!({"uri": "pkg:otp/erts@14.2.5", "name": "erts"})
        );
        assert_eq!(
            deps[6],
            json!({"uri": "pkg:github/erlang/otp@OTP-26.2.5", "name": "erlang-otp"})
        );
    }

    #[test]
    fn a_revision_that_is_no_commit_stays_in_the_uri_and_scratch_has_no_base() {
        let mut i = input();
        i.revision = Some("v1.2.3".into());
        i.images = vec![ImageFacts::default()];
        i.dependencies.clear();
        i.erts_version = None;
        i.otp_version = None;
        let deps = parsed(&i, 0)["predicate"]["buildDefinition"]["resolvedDependencies"].clone();
        assert_eq!(
            deps,
            json!([{"uri": "git+https://github.com/acme/hello@v1.2.3", "name": "source"}])
        );
    }

    #[test]
    fn source_date_epoch_makes_both_times_and_the_bytes_reproducible() {
        let mut i = input();
        i.source_date_epoch = Some(951_782_400);
        let meta = parsed(&i, 0)["predicate"]["runDetails"]["metadata"].clone();
        assert_eq!(meta["startedOn"], "2000-02-29T00:00:00Z");
        assert_eq!(meta["finishedOn"], "2000-02-29T00:00:00Z");
        let d = Digest::of(b"m");
        assert_eq!(
            statement(&i, 0, "r/h", &d).unwrap(),
            statement(&i, 0, "r/h", &d).unwrap()
        );
    }

    #[test]
    fn without_source_date_epoch_finished_is_now_and_not_before_started() {
        let i = input();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(i.finished_on() >= now);
        assert_eq!(i.started_on(), 1_700_000_000);
        let mut future = input();
        future.started_on = u64::from(u32::MAX);
        assert_eq!(future.finished_on(), u64::from(u32::MAX));
    }

    #[test]
    fn github_actions_variables() {
        let run = RunEnvironment::detect(vars(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/hello"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("RUNNER_ENVIRONMENT", "github-hosted"),
        ]));
        assert_eq!(
            run.builder_id,
            "https://github.com/actions/runner/github-hosted"
        );
        assert_eq!(
            run.invocation_id.as_deref(),
            Some("https://github.com/acme/hello/actions/runs/42/attempts/2")
        );
        let self_hosted = RunEnvironment::detect(vars(&[
            ("GITHUB_ACTIONS", "true"),
            ("RUNNER_ENVIRONMENT", "self-hosted"),
        ]));
        assert_eq!(
            self_hosted.builder_id,
            "https://github.com/actions/runner/self-hosted"
        );
        assert_eq!(self_hosted.invocation_id, None);
    }

    #[test]
    fn gitlab_ci_variables() {
        let run = RunEnvironment::detect(vars(&[
            ("GITLAB_CI", "true"),
            ("CI_SERVER_URL", "https://gitlab.example.com/"),
            ("CI_PROJECT_PATH", "acme/hello"),
            ("CI_RUNNER_ID", "7"),
            ("CI_PROJECT_URL", "https://gitlab.example.com/acme/hello"),
            ("CI_JOB_ID", "99"),
        ]));
        assert_eq!(
            run.builder_id,
            "https://gitlab.example.com/acme/hello/-/runners/7"
        );
        assert_eq!(
            run.invocation_id.as_deref(),
            Some("https://gitlab.example.com/acme/hello/-/jobs/99")
        );
        let with_url = RunEnvironment::detect(vars(&[
            ("GITLAB_CI", "true"),
            ("CI_JOB_URL", "https://gitlab.com/acme/hello/-/jobs/5"),
        ]));
        assert_eq!(
            with_url.builder_id,
            "https://gitlab.com/gitlab-org/gitlab-runner"
        );
        assert_eq!(
            with_url.invocation_id.as_deref(),
            Some("https://gitlab.com/acme/hello/-/jobs/5")
        );
    }

    #[test]
    fn azure_pipelines_variables() {
        let run = RunEnvironment::detect(vars(&[
            ("TF_BUILD", "True"),
            ("SYSTEM_COLLECTIONURI", "https://dev.azure.com/acme/"),
            ("SYSTEM_TEAMPROJECT", "Hello World"),
            ("BUILD_BUILDID", "314"),
        ]));
        assert_eq!(
            run.builder_id,
            "https://github.com/microsoft/azure-pipelines-agent"
        );
        assert_eq!(
            run.invocation_id.as_deref(),
            Some("https://dev.azure.com/acme/Hello%20World/_build/results?buildId=314")
        );
    }

    #[test]
    fn no_ci_is_a_local_build_and_invocation_id_lands_in_metadata() {
        assert_eq!(
            RunEnvironment::detect(vars(&[("GITHUB_ACTIONS", "false")])),
            RunEnvironment::default()
        );
        let mut i = input();
        i.run = RunEnvironment {
            builder_id: "https://github.com/actions/runner/github-hosted".into(),
            invocation_id: Some("https://github.com/a/b/actions/runs/1/attempts/1".into()),
        };
        let run = parsed(&i, 0)["predicate"]["runDetails"].clone();
        assert_eq!(
            run["builder"]["id"],
            "https://github.com/actions/runner/github-hosted"
        );
        assert_eq!(
            run["metadata"]["invocationId"],
            "https://github.com/a/b/actions/runs/1/attempts/1"
        );
    }
}
