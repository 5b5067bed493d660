//! Deriving an image's config JSON from its base config, the user's overrides and its layers.
//!
//! Semantics follow a Dockerfile, which is what users of ko, jib and docker expect:
//! - `Env` merges by name: a name already set keeps its position and takes the new value, new
//!   names are appended, so there are never two entries for one name.
//! - Setting `Entrypoint` without `Cmd` clears the base's `Cmd` (as `ENTRYPOINT` does), so a
//!   base's shell command is never passed as arguments to our program.
//! - `ExposedPorts` and `Labels` add to the base's; the other fields replace it.
//! - `rootfs.diff_ids` and `history` keep the base's entries and append one per added layer.

use serde_json::{json, Map, Value};

use super::{AddedLayer, ConfigOverrides, Platform};
use crate::reproducible::rfc3339;
use crate::{Error, Result};

/// Build the config for an image from `base_config` (the base's config, parsed with
/// [`super::json::parse_object`], or `None` for scratch), returning the JSON value (serialise
/// with [`super::json::canonical`]).
pub fn derive(
    base_config: Option<Value>,
    overrides: &ConfigOverrides,
    added: &[AddedLayer],
    platform: &Platform,
    created: u64,
) -> Result<Value> {
    let mut root = base_config.unwrap_or_else(|| json!({}));
    let obj = root.as_object_mut().ok_or_else(|| Error::InvalidJson {
        what: "base image config".into(),
        why: "expected a JSON object".into(),
    })?;
    let created = rfc3339(created);

    obj.insert("created".into(), json!(created));
    obj.insert("os".into(), json!(platform.os));
    obj.insert("architecture".into(), json!(platform.architecture));
    match &platform.variant {
        Some(v) => obj.insert("variant".into(), json!(v)),
        None => obj.remove("variant"),
    };

    let config = object_entry(obj, "config")?;
    apply_overrides(config, overrides);

    let rootfs = object_entry(obj, "rootfs")?;
    rootfs.insert("type".into(), json!("layers"));
    let diff_ids = array_entry(rootfs, "diff_ids")?;
    diff_ids.extend(added.iter().map(|a| json!(a.layer.diff_id.as_str())));

    let history = array_entry(obj, "history")?;
    history.extend(added.iter().map(|a| {
        json!({
            "created": created,
            "created_by": format!("ocibuild {}", a.layer_type.as_deref().unwrap_or("layer")),
            "comment": "built by ocibuild",
        })
    }));
    Ok(root)
}

fn apply_overrides(config: &mut Map<String, Value>, o: &ConfigOverrides) {
    if let Some(entrypoint) = &o.entrypoint {
        config.insert("Entrypoint".into(), json!(entrypoint));
        if o.cmd.is_none() {
            config.remove("Cmd");
        }
    }
    if let Some(cmd) = &o.cmd {
        config.insert("Cmd".into(), json!(cmd));
    }
    if !o.env.is_empty() {
        let base: Vec<String> = config
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        config.insert("Env".into(), json!(merge_env(base, &o.env)));
    }
    if let Some(workdir) = &o.workdir {
        config.insert("WorkingDir".into(), json!(workdir));
    }
    if let Some(user) = &o.user {
        config.insert("User".into(), json!(user));
    }
    if !o.exposed_ports.is_empty() {
        let ports = ensure_object(config, "ExposedPorts");
        for port in &o.exposed_ports {
            ports.insert(port.clone(), json!({}));
        }
    }
    if !o.labels.is_empty() {
        let labels = ensure_object(config, "Labels");
        for (k, v) in &o.labels {
            labels.insert(k.clone(), json!(v));
        }
    }
}

/// Docker's `ENV` merge over `NAME=value` strings. Base entries without `=` are kept as is.
pub fn merge_env(base: Vec<String>, overrides: &[(String, String)]) -> Vec<String> {
    let mut merged = base;
    for (name, value) in overrides {
        let entry = format!("{name}={value}");
        let same_name = |e: &String| e.split_once('=').map(|(n, _)| n) == Some(name.as_str());
        match merged.iter().position(same_name) {
            Some(i) => merged[i] = entry,
            None => merged.push(entry),
        }
    }
    merged
}

fn ensure_object<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = parent.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        // A base with `"Labels": null` is common; treat null (or junk) as empty.
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

fn object_entry<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>> {
    let slot = parent.entry(key.to_string()).or_insert_with(|| json!({}));
    if slot.is_null() {
        *slot = json!({});
    }
    slot.as_object_mut().ok_or_else(|| Error::InvalidJson {
        what: "base image config".into(),
        why: format!("{key} is not an object"),
    })
}

fn array_entry<'a>(parent: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Vec<Value>> {
    let slot = parent.entry(key.to_string()).or_insert_with(|| json!([]));
    if slot.is_null() {
        *slot = json!([]);
    }
    slot.as_array_mut().ok_or_else(|| Error::InvalidJson {
        what: "base image config".into(),
        why: format!("{key} is not an array"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::layer::Layer;

    fn added(diff: &[u8], layer_type: Option<&str>) -> AddedLayer {
        AddedLayer {
            layer: Layer {
                media_type: crate::media_types::OCI_LAYER_GZIP.into(),
                digest: Digest::of(b"compressed"),
                diff_id: Digest::of(diff),
                size: 10,
                blob: None,
            },
            layer_type: layer_type.map(str::to_string),
        }
    }

    /// `derive` on a base config given as the bytes a registry would serve.
    fn derive_from_bytes(
        base: &[u8],
        o: &ConfigOverrides,
        added: &[AddedLayer],
        created: u64,
    ) -> Result<Value> {
        let parsed = crate::image::json::parse_object(base, "base image config")?;
        derive(Some(parsed), o, added, &linux_amd64(), created)
    }

    fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    #[test]
    fn env_merges_by_name_keeping_order() {
        let base = vec!["PATH=/usr/bin".to_string(), "LANG=C".to_string()];
        let merged = merge_env(
            base,
            &[
                ("LANG".into(), "C.UTF-8".into()),
                ("HOME".into(), "/app".into()),
                ("HOME".into(), "/srv".into()),
            ],
        );
        assert_eq!(merged, ["PATH=/usr/bin", "LANG=C.UTF-8", "HOME=/srv"]);
    }

    #[test]
    fn scratch_config_has_required_fields() {
        let o = ConfigOverrides {
            entrypoint: Some(vec!["/app/bin/hello".into()]),
            env: vec![("A".into(), "1".into())],
            exposed_ports: vec!["8080/tcp".into()],
            workdir: Some("/app".into()),
            ..Default::default()
        };
        let v = derive(None, &o, &[added(b"tar", Some("app"))], &linux_amd64(), 0).unwrap();
        assert_eq!(v["os"], "linux");
        assert_eq!(v["architecture"], "amd64");
        assert_eq!(v["created"], "1970-01-01T00:00:00Z");
        assert_eq!(v["config"]["Entrypoint"], json!(["/app/bin/hello"]));
        assert_eq!(v["config"]["Env"], json!(["A=1"]));
        assert_eq!(v["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(v["config"]["WorkingDir"], "/app");
        assert_eq!(
            v["rootfs"],
            json!({"type": "layers", "diff_ids": [Digest::of(b"tar").as_str()]})
        );
        assert_eq!(v["history"][0]["created_by"], "ocibuild app");
    }

    #[test]
    fn base_config_is_extended_not_replaced() {
        let base = br#"{"architecture":"arm64","os":"linux","variant":"v8",
            "config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"Labels":null},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
            "history":[{"created_by":"base"}]}"#;
        let o = ConfigOverrides {
            entrypoint: Some(vec!["/app/start".into()]),
            labels: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        };
        let v = derive_from_bytes(base, &o, &[added(b"x", None)], 1_700_000_000).unwrap();
        assert_eq!(v["config"]["Env"], json!(["PATH=/bin"]));
        assert!(
            v["config"].get("Cmd").is_none(),
            "entrypoint clears the base Cmd"
        );
        assert_eq!(v["config"]["Labels"], json!({"k": "v"}));
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"][1]["created_by"], "ocibuild layer");
        assert!(v.get("variant").is_none());
        assert_eq!(v["architecture"], "amd64");
    }

    #[test]
    fn malformed_base_configs_are_errors_not_panics() {
        for bad in [
            &b"[]"[..],
            b"{\"rootfs\": 3}",
            b"{\"history\": {}}",
            b"nope",
        ] {
            assert!(derive_from_bytes(bad, &ConfigOverrides::default(), &[], 0).is_err());
        }
    }
}
